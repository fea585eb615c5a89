/**
 * Block-quantized ONNX weights: `MatMulNBits` (com.microsoft) as onnxruntime-genai's model builder
 * writes it for CPU int4 — onnxruntime's MatMulNBitsQuantizer, symmetric, block size 32,
 * accuracy_level 4 (activations rounded to int8 per block inside the kernel, as llama.cpp rounds
 * them to Q8_0 for its quantized dot products).
 *
 * Layout (onnxruntime's contrib op spec): a weight W [N out][K in] (GGUF's row order: no transpose)
 * becomes B uint8 [N, n_blocks, block_size * bits / 8] with blocks along K, element 2j in the low
 * nibble of byte j at 4 bits; scales float32 [N * n_blocks]; no zero_points input, so the zero point
 * is the default 2^(bits-1) (8 at 4 bits, 128 at 8 bits); w = (q - zero_point) * scale.
 *
 * Where the numbers come from, per source tensor type:
 * - Q4_0 (int4) and Q8_0 (int8): repacked without loss — the same integers and the same (f16)
 *   scales llama.cpp computes with. A Q4_0 block stores element j in the low nibble and j + 16 in
 *   the high nibble of byte j; MatMulNBits wants 2j / 2j + 1, so nibbles are reordered. A Q8_0 int8
 *   q becomes q + 128.
 * - F32 / F16 / BF16 (and anything else dequantized first): rounded as onnxruntime's MLAS blockwise
 *   quantizer rounds (`range2scale`): scale = (the block's value of largest magnitude) / -2^(bits-1),
 *   q = clamp(roundf(v * (1/scale) + zp), 0, 2^bits - 1), in float32. At 4 bits this is ggml's Q4_0
 *   rule (d = max / -8, q = trunc(v/d + 8.5)) except that ggml stores d in f16 — so F16 -> int4
 *   here and F16 -> Q4_0 -> int4 differ only by that f16 rounding of the scales (and by which of two
 *   equal-magnitude values is "max"). At 8 bits MLAS maps the extreme to -128; ggml's Q8_0 uses
 *   amax / 127, a different grid.
 *
 * Written here (not with an npm package): nothing on npm writes MatMulNBits initializers.
 */
import { GGML_TYPE } from "../formats/ggml-types.ts";
import { halfToFloat } from "../formats/half.ts";
import { readTensorBytes, type GgufTensorInfo } from "../formats/gguf.ts";
import { attr, DataType, node, type OnnxNode } from "../formats/onnx/index.ts";
import { type LlamaGguf, readWeightF32 } from "./llama-gguf.ts";
import type { LazyInitializer } from "./llama-onnx-graph.ts";

/**
 * What `steerkit convert --weights` offers. int4/int8 keep float32 activations (as the builder does
 * for CPU); int8-dynamic is onnxruntime's `quantize_dynamic` layout (integer-matmul.ts).
 */
export const WEIGHT_FORMATS = ["fp32", "fp16", "int8", "int4", "int8-dynamic"] as const;
export type WeightFormat = (typeof WEIGHT_FORMATS)[number];

/** The builder's default block (and Q4_0's / Q8_0's, so those repack without loss). */
export const BLOCK_SIZE = 32;
/** Block sizes MatMulNBits takes (the builder's `int4_block_size` choices). */
export const BLOCK_SIZES = [16, 32, 64, 128, 256] as const;
export type BlockSize = (typeof BLOCK_SIZES)[number];
/** MatMulNBits accuracy_level: 4 = int8 activations (the builder's CPU default). */
export const ACCURACY_LEVEL = 4;

export interface BlockQuantized {
  readonly bits: 4 | 8;
  readonly blockSize: number;
  /** Rows (output features). */
  readonly n: number;
  /** Columns (input features). */
  readonly k: number;
  readonly blocks: number;
  /** [n, blocks, BLOCK_SIZE * bits / 8] */
  readonly packed: Uint8Array;
  /** [n * blocks] */
  readonly scales: Float32Array;
}

function shape(n: number, k: number, bits: 4 | 8, blockSize: number = BLOCK_SIZE) {
  const blocks = Math.ceil(k / blockSize);
  const blob = (blockSize * bits) / 8;
  return { blocks, blob, packed: new Uint8Array(n * blocks * blob), scales: new Float32Array(n * blocks) };
}

