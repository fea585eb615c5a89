/**
 * IEEE half (float16) and bfloat16 conversions: the one place the GGUF reader, the converter and the
 * ONNX codec and adapter take them from.
 *
 * Written here rather than taken from a package: each is a dozen lines, they run once per weight of
 * a multi-gigabyte model (so the bulk forms work on whole arrays, no per-element allocation), and
 * they must round exactly like numpy / ggml (round-to-nearest-even, overflow to infinity, subnormals
 * kept). NaN becomes ggml's canonical quiet NaN with its sign kept (`sign | 0x7e00`), as ggml's
 * portable `fp32_to_fp16` and the engine's `Float16Array` both do.
 *
 * Which direction uses the engine's `Float16Array` is measured, not assumed (bench/half.ts):
 * float32 -> half through `Float16Array.prototype.set` is several times faster than the field
 * arithmetic on all but tiny arrays, while half -> float32 is faster through our 65536-entry table
 * than through the engine, so each direction takes its faster path.
 */

/** IEEE half bits -> number, by decoding the fields (the definition the bulk table is built from). */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

const scalar = new Float32Array(1);
const scalarBits = new Uint32Array(scalar.buffer);

/** number -> IEEE half bits (rounded through float32 first, as numpy does). */
export function floatToHalf(x: number): number {
  scalar[0] = x;
  return float32BitsToHalf(scalarBits[0]!);
}

/**
 * Below this length, creating the `Float16Array` view costs more than it saves and the field
 * arithmetic is faster (bench/half.ts: break-even around 64 elements).
 */
const ENGINE_MIN_LENGTH = 64;

/** float32 -> IEEE half bits, in bulk. `out` must hold at least `src.length` values. */
export function float32ToHalfBits(src: Float32Array, out: Uint16Array = new Uint16Array(src.length)): Uint16Array {
  if (src.length >= ENGINE_MIN_LENGTH) {
    // The engine converts each float32 with one correctly rounded (nearest-even) step.
    new Float16Array(out.buffer, out.byteOffset, out.length).set(src);
    return out;
  }
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = float32BitsToHalf(bits[i]!);
  return out;
}

/** float32 bits -> IEEE half bits, by the fields: the definition the bulk form is tested against. */
export function float32BitsToHalf(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | (mant ? 0x7e00 : 0x7c00); // NaN (canonical quiet, as ggml) / inf
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflows to ±0
    // Subnormal: shift the implicit-1 mantissa right, round to nearest even.
    const m = mant | 0x800000;
    const shift = 14 - e;
    let half = m >>> shift;
    const rem = m & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and to infinity at the top).
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  return sign | half;
}

let halfTable: Float32Array | null = null;

/**
 * IEEE half bits -> float32, in bulk, through a 65536-entry table (256 KB, built once): a weight
 * conversion reads every half of a multi-gigabyte model, and a lookup is ~50x faster than decoding
 * each value's fields.
 */
export function halfBitsToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const table = (halfTable ??= buildHalfTable());
  for (let i = 0; i < bits.length; i++) out[i] = table[bits[i]!]!;
  return out;
}

function buildHalfTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) t[h] = halfToFloat(h);
  return t;
}

/**
 * Q8_0 blocks (`d: f16, q: int8[32]`, 34 bytes) -> float32 `d * q`, in bulk: the per-element
 * DataView decoding of the generic reader is too slow for a multi-gigabyte model.
 */
export function dequantizeQ8_0Fast(bytes: Uint8Array, count: number, out: Float32Array = new Float32Array(count)): Float32Array {
  const table = (halfTable ??= buildHalfTable());
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const blocks = count / 32;
  for (let b = 0, src = 0, dst = 0; b < blocks; b++, src += 34, dst += 32) {
    const d = table[bytes[src]! | (bytes[src + 1]! << 8)]!;
    for (let j = 0; j < 32; j++) out[dst + j] = d * q[src + 2 + j]!;
  }
  return out;
}

/** bfloat16 bits -> float32 (the top half of a float32's bits), in bulk. */
export function bf16BitsToFloat32(bits: Uint16Array, out: Float32Array = new Float32Array(bits.length)): Float32Array {
  const u = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) u[i] = bits[i]! << 16;
  return out;
}
