/**
 * Dequantization of ggml's block types beyond Q8_0: the 32-blocks Q4_0, Q5_0, Q5_1 and the
 * 256-element K-quant super-blocks Q4_K, Q5_K, Q6_K — what `llama-quantize` writes for q4_0 and the
 * q4_k_m / q5_k_m mixes (whose odd tensors fall back to Q5_0 / Q5_1 / Q6_K). Block layouts and the
 * arithmetic follow ggml-common.h / ggml-quants.c of the pinned release (`dequantize_row_*`),
 * rounded to float32 at each step where ggml computes in float, so the values are ggml's (checked bit
 * for bit against gguf-py's numpy dequantizers on llama-quantize output during development; tested
 * through llama.cpp parity in test/parity/quantized.test.ts).
 *
 * Written here: no npm package reads ggml blocks.
 */
import { halfToFloat } from "./half.ts";

const f = Math.fround;
const half = (b: Uint8Array, at: number) => halfToFloat(b[at]! | (b[at + 1]! << 8));
const u32 = (b: Uint8Array, at: number) => (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;

function blocks(name: string, count: number, size: number): number {
  if (count % size !== 0) throw new RangeError(`${name} tensor of ${count} elements is not a whole number of ${size}-blocks`);
  return count / size;
}

/**
 * Q4_0: d f16, qs[16]; x = (q - 8) d; element j in the low nibble of qs[j], j + 16 in the high one.
 * (Each dequantizer here takes a tensor's raw bytes and element count, like `dequantize`.)
 *
 * @example
 * ```ts
 * const w = dequantizeQ4_0(readTensorBytes(file, t), t.elementCount);
 * ```
 */
export function dequantizeQ4_0(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, src = 0, dst = 0; b < blocks("Q4_0", count, 32); b++, src += 18, dst += 32) {
    const d = half(bytes, src);
    for (let j = 0; j < 16; j++) {
      const q = bytes[src + 2 + j]!;
      out[dst + j] = ((q & 0xf) - 8) * d;
      out[dst + j + 16] = ((q >> 4) - 8) * d;
    }
  }
  return out;
}

/** Q5_0 / Q5_1: d f16 (, m f16), qh u32 (bit j: 5th bit of element j), qs[16]; x = (q - 16) d, or q d + m. */
function dequantizeQ5(bytes: Uint8Array, count: number, withMin: boolean): Float32Array {
  const out = new Float32Array(count);
  const size = withMin ? 24 : 22;
  for (let b = 0, src = 0, dst = 0; b < blocks(withMin ? "Q5_1" : "Q5_0", count, 32); b++, src += size, dst += 32) {
    const d = half(bytes, src);
    const m = withMin ? half(bytes, src + 2) : 0;
    const qh = u32(bytes, src + (withMin ? 4 : 2));
    const qs = src + (withMin ? 8 : 6);
    for (let j = 0; j < 16; j++) {
      const x0 = (bytes[qs + j]! & 0xf) | (((qh >>> j) << 4) & 0x10);
      const x1 = (bytes[qs + j]! >> 4) | ((qh >>> (j + 12)) & 0x10);
      out[dst + j] = withMin ? f(f(x0 * d) + m) : (x0 - 16) * d;
      out[dst + j + 16] = withMin ? f(f(x1 * d) + m) : (x1 - 16) * d;
    }
  }
  return out;
}
/** Q5_0 blocks -> float32. @example `dequantizeQ5_0(readTensorBytes(file, t), t.elementCount)` */
export const dequantizeQ5_0 = (bytes: Uint8Array, count: number) => dequantizeQ5(bytes, count, false);
/** Q5_1 blocks -> float32. @example `dequantizeQ5_1(readTensorBytes(file, t), t.elementCount)` */
export const dequantizeQ5_1 = (bytes: Uint8Array, count: number) => dequantizeQ5(bytes, count, true);