/**
 * Quantize a row-major float matrix [n][k] as onnxruntime's MLAS symmetric blockwise quantizer does
 * (a last partial block is padded with zeros).
 *
 * @example
 * ```ts
 * const q = quantizeBlocks(new Float32Array([0.5, -1, 0.25, 0, ...Array(28).fill(0)]), 1, 32, 4);
 * q.scales[0]; // 0.125 (= -1 / -8); q.packed[0] = 12 | (0 << 4): 0.5 -> 4 + 8, -1 -> 0
 * ```
 */
export function quantizeBlocks(w: Float32Array, n: number, k: number, bits: 4 | 8, blockSize: number = BLOCK_SIZE): BlockQuantized {
  if (w.length !== n * k) throw new RangeError(`matrix of ${w.length} values is not ${n} x ${k}`);
  const { blocks, blob, packed, scales } = shape(n, k, bits, blockSize);
  const mid = 1 << (bits - 1);
  const qmax = (1 << bits) - 1;
  const f = Math.fround;
  const q = new Uint8Array(blockSize);
  for (let r = 0; r < n; r++) {
    for (let b = 0; b < blocks; b++) {
      const start = r * k + b * blockSize;
      const end = r * k + Math.min(k, (b + 1) * blockSize);
      let min = Infinity;
      let max = -Infinity;
      for (let i = start; i < end; i++) {
        const v = w[i]!;
        if (v < min) min = v;
        if (v > max) max = v;
      }
      // A partial last block: only its real values set the range (MLAS); the padding stores the zero point.
      const extreme = Math.abs(max) > Math.abs(min) ? max : min;
      const scale = f(extreme / -mid);
      const inv = scale !== 0 ? f(1 / scale) : 0;
      q.fill(mid);
      for (let i = start; i < end; i++) {
        const x = f(f(w[i]! * inv) + mid);
        // roundf: half away from zero (x >= 0 here except for values below the clamp).
        q[i - start] = Math.min(qmax, Math.max(0, x < 0 ? -Math.round(-x) : Math.floor(x + 0.5)));
      }
      scales[r * blocks + b] = scale;
      pack(q, bits, packed, (r * blocks + b) * blob);
    }
  }
  return { bits, blockSize, n, k, blocks, packed, scales };
}

function pack(q: Uint8Array, bits: 4 | 8, out: Uint8Array, at: number): void {
  if (bits === 8) out.set(q, at);
  else for (let j = 0; j < q.length / 2; j++) out[at + j] = (q[2 * j]! & 0xf) | (q[2 * j + 1]! << 4);
}

/**
 * Repack GGUF Q4_0 blocks (f16 d, 16 bytes: element j low nibble, j + 16 high) as MatMulNBits
 * 4-bit blocks, without loss.
 *
 * @example
 * ```ts
 * const q = repackQ4_0(readTensorBytes(file, t), t.dims[1], t.dims[0]);
 * ```
 */
export function repackQ4_0(bytes: Uint8Array, n: number, k: number): BlockQuantized {
  if (k % BLOCK_SIZE !== 0) throw new RangeError(`Q4_0 rows of ${k} are not whole 32-blocks`);
  const { blocks, blob, packed, scales } = shape(n, k, 4);
  if (bytes.byteLength < n * blocks * 18) throw new RangeError(`Q4_0 tensor ${n} x ${k} needs ${n * blocks * 18} bytes, got ${bytes.byteLength}`);
  const q = new Uint8Array(BLOCK_SIZE);
  for (let i = 0; i < n * blocks; i++) {
    const src = i * 18;
    scales[i] = halfToFloat(bytes[src]! | (bytes[src + 1]! << 8));
    for (let j = 0; j < 16; j++) {
      const byte = bytes[src + 2 + j]!;
      q[j] = byte & 0xf;
      q[j + 16] = byte >> 4;
    }
    pack(q, 4, packed, i * blob);
  }
  return { bits: 4, blockSize: BLOCK_SIZE, n, k, blocks, packed, scales };
}

/**
 * Repack GGUF Q8_0 blocks (f16 d, 32 int8) as MatMulNBits 8-bit blocks (q + 128), without loss.
 *
 * @example
 * ```ts
 * const q = repackQ8_0(readTensorBytes(file, t), t.dims[1], t.dims[0]);
 * ```
 */
export function repackQ8_0(bytes: Uint8Array, n: number, k: number): BlockQuantized {
  if (k % BLOCK_SIZE !== 0) throw new RangeError(`Q8_0 rows of ${k} are not whole 32-blocks`);
  const { blocks, blob, packed, scales } = shape(n, k, 8);
  if (bytes.byteLength < n * blocks * 34) throw new RangeError(`Q8_0 tensor ${n} x ${k} needs ${n * blocks * 34} bytes, got ${bytes.byteLength}`);
  for (let i = 0; i < n * blocks; i++) {
    const src = i * 34;
    scales[i] = halfToFloat(bytes[src]! | (bytes[src + 1]! << 8));
    for (let j = 0; j < 32; j++) packed[i * blob + j] = (bytes[src + 2 + j]! ^ 0x80) & 0xff; // int8 + 128
  }
  return { bits: 8, blockSize: BLOCK_SIZE, n, k, blocks, packed, scales };
}

