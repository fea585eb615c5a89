/**
 * Non-finite initializers in an ONNX model: the ONNX twin of ../gguf-scan.ts (same reasons, same
 * scopes, same report). onnxruntime runs a NaN weight without a word and every logit that meets it
 * comes out NaN. The ONNX adapter scans the 1-D initializers (norms, biases) by default and every
 * float initializer on request (`checkWeights: "all"`); the model bytes are in memory or mapped
 * already, so the cost is one pass over them (no extra read), about what the GGUF scan costs per byte.
 */
import { describeNonFinite, type NonFiniteWeight, type WeightCheck } from "../gguf-scan.ts";
import { OnnxFileError, tensorBytes, type OnnxFile } from "./external.ts";
import { DataType } from "./types.ts";

const KINDS = new Map<number, { name: string; size: 2 | 4; mask: number; nan: (bits: number) => number }>([
  [DataType.FLOAT, { name: "float32", size: 4, mask: 0x7f800000, nan: (b) => (b & 0x7fffff ? NaN : b >>> 31 ? -Infinity : Infinity) }],
  [DataType.FLOAT16, { name: "float16", size: 2, mask: 0x7c00, nan: (b) => (b & 0x3ff ? NaN : b & 0x8000 ? -Infinity : Infinity) }],
  [DataType.BFLOAT16, { name: "bfloat16", size: 2, mask: 0x7f80, nan: (b) => (b & 0x7f ? NaN : b & 0x8000 ? -Infinity : Infinity) }],
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
    if (!kind || (scope === "small" && t.dims.length > 1)) continue;
    const bytes = tensorBytes(t, file.externalFiles);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = Math.floor(bytes.byteLength / kind.size);
    for (let i = 0; i < n && found.length < limit; i++) {
      const b = kind.size === 4 ? view.getUint32(i * 4, true) : view.getUint16(i * 2, true);
      if ((b & kind.mask) === kind.mask) found.push({ tensor: t.name ?? "?", type: kind.name, index: i, field: "value", value: kind.nan(b) });
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
    throw new OnnxFileError(file.path, `non-finite weights${found.length >= 8 ? " (the first 8)" : ""}: ${found.map(describeNonFinite).join("; ")}: every logit that depends on them would be NaN`);
  }
}