/** The 6-bit scale and min of sub-block j from a K-quant's 12 packed scale bytes (get_scale_min_k4). */
function scaleMin(bytes: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [bytes[at + j]! & 63, bytes[at + j + 4]! & 63];
  return [(bytes[at + j + 4]! & 0xf) | ((bytes[at + j - 4]! >> 6) << 4), (bytes[at + j + 4]! >> 4) | ((bytes[at + j]! >> 6) << 4)];
}

/**
 * Q4_K / Q5_K super-block: d f16, dmin f16, scales[12] (eight 6-bit scale/min pairs), (Q5_K: qh[32]),
 * qs[128]; each 32-element sub-block is x = d·sc·q - dmin·m.
 */
function dequantizeK45(bytes: Uint8Array, count: number, five: boolean): Float32Array {
  const out = new Float32Array(count);
  const size = five ? 176 : 144;
  for (let b = 0, src = 0, dst = 0; b < blocks(five ? "Q5_K" : "Q4_K", count, 256); b++, src += size) {
    const d = half(bytes, src);
    const dmin = half(bytes, src + 2);
    const qh = src + 16;
    let qs = src + (five ? 48 : 16);
    for (let j = 0, is = 0, shift = 0; j < 256; j += 64, is += 2, shift += 2, qs += 32) {
      const [sc1, m1] = scaleMin(bytes, src + 4, is);
      const [sc2, m2] = scaleMin(bytes, src + 4, is + 1);
      const d1 = f(d * sc1), min1 = f(dmin * m1), d2 = f(d * sc2), min2 = f(dmin * m2);
      for (let l = 0; l < 32; l++) {
        const hi1 = five && (bytes[qh + l]! >> shift) & 1 ? 16 : 0;
        out[dst++] = f(f(d1 * ((bytes[qs + l]! & 0xf) + hi1)) - min1);
      }
      for (let l = 0; l < 32; l++) {
        const hi2 = five && (bytes[qh + l]! >> (shift + 1)) & 1 ? 16 : 0;
        out[dst++] = f(f(d2 * ((bytes[qs + l]! >> 4) + hi2)) - min2);
      }
    }
  }
  return out;
}
/** Q4_K super-blocks -> float32. @example `dequantizeQ4_K(readTensorBytes(file, t), t.elementCount)` */
export const dequantizeQ4_K = (bytes: Uint8Array, count: number) => dequantizeK45(bytes, count, false);
/** Q5_K super-blocks -> float32. @example `dequantizeQ5_K(readTensorBytes(file, t), t.elementCount)` */
export const dequantizeQ5_K = (bytes: Uint8Array, count: number) => dequantizeK45(bytes, count, true);

/**
 * Q6_K super-block: ql[128] (low 4 bits), qh[64] (high 2 bits), scales int8[16], d f16; x = d·sc·(q - 32).
 *
 * @example
 * ```ts
 * const head = dequantizeQ6_K(readTensorBytes(file, output), output.elementCount);
 * ```
 */
export function dequantizeQ6_K(bytes: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  for (let b = 0, src = 0, dst = 0; b < blocks("Q6_K", count, 256); b++, src += 210) {
    const d = half(bytes, src + 208);
    for (let n = 0; n < 2; n++, dst += 128) {
      const ql = src + n * 64;
      const qh = src + 128 + n * 32;
      const sc = src + 192 + n * 8;
      const scale = (i: number) => f(d * ((bytes[sc + i]! << 24) >> 24)); // int8
      for (let l = 0; l < 32; l++) {
        const is = l >> 4;
        const h = bytes[qh + l]!;
        out[dst + l] = f(scale(is) * (((bytes[ql + l]! & 0xf) | ((h & 3) << 4)) - 32));
        out[dst + l + 32] = f(scale(is + 2) * (((bytes[ql + l + 32]! & 0xf) | (((h >> 2) & 3) << 4)) - 32));
        out[dst + l + 64] = f(scale(is + 4) * (((bytes[ql + l]! >> 4) | (((h >> 4) & 3) << 4)) - 32));
        out[dst + l + 96] = f(scale(is + 6) * (((bytes[ql + l + 32]! >> 4) | (((h >> 6) & 3) << 4)) - 32));
      }
    }
  }
  return out;
}
