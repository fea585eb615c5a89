/**
 * onnxruntime-node, imported once with Bun's `Float16Array` hidden while the library probes for it.
 *
 * Why: onnxruntime-common stores float16 tensors as `Float16Array` when the runtime has one, and
 * the native binding cannot read that type (`run` fails with "not enough space: expected N, got 0").
 * The probe runs once, lazily, on the first Tensor construction; hiding the global for that moment
 * makes the library fall back to `Uint16Array` (raw half bits), which the binding reads correctly.
 */
import * as ort from "onnxruntime-node";

const globals = globalThis as { Float16Array?: unknown };
const saved = Object.getOwnPropertyDescriptor(globals, "Float16Array");
if (saved) {
  delete globals.Float16Array;
  try {
    new ort.Tensor("float32", new Float32Array(1), [1]);
  } finally {
    Object.defineProperty(globals, "Float16Array", saved);
  }
}

export { ort };
export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;