/**
 * The dequantized matrix (row-major [n][k]) a MatMulNBits weight stands for: w = (q - 2^(bits-1)) * scale.
 *
 * @example
 * ```ts
 * const w = dequantizeBlocks(quantizeBlocks(x, n, k, 4)); // x rounded to the int4 grid
 * ```
 */
export function dequantizeBlocks(q: BlockQuantized): Float32Array {
  const out = new Float32Array(q.n * q.k);
  const blob = (q.blockSize * q.bits) / 8;
  const mid = 1 << (q.bits - 1);
  for (let r = 0; r < q.n; r++) {
    for (let c = 0; c < q.k; c++) {
      const b = Math.floor(c / q.blockSize);
      const j = c % q.blockSize;
      const at = (r * q.blocks + b) * blob;
      const v = q.bits === 8 ? q.packed[at + j]! : (q.packed[at + (j >> 1)]! >> ((j & 1) * 4)) & 0xf;
      out[r * q.k + c] = (v - mid) * q.scales[r * q.blocks + b]!;
    }
  }
  return out;
}

/**
 * A GGUF matrix as MatMulNBits blocks: repacked when its type is the target's at block 32, else
 * quantized from its float (or dequantized) values.
 *
 * @example
 * ```ts
 * const q = blockQuantizeTensor(openLlamaGguf("m-q4_0.gguf"), layer.wq, 4); // Q4_0: repacked as is
 * ```
 */
export function blockQuantizeTensor(g: LlamaGguf, t: GgufTensorInfo, bits: 4 | 8, blockSize: number = BLOCK_SIZE): BlockQuantized {
  if (t.dims.length !== 2) throw new RangeError(`tensor "${t.name}" is not a matrix (dims ${t.dims.join(" x ")})`);
  const [k, n] = t.dims as [number, number]; // ggml: dims[0] is the row length (input features)
  if (blockSize === BLOCK_SIZE && bits === 4 && t.type === GGML_TYPE.Q4_0) return repackQ4_0(readTensorBytes(g.file, t), n, k);
  if (blockSize === BLOCK_SIZE && bits === 8 && t.type === GGML_TYPE.Q8_0) return repackQ8_0(readTensorBytes(g.file, t), n, k);
  return quantizeBlocks(readWeightF32(g, t), n, k, bits, blockSize);
}

export interface QuantizedMatMul {
  readonly node: OnnxNode;
  /** B then scales, produced lazily (the matrix is quantized once, when B is written). */
  readonly initializers: readonly LazyInitializer[];
}

/**
 * A `MatMulNBits` node computing `input @ Wᵀ` for GGUF matrix `t`, with its initializers named as
 * onnxruntime's quantizer names them (`<weight>_Q4` / `_Q8`, `<weight>_scales`).
 *
 * @example
 * ```ts
 * const mm = quantizedMatMul(g, layer.wq, { input: "x", output: "q", weightName: "model.layers.0.self_attn.q_proj.weight",
 *   nodeName: "/model/layers.0/self_attn/q_proj/MatMul_Q4", bits: 4 });
 * ```
 */
export function quantizedMatMul(
  g: LlamaGguf,
  t: GgufTensorInfo,
  o: { input: string; output: string; weightName: string; nodeName: string; bits: 4 | 8; blockSize?: number },
): QuantizedMatMul {
  const [k, n] = t.dims as [number, number];
  const blockSize = o.blockSize ?? BLOCK_SIZE;
  const blocks = Math.ceil(k / blockSize);
  const blob = (blockSize * o.bits) / 8;
  const bName = `${o.weightName}_Q${o.bits}`;
  const sName = `${o.weightName}_scales`;
  let pending: BlockQuantized | null = null;
  const quantized = () => (pending ??= blockQuantizeTensor(g, t, o.bits, blockSize));
  const initializers: LazyInitializer[] = [
    {
      name: bName,
      dataType: DataType.UINT8,
      dims: [n, blocks, blob],
      byteLength: n * blocks * blob,
      source: t,
      produce: () => quantized().packed,
    },
    {
      name: sName,
      dataType: DataType.FLOAT,
      dims: [n * blocks],
      byteLength: n * blocks * 4,
      source: t,
      produce: () => {
        const s = quantized().scales;
        pending = null; // both halves written: let the matrix go
        return new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
      },
    },
  ];
  const nodeOut = node(
    "MatMulNBits",
    [o.input, bName, sName],
    [o.output],
    [attr.int("K", k), attr.int("N", n), attr.int("bits", o.bits), attr.int("block_size", blockSize), attr.int("accuracy_level", ACCURACY_LEVEL)],
    { name: o.nodeName, domain: "com.microsoft" },
  );
  return { node: nodeOut, initializers };
}

