/**
 * SAE initialisation and upkeep for the trainer (train.ts): Gaussian unit-norm decoder rows with a
 * tied encoder, b_dec at the geometric median (Weiszfeld) or the mean of the data, a seeded
 * shuffle, and Anthropic-style resampling of dead ReLU latents. All randomness comes from the
 * caller's seeded `Rng`, so training stays deterministic.
 */
import type { Rng } from "../core/sampling.ts";
import { forward, normalizeRows, type LatentShape } from "./train-kernels.ts";

/** Gaussian rows, normalized; the encoder starts as the decoder's transpose (tied), scaled by `encScale`. */
export function initWeights(enc: Float32Array, dec: Float32Array, dSae: number, dIn: number, rng: Rng, encScale: number): void {
  for (let i = 0; i < dec.length; i++) dec[i] = gaussian(rng);
  normalizeRows(dec, dSae, dIn);
  for (let i = 0; i < enc.length; i++) enc[i] = dec[i]! * encScale;
}

function gaussian(rng: Rng): number {
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

export function shuffle(a: Int32Array, rng: Rng): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
}

export function meanRow(data: Float32Array, d: number): Float32Array {
  const rows = data.length / d;
  const acc = new Float64Array(d);
  for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) acc[j] = acc[j]! + data[r * d + j]!;
  return Float32Array.from(acc, (s) => s / rows);
}

/**
 * Geometric median (the point minimizing the sum of Euclidean distances) by Weiszfeld's
 * iteration, from the mean, over at most 10,000 rows sampled with the training RNG.
 */
export function geometricMedian(data: Float32Array, d: number, rng: Rng, maxRows = 10_000, iterations = 100): Float32Array {
  const rows = data.length / d;
  const pick: number[] = [];
  if (rows <= maxRows) for (let r = 0; r < rows; r++) pick.push(r);
  else for (let r = 0; r < maxRows; r++) pick.push(Math.floor(rng() * rows));
  const y = Float64Array.from(meanRow(data, d));
  const next = new Float64Array(d);
  for (let it = 0; it < iterations; it++) {
    next.fill(0);
    let wsum = 0;
    for (const r of pick) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += (data[r * d + j]! - y[j]!) ** 2;
      const w = 1 / Math.max(Math.sqrt(ss), 1e-8);
      wsum += w;
      for (let j = 0; j < d; j++) next[j] = next[j]! + w * data[r * d + j]!;
    }
    let moved = 0;
    for (let j = 0; j < d; j++) {
      const v = next[j]! / wsum;
      moved += (v - y[j]!) ** 2;
      y[j] = v;
    }
    if (Math.sqrt(moved) < 1e-6) break;
  }
  return Float32Array.from(y);
}

/** Anthropic-style resampling of dead latents; returns how many were resampled. */
export function resampleDead(
  o: LatentShape, dead: Uint8Array, enc: Float32Array, bEnc: Float32Array, dec: Float32Array, bDec: Float32Array,
  adam: { m: Float32Array; v: Float32Array }[], train: Float32Array, trainRows: number, dIn: number, rng: Rng,
): number {
  const { dSae } = o;
  // Squared reconstruction error of up to 4096 training rows.
  const n = Math.min(4096, trainRows);
  const rowsOf = Int32Array.from({ length: n }, () => Math.floor(rng() * trainRows));
  const x = new Float32Array(n * dIn);
  for (let r = 0; r < n; r++) x.set(train.subarray(rowsOf[r]! * dIn, (rowsOf[r]! + 1) * dIn), r * dIn);
  const xc = new Float32Array(n * dIn);
  const pre = new Float32Array(n * dSae);
  const actIdx = new Int32Array(n * dSae);
  const actVal = new Float32Array(n * dSae);
  const actCount = new Int32Array(n);
  const xhat = new Float32Array(n * dIn);
  forward(o, enc, bEnc, dec, bDec, bDec, x, xc, pre, actIdx, actVal, actCount, xhat, n);
  const err = new Float64Array(n);
  let total = 0;
  for (let r = 0; r < n; r++) {
    let s = 0;
    for (let j = 0; j < dIn; j++) s += (x[r * dIn + j]! - xhat[r * dIn + j]!) ** 2;
    err[r] = s;
    total += s;
  }
  let aliveNorm = 0;
  let alive = 0;
  for (let i = 0; i < dSae; i++) {
    if (dead[i]) continue;
    let ss = 0;
    for (let j = 0; j < dIn; j++) ss += enc[i * dIn + j]! ** 2;
    aliveNorm += Math.sqrt(ss);
    alive++;
  }
  const encNorm = 0.2 * (alive > 0 ? aliveNorm / alive : 1);
  let count = 0;
  for (let i = 0; i < dSae; i++) {
    if (!dead[i] || !(total > 0)) continue;
    let u = rng() * total;
    let r = 0;
    while (r < n - 1 && u >= err[r]!) u -= err[r++]!;
    let ss = 0;
    for (let j = 0; j < dIn; j++) ss += (x[r * dIn + j]! - xhat[r * dIn + j]!) ** 2;
    const s = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let j = 0; j < dIn; j++) {
      const u2 = (x[r * dIn + j]! - xhat[r * dIn + j]!) * s;
      dec[i * dIn + j] = u2;
      enc[i * dIn + j] = u2 * encNorm;
    }
    bEnc[i] = 0;
    for (const [p, size] of [[0, dIn], [1, dIn], [2, 1]] as const) {
      const { m, v } = adam[p]!;
      m.fill(0, i * size, (i + 1) * size);
      v.fill(0, i * size, (i + 1) * size);
    }
    count++;
  }
  return count;
}
