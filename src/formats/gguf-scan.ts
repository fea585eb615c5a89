/**
 * Non-finite weights in a GGUF: find every NaN or ±Inf a tensor holds, and every float weight beyond
 * ±65504 (the float16 range: no trained model has one, llama.cpp keeps activations and the KV cache
 * in F16 in places, and the fuzz campaign's NaN logits from finite weights all came from bit flips
 * into that range); for block-quantised types, every non-finite block scale (the quantised integers
 * cannot be NaN, so a block decodes to finite values exactly when its scales are finite).
 *
 * Why a scan at all: llama.cpp loads such a file without a word, and every logit of every token
 * that meets the bad weight comes out NaN, which a user sees as "the model generates token 0" far
 * from the cause. Why not always: it reads every byte of the file, where llama.cpp itself only maps it
 * (bench/weights-scan.ts measures both on the 271M bench model; the numbers and the policy are in
 * src/adapters/llama-cpp/LOAD-CHECKS.md). So the llama.cpp adapter always scans the small tensors
 * (1-D: norms, biases — a few KB, where one NaN poisons every token) and scans everything on request
 * (`checkWeights: "all"`, `steerkit inspect --check-weights`).
 *
 * Reads through one reusable buffer (never a whole tensor), so a 70 GB file costs one buffer.
 */
import { closeSync, readSync } from "node:fs";
import { openRegularFile } from "./files.ts";
import { GgufError, type GgufFile, type GgufTensorInfo } from "./gguf.ts";
import { GGML_TYPES, ggmlTypeName } from "./ggml-types.ts";

/** Where a non-finite (or beyond ±65504) value sits: the tensor, the element (or block, for quantised types) and the value. */
export interface NonFiniteWeight {
  readonly tensor: string;
  readonly type: string;
  /** Element index for float types; block index for block-quantised types (`field` says which scale). */
  readonly index: number;
  readonly field: "value" | "scale" | "min";
  readonly value: number;
}

export interface WeightScan {
  /** The first non-finite or out-of-range values found (at most `limit`), in file order. */
  readonly nonFinite: readonly NonFiniteWeight[];
  readonly tensorsScanned: number;
  readonly bytesScanned: number;
  /** Tensors whose type has no scale this scanner knows how to find (IQ1_M, NVFP4, Q1_0, Q2_0, integer types). */
  readonly skipped: readonly { readonly tensor: string; readonly type: string }[];
}

export interface ScanOptions {
  /** Which tensors to scan (default: all). */
  readonly tensors?: (t: GgufTensorInfo) => boolean;
  /** Stop after this many findings (default 16). */
  readonly limit?: number;
  /** Called after each chunk with bytes done and the total to scan. */
  readonly onProgress?: (done: number, total: number) => void;
}

type Kind =
  | { readonly kind: "f32" }
  | { readonly kind: "f16" }
  | { readonly kind: "bf16" }
  | { readonly kind: "f64" }
  /** Block types: byte offsets of their f16 scale fields within a block (and an f32 or E8M0 one). */
  | { readonly kind: "blocks"; readonly half: readonly (readonly [number, "scale" | "min"])[]; readonly f32?: number; readonly e8m0?: number };

/** Scale-field offsets from ggml-common.h of the pinned llama.cpp (block_<type> structs). */
const KINDS: ReadonlyMap<string, Kind> = new Map<string, Kind>([
  ["F32", { kind: "f32" }],
  ["F16", { kind: "f16" }],
  ["BF16", { kind: "bf16" }],
  ["F64", { kind: "f64" }],
  ["Q4_0", { kind: "blocks", half: [[0, "scale"]] }],
  ["Q4_1", { kind: "blocks", half: [[0, "scale"], [2, "min"]] }],
  ["Q5_0", { kind: "blocks", half: [[0, "scale"]] }],
  ["Q5_1", { kind: "blocks", half: [[0, "scale"], [2, "min"]] }],
  ["Q8_0", { kind: "blocks", half: [[0, "scale"]] }],
  ["Q8_1", { kind: "blocks", half: [[0, "scale"], [2, "min"]] }],
  ["Q2_K", { kind: "blocks", half: [[80, "scale"], [82, "min"]] }],
  ["Q3_K", { kind: "blocks", half: [[108, "scale"]] }],
  ["Q4_K", { kind: "blocks", half: [[0, "scale"], [2, "min"]] }],
  ["Q5_K", { kind: "blocks", half: [[0, "scale"], [2, "min"]] }],
  ["Q6_K", { kind: "blocks", half: [[208, "scale"]] }],
  ["Q8_K", { kind: "blocks", half: [], f32: 0 }],
  ["IQ2_XXS", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ2_XS", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ2_S", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ3_XXS", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ3_S", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ1_S", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ4_NL", { kind: "blocks", half: [[0, "scale"]] }],
  ["IQ4_XS", { kind: "blocks", half: [[0, "scale"]] }],
  ["TQ1_0", { kind: "blocks", half: [[52, "scale"]] }],
  ["TQ2_0", { kind: "blocks", half: [[64, "scale"]] }],
  ["MXFP4", { kind: "blocks", half: [], e8m0: 0 }],
]);

