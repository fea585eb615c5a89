/**
 * onnxruntime-node, imported once with Bun's `Float16Array` hidden while the library probes for it.
 *
 * Why: onnxruntime-common stores float16 tensors as `Float16Array` when the runtime has one, and
 * the native binding cannot read that type (`run` fails with "not enough space: expected N, got 0").
 * The probe runs once, lazily, on the first Tensor construction; hiding the global for that moment
 * makes the library fall back to `Uint16Array` (raw half bits), which the binding reads correctly.
 * When something else created a tensor first (the probe already saw `Float16Array`), the float16
 * helpers below put a `Uint16Array` view back under each tensor we hand to the binding.
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

type TensorInternals = { cpuData?: unknown };

/** The raw half bits of a float16 tensor's data, whatever typed array the library chose. */
export function halfBits(t: ort.Tensor): Uint16Array {
  const d = t.data as unknown as ArrayBufferView & { length: number };
  return d instanceof Uint16Array ? d : new Uint16Array(d.buffer, d.byteOffset, d.length);
}

/** Make a float16 tensor readable by the native binding (its data a Uint16Array). */
export function bindable(t: ort.Tensor): ort.Tensor {
  if (t.type === "float16" && !(t.data instanceof Uint16Array)) (t as unknown as TensorInternals).cpuData = halfBits(t);
  return t;
}

/** A float16 tensor over raw half bits. */
export function float16Tensor(bits: Uint16Array, dims: readonly number[]): ort.Tensor {
  return bindable(new ort.Tensor("float16", bits, dims));
}
export type OrtTensor = ort.Tensor;
export type OrtSession = ort.InferenceSession;