/**
 * Bits of a quantized weight format, or null for the float ones.
 *
 * @example
 * ```ts
 * weightBits("int4"); // 4
 * weightBits("fp16"); // null
 * ```
 */
export function weightBits(format: WeightFormat): 4 | 8 | null {
  return format === "int4" ? 4 : format === "int8" ? 8 : null;
}

export interface ResolvedWeights {
  readonly format: WeightFormat;
  /** Activation (and float weight) precision of the graph. */
  readonly dtype: "float32" | "float16";
  /** 4 / 8 for MatMulNBits, undefined for float weights and int8-dynamic. */
  readonly bits: 4 | 8 | undefined;
  readonly blockSize: number;
  /** int8-dynamic: DynamicQuantizeLinear + MatMulInteger with per-column int8 weights. */
  readonly integerOps: boolean;
}

/**
 * The converter's weight options, checked: `weights` (overrides the older `dtype`) and `blockSize`.
 * Throws an Error naming the option and what it got.
 *
 * @example
 * ```ts
 * resolveWeights({ weights: "int4", blockSize: 128 }); // { format: "int4", dtype: "float32", bits: 4, blockSize: 128, integerOps: false }
 * ```
 */
export function resolveWeights(o: { weights?: WeightFormat; dtype?: "float32" | "float16"; blockSize?: number }): ResolvedWeights {
  if (o.weights !== undefined && !WEIGHT_FORMATS.includes(o.weights)) throw new Error(`weights must be one of ${WEIGHT_FORMATS.join(", ")}, got ${JSON.stringify(o.weights)}`);
  const format: WeightFormat = o.weights ?? (o.dtype === "float16" ? "fp16" : "fp32");
  const dtype = o.weights === undefined ? (o.dtype ?? "float32") : format === "fp16" ? "float16" : "float32";
  if (dtype !== "float32" && dtype !== "float16") throw new Error(`dtype must be "float32" or "float16", got ${JSON.stringify(dtype)}`);
  const bits = weightBits(format) ?? undefined;
  const blockSize = o.blockSize ?? BLOCK_SIZE;
  if (!(BLOCK_SIZES as readonly number[]).includes(blockSize)) throw new Error(`blockSize must be one of ${BLOCK_SIZES.join(", ")}, got ${blockSize}`);
  if (o.blockSize !== undefined && bits === undefined) throw new Error(`blockSize applies to int8/int4 weights, not ${format}${format === "int8-dynamic" ? " (one scale per output column, no blocks)" : ""}`);
  return { format, dtype, bits, blockSize, integerOps: format === "int8-dynamic" };
}

/**
 * GGUF matrices written as MatMulNBits (packed q/k/v count as three), by whether they were repacked
 * from their own Q4_0/Q8_0 blocks or rounded from float values.
 *
 * @example
 * ```ts
 * blockReport(weights, 4, 32); // { bits: 4, blockSize: 32, repacked: 113, rounded: 0 }
 * ```
 */
export function blockReport(weights: readonly LazyInitializer[], bits: 4 | 8, blockSize: number) {
  const sources = weights.filter((w) => w.name.endsWith(`_Q${bits}`)).flatMap((w) => w.sources ?? [w.source]);
  const repacked = sources.filter((t) => isRepacked(t, bits, blockSize)).length;
  return { bits, blockSize, repacked, rounded: sources.length - repacked };
}

/**
 * Whether a GGUF matrix goes into MatMulNBits as its own blocks (no second rounding).
 *
 * @example
 * ```ts
 * isRepacked(q4_0Tensor, 4, 32); // true
 * isRepacked(q4_0Tensor, 4, 128); // false: dequantized and rounded again
 * ```
 */
export function isRepacked(t: GgufTensorInfo, bits: 4 | 8, blockSize: number): boolean {
  return blockSize === BLOCK_SIZE && ((bits === 4 && t.type === GGML_TYPE.Q4_0) || (bits === 8 && t.type === GGML_TYPE.Q8_0));
}