const CHUNK = 8 << 20;
/** The largest magnitude accepted: float16's largest finite value. */
export const LIMIT = 65504;
const F32_LIMIT_BITS = 0x477fe000;

function bf16Value(bits: number): number {
  return new Float32Array(new Uint32Array([bits << 16]).buffer)[0]!;
}

/** The value of an f16 whose exponent is all ones. */
function halfValue(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  return (bits & 0x3ff) !== 0 ? NaN : sign * Infinity; // only called for exp === 31
}

/**
 * Scan `file`'s tensors for NaN / ±Inf.
 *
 * @example
 * const scan = scanGgufWeights(readGgufHeader("model.gguf"));
 * for (const w of scan.nonFinite) console.log(`${w.tensor}[${w.index}] = ${w.value}`);
 */
export function scanGgufWeights(file: GgufFile, options: ScanOptions = {}): WeightScan {
  const limit = options.limit ?? 16;
  const found: NonFiniteWeight[] = [];
  const skipped: { tensor: string; type: string }[] = [];
  const chosen = file.tensors.filter((t) => options.tensors?.(t) ?? true);
  const total = chosen.reduce((n, t) => n + t.byteLength, 0);
  const buffer = new Uint8Array(Math.min(CHUNK, Math.max(16, total + 8)));
  const view = new DataView(buffer.buffer);
  const words32 = new Uint32Array(buffer.buffer, 0, buffer.length >>> 2);
  const { fd } = openRegularFile(file.path, (reason) => {
    throw new GgufError(file.path, reason);
  }, "a GGUF file");
  let done = 0;
  let scanned = 0;
  try {
    for (const t of chosen) {
      const typeName = ggmlTypeName(t.type);
      const kind = KINDS.get(typeName);
      if (!kind) {
        skipped.push({ tensor: t.name, type: typeName });
        continue;
      }
      scanned++;
      const add = (index: number, field: NonFiniteWeight["field"], value: number) => found.push({ tensor: t.name, type: typeName, index, field, value });
      const blockBytes = kind.kind === "blocks" ? GGML_TYPES.get(t.type)!.typeSize : kind.kind === "f32" ? 4 : kind.kind === "f64" ? 8 : 2;
      // Whole units per chunk, so no value or block straddles two reads.
      const step = Math.floor(buffer.length / blockBytes) * blockBytes;
      for (let at = 0; at < t.byteLength && found.length < limit; at += step) {
        const n = Math.min(step, t.byteLength - at);
        let got = 0;
        while (got < n) {
          const r = readSync(fd, buffer, got, n - got, t.offset + at + got);
          if (r <= 0) throw new GgufError(file.path, `tensor "${t.name}" ends past the end of the file`);
          got += r;
        }
        const first = at / blockBytes;
        switch (kind.kind) {
          case "f32": {
            const words = words32.subarray(0, n >>> 2);
            // |x| > 65504 (0x477fe000), NaN and ±Inf in one compare of the magnitude bits.
            for (let w = 0; w < words.length; w++) {
              if ((words[w]! & 0x7fffffff) > F32_LIMIT_BITS) add(first + w, "value", view.getFloat32(w * 4, true));
            }
            break;
          }
          case "f64":
            for (let i = 0; i < n; i += 8) if (!(Math.abs(view.getFloat64(i, true)) <= LIMIT)) add(first + i / 8, "value", view.getFloat64(i, true));
            break;
          case "f16": {
            // Two halves per 32-bit word (little-endian host, as bun:ffi and the GGUF are): the hot case.
            const words = words32.subarray(0, n >>> 2);
            for (let w = 0; w < words.length; w++) {
              const x = words[w]! & 0x7c007c00;
              if ((x & 0x7c00) === 0x7c00 || x >>> 16 === 0x7c00) {
                for (const i of [w * 4, w * 4 + 2]) {
                  const b = view.getUint16(i, true);
                  if ((b & 0x7c00) === 0x7c00) add(first + i / 2, "value", halfValue(b));
                }
              }
            }
            if (n % 4 === 2 && (view.getUint16(n - 2, true) & 0x7c00) === 0x7c00) add(first + (n - 2) / 2, "value", halfValue(view.getUint16(n - 2, true)));
            break;
          }
          case "bf16":
            for (let i = 0; i < n; i += 2) {
              const b = view.getUint16(i, true);
              if ((b & 0x7fff) >= 0x4780) add(first + i / 2, "value", bf16Value(b)); // |x| >= 65536, NaN, ±Inf
            }
            break;
          case "blocks":
            for (let i = 0; i < n; i += blockBytes) {
              for (const [off, field] of kind.half) {
                const b = view.getUint16(i + off, true);
                if ((b & 0x7c00) === 0x7c00) add(first + i / blockBytes, field, halfValue(b));
              }
              if (kind.f32 !== undefined && !Number.isFinite(view.getFloat32(i + kind.f32, true))) add(first + i / blockBytes, "scale", view.getFloat32(i + kind.f32, true));
              if (kind.e8m0 !== undefined && buffer[i + kind.e8m0] === 0xff) add(first + i / blockBytes, "scale", NaN);
            }
            break;
        }
        done += n;
        options.onProgress?.(done, total);
      }
      if (found.length >= limit) break;
    }
  } finally {
    closeSync(fd);
  }
  return { nonFinite: found.slice(0, limit), tensorsScanned: scanned, bytesScanned: done, skipped };
}

