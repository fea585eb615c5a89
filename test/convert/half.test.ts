import { describe, expect, test } from "bun:test";
import { bf16BitsToFloat32, dequantizeQ8_0Fast, float32BitsToHalf, float32ToHalfBits, floatToHalf, halfBitsToFloat32, halfToFloat } from "../../src/formats/half.ts";
import { dequantize, GGML_TYPE } from "../../src/formats/ggml-types.ts";
import { quantizeQ8_0 } from "./gguf-edit.ts";

describe("half precision conversions", () => {
  test("halfToFloat and halfBitsToFloat32 decode all 65536 halves as the runtime's native Float16Array does", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const native = new Float16Array(all.buffer); // an independent decoder: the engine's own
    const f = halfBitsToFloat32(all);
    for (let i = 0; i < 65536; i++) {
      const want = native[i]!;
      if (Number.isNaN(want)) {
        expect(f[i]).toBeNaN();
        expect(halfToFloat(i)).toBeNaN();
      } else {
        expect(Object.is(f[i], want)).toBe(true);
        expect(Object.is(halfToFloat(i), want)).toBe(true);
      }
    }
  });

  test("floatToHalf (scalar) agrees with float32ToHalfBits (bulk) and with the native encoder", () => {
    const xs = [0, -0, 1, -2.5, 65504, 70000, 1e-8, 6e-8, 1 + 2 ** -11, Math.PI, -1e-5, Infinity];
    const native = new Float16Array(xs);
    const nativeBits = new Uint16Array(native.buffer);
    xs.forEach((x, i) => {
      expect(floatToHalf(x)).toBe(float32ToHalfBits(new Float32Array([x]))[0]!);
      expect(floatToHalf(x)).toBe(nativeBits[i]!);
    });
  });

  test("float32ToHalfBits inverts it for every non-NaN half", () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const back = float32ToHalfBits(halfBitsToFloat32(all));
    let mismatches = 0;
    for (let i = 0; i < 65536; i++) if (!Number.isNaN(halfToFloat(i)) && back[i] !== i) mismatches++;
    expect(mismatches).toBe(0);
  });

  test("float32ToHalfBits rounds to nearest even, overflows to infinity, keeps subnormals", () => {
    const bits = (x: number) => float32ToHalfBits(new Float32Array([x]))[0]!;
    expect(bits(1 + 2 ** -11)).toBe(0x3c00); // halfway between 1 and 1+2^-10: ties to even (1)
    expect(bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // halfway between 1+2^-10 and 1+2^-9: ties to even
    expect(bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above halfway: up
    expect(bits(65504)).toBe(0x7bff); // largest half
    expect(bits(65520)).toBe(0x7c00); // halfway to 2^16: rounds to even = infinity
    expect(bits(-1e6)).toBe(0xfc00);
    expect(bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(bits(2 ** -25)).toBe(0x0000); // halfway to it: ties to even (0)
    expect(bits(3 * 2 ** -26)).toBe(0x0001);
    expect(bits(-0)).toBe(0x8000);
    expect(bits(NaN) & 0x7c00).toBe(0x7c00);
    expect(bits(NaN) & 0x3ff).not.toBe(0);
  });

  test("float32ToHalfBits (the engine's Float16Array in bulk) equals the field definition at every rounding boundary", () => {
    // Every half value, every midpoint between neighbouring halves (including the one to infinity and
    // the one below the smallest subnormal), one float32 ulp either side of each, both signs; then
    // NaNs with assorted payloads, infinities, float32 extremes and seeded random bit patterns.
    const cases: number[] = [];
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const withNeighbours = (x: number) => {
      f32[0] = x;
      const b = u32[0]!;
      cases.push(b, b + 1, b - 1, (b | 0x80000000) >>> 0, ((b + 1) | 0x80000000) >>> 0, ((b - 1) | 0x80000000) >>> 0);
    };
    for (let h = 0; h < 0x7c00; h++) {
      withNeighbours(halfToFloat(h));
      withNeighbours(h === 0x7bff ? 65520 : (halfToFloat(h) + halfToFloat(h + 1)) / 2); // 65520: halfway from the largest half to 2^16
    }
    withNeighbours(2 ** -25); // halfway to the smallest subnormal
    withNeighbours(2 ** -26);
    for (const b of [0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fa00000, 0x7fffffff, 0xffffffff, 0x7f7fffff, 0x00000001, 0x80000001, 0x00800000]) cases.push(b);
    let seed = 0x9e3779b9;
    for (let i = 0; i < 1 << 20; i++) {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      cases.push(seed >>> 0);
    }
    const bits = Uint32Array.from(cases);
    const bulk = float32ToHalfBits(new Float32Array(bits.buffer));
    let mismatches = 0;
    for (let i = 0; i < bits.length; i++) if (bulk[i] !== float32BitsToHalf(bits[i]!)) mismatches++;
    expect(bits.length).toBeGreaterThan(1 << 20);
    expect(mismatches).toBe(0);
    // Short arrays take the field path; both paths give the same bits.
    for (let n = 1; n <= 200; n += 13) {
      const part = new Float32Array(bits.buffer, 0, n);
      expect(Array.from(float32ToHalfBits(part))).toEqual(Array.from(bulk.subarray(0, n)));
    }
  });

  test("NaN keeps its sign and becomes the canonical quiet NaN, as ggml's fp32_to_fp16 does", () => {
    const nans = new Float32Array(new Uint32Array([0x7fc00000, 0xffc00000, 0x7f800001, 0xff812345, 0x7fa00000, 0x7fffffff]).buffer);
    const expected = [0x7e00, 0xfe00, 0x7e00, 0xfe00, 0x7e00, 0x7e00];
    expect(Array.from(float32ToHalfBits(nans))).toEqual(expected); // field path (short array)
    const long = new Float32Array(128);
    long.set(nans, 64);
    expect(Array.from(float32ToHalfBits(long).subarray(64, 70))).toEqual(expected); // engine path
  });

  test("dequantizeQ8_0Fast equals the GGUF reader's Q8_0 decoding", () => {
    const x = Float32Array.from({ length: 32 * 64 }, (_, i) => Math.sin(i * 0.37) * (1 + (i % 97)));
    const q = quantizeQ8_0(x);
    const fast = dequantizeQ8_0Fast(q, x.length);
    expect(Array.from(fast)).toEqual(Array.from(dequantize(GGML_TYPE.Q8_0, q, x.length)));
    // And the quantisation is what it claims: within half a step, plus 127 steps times the f16 rounding of the scale (2^-11).
    for (let b = 0; b < 64; b++) {
      const block = x.subarray(b * 32, b * 32 + 32);
      const step = Math.max(...block.map(Math.abs)) / 127;
      for (let j = 0; j < 32; j++) expect(Math.abs(fast[b * 32 + j]! - block[j]!)).toBeLessThanOrEqual(step * (0.5 + 127 * 2 ** -11));
    }
  });

  test("bf16BitsToFloat32 equals the GGUF reader's BF16 decoding over all 65536 values", () => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const fast = bf16BitsToFloat32(bits);
    const slow = dequantize(GGML_TYPE.BF16, new Uint8Array(bits.buffer), bits.length);
    // Bit-equal except NaN payloads, which the reader's round trip through a JS number canonicalises.
    const a = new Uint32Array(fast.buffer);
    const b = new Uint32Array(slow.buffer);
    let mismatches = 0;
    for (let i = 0; i < a.length; i++) if (Number.isNaN(fast[i]) ? !Number.isNaN(slow[i]) : a[i] !== b[i]) mismatches++;
    expect(mismatches).toBe(0);
  });
});
