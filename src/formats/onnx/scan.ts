/**
 * Non-finite (or beyond ±65504) initializers in an ONNX model: the ONNX twin of ../gguf-scan.ts
 * (same reasons, same limit, same scopes, same report). One difference: an ONNX graph also stores
 * constants as initializers, and fill values such as a mask's -3.4e38 (`torch.finfo.min`, which
 * `steerkit convert` writes too) are legitimate there, so initializers of fewer than 16 elements
 * (scalars, shapes, fill values) are not scanned; weights (norm vectors, matrices) always have more.
 * A constant-folded mask stored as a large float initializer would be named by `"all"`. onnxruntime runs a NaN weight without a word and every logit that meets it
 * comes out NaN. The ONNX adapter scans the 1-D initializers (norms, biases) by default and every
 * float initializer on request (`checkWeights: "all"`); the model bytes are in memory or mapped
 * already, so the cost is one pass over them (no extra read), about what the GGUF scan costs per byte.
 */
import { describeNonFinite, LIMIT, type NonFiniteWeight, type WeightCheck } from "../gguf-scan.ts";
import { OnnxFileError, tensorBytes, type OnnxFile } from "./external.ts";
import { DataType } from "./types.ts";

/** Initializers smaller than this are constants (fill values, scalars), not weights. */
const MIN_ELEMENTS = 16;

/** Per float type: element size, and the smallest magnitude bit pattern (sign cleared) that is refused. */
const KINDS = new Map<number, { name: string; size: 2 | 4; over: number; value: (bits: number) => number }>([
  [DataType.FLOAT, { name: "float32", size: 4, over: 0x477fe001, value: (b) => new Float32Array(new Uint32Array([b]).buffer)[0]! }],
  [DataType.FLOAT16, { name: "float16", size: 2, over: 0x7c00, value: (b) => (b & 0x3ff ? NaN : b & 0x8000 ? -Infinity : Infinity) }],
  [DataType.BFLOAT16, { name: "bfloat16", size: 2, over: 0x4780, value: (b) => new Float32Array(new Uint32Array([b << 16]).buffer)[0]! }],
]);

/**
 * Find NaN / ±Inf in the float initializers of `file` (1-D ones only for "small"), at most `limit`.
 *
 * @example
 * const found = scanOnnxInitializers(readOnnxFile("model.onnx"), "all");
 */
export function scanOnnxInitializers(file: OnnxFile, scope: WeightCheck, limit = 8): NonFiniteWeight[] {
  const found: NonFiniteWeight[] = [];
  if (scope === "none") return found;
  for (const t of file.model.graph?.initializers ?? []) {
    const kind = KINDS.get(t.dataType ?? 0);
    if (!kind || (scope === "small" && t.dims.length > 1) || t.dims.reduce((a, b) => a * b, 1) < MIN_ELEMENTS) continue;
    const bytes = tensorBytes(t, file.externalFiles);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = Math.floor(bytes.byteLength / kind.size);
    for (let i = 0; i < n && found.length < limit; i++) {
      const b = kind.size === 4 ? view.getUint32(i * 4, true) : view.getUint16(i * 2, true);
      const magnitude = kind.size === 4 ? b & 0x7fffffff : b & 0x7fff;
      if (magnitude >= kind.over) found.push({ tensor: t.name ?? "?", type: kind.name, index: i, field: "value", value: kind.value(b) });
    }
    if (found.length >= limit) break;
  }
  return found;
}

/**
 * Refuse a model whose float initializers (of the chosen scope) hold NaN or ±Inf, naming each (up to 8).
 *
 * @example
 * checkFiniteInitializers(readOnnxFile("model.onnx"), "all"); // throws OnnxFileError naming the initializer
 */
export function checkFiniteInitializers(file: OnnxFile, scope: WeightCheck): void {
  const found = scanOnnxInitializers(file, scope);
  if (found.length > 0) {
    throw new OnnxFileError(
      file.path,
      `non-finite or out-of-range weights${found.length >= 8 ? " (the first 8)" : ""} (beyond ±${LIMIT}): ${found.map(describeNonFinite).join("; ")}: the logits that depend on them would be NaN or Inf`,
    );
  }
}
