/**
 * onnxruntime-node with Bun's `Float16Array` hidden while the library first probes for it, so
 * float16 tensors are plain Uint16Array bits the native binding can read (the ONNX adapter does
 * the same in src/adapters/onnx/ort.ts; whichever module loads first fixes it for the process).
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
