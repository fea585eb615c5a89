/** RMS(a - b) / std(b): a quantized result's error as a fraction of the reference's spread (shared by the quantization tests). */
export function relativeRms(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (const v of b) m += v;
  m /= b.length;
  let s = 0;
  let d = 0;
  for (let i = 0; i < b.length; i++) {
    s += (b[i]! - m) ** 2;
    d += (a[i]! - b[i]!) ** 2;
  }
  return Math.sqrt(d / s);
}