/** "token_embd.weight[1234] = NaN (F32)", "output.weight[5] = 3.4e+38 (F32)" or "blk.0.ffn_down.weight block 7 scale = +Inf (Q4_K)". */
export function describeNonFinite(w: NonFiniteWeight): string {
  const value = Number.isNaN(w.value) ? "NaN" : !Number.isFinite(w.value) ? (w.value > 0 ? "+Inf" : "-Inf") : w.value.toPrecision(3);
  return w.field === "value" ? `${w.tensor}[${w.index}] = ${value} (${w.type})` : `${w.tensor} block ${w.index} ${w.field} = ${value} (${w.type})`;
}

/** Which tensors {@link checkFiniteWeights} reads: none, the 1-D ones (norms, biases; kilobytes), or all. */
export type WeightCheck = "none" | "small" | "all";

/**
 * Refuse a GGUF whose weights (of the chosen scope) hold NaN, ±Inf or values beyond ±65504, naming each (up to 8).
 *
 * @example
 * checkFiniteWeights(readGgufHeader("model.gguf"), "all"); // throws GgufError: "... output_norm.weight[3] = NaN (F32) ..."
 */
export function checkFiniteWeights(file: GgufFile, scope: WeightCheck, options: Pick<ScanOptions, "onProgress"> = {}): WeightScan | null {
  if (scope === "none") return null;
  const scan = scanGgufWeights(file, { limit: 8, tensors: scope === "small" ? (t) => t.dims.length <= 1 : undefined, onProgress: options.onProgress });
  if (scan.nonFinite.length > 0) {
    const more = scan.nonFinite.length >= 8 ? " (the first 8)" : "";
    throw new GgufError(
      file.path,
      `non-finite or out-of-range weights${more} (beyond ±${LIMIT}): ${scan.nonFinite.map(describeNonFinite).join("; ")}: the logits that depend on them would be NaN or Inf`,
    );
  }
  return scan;
}
