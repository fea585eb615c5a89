import { describe, expect, test } from "bun:test";
import { createRng } from "../../src/core/sampling.ts";
import { cosine, differenceOfMeans, pcaOfDifferences, separation, topComponent } from "../../src/directions/math.ts";

/** A seeded uniform(-1, 1) stream (core's xoshiro128**), so the data is fixed. */
function rng(seed: number): () => number {
  const r = createRng(seed);
  return () => r() * 2 - 1;
}

/** Pairs whose differences are t_i * axis + small noise; t_i > 0 for `positive` of the n pairs. */
function pairs(n: number, d: number, axis: number[], positive: number, seed: number) {
  const r = rng(seed);
  const a = new Float32Array(n * d);
  const b = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const t = (i < positive ? 1 : -1) * (1 + i);
    for (let j = 0; j < d; j++) {
      const base = 3 * r();
      b[i * d + j] = base;
      a[i * d + j] = base + t * axis[j]! + 0.01 * r();
    }
  }
  return { a, b };
}

describe("direction math", () => {
  test("difference of means, by hand", () => {
    const a = new Float32Array([1, 2, 3, 4]); // rows [1,2], [3,4]: mean [2,3]
    const b = new Float32Array([0, 0, 2, -2]); // mean [1,-1]
    expect([...differenceOfMeans(a, b, 2, 2)]).toEqual([1, 4]);
  });

  test("PCA of differences finds the axis the pairs differ along, the same through either Gram matrix", () => {
    const d = 6;
    const axis = [3, 0, 4, 0, 0, 0].map((x) => x / 5);
    for (const n of [4, 12]) {
      // n = 4 < d: the n x n Gram path; n = 12 > d: the covariance path.
      const { a, b } = pairs(n, d, axis, n - 1, 7);
      const { direction, explainedVariance, flipped } = pcaOfDifferences(a, b, n, d);
      expect(cosine(direction, axis)).toBeGreaterThan(0.999);
      expect(Math.hypot(...direction)).toBeCloseTo(1, 6);
      expect(explainedVariance).toBeGreaterThan(0.99);
      expect(typeof flipped).toBe("boolean");
    }
  });

  test("repeng's sign rule: the majority of pairs decides, not the mean", () => {
    const d = 4;
    const axis = [0, 1, 0, 0];
    // 3 of 5 pairs have A above B, but the 2 others differ by more: the mean difference points the other way.
    const n = 5;
    const a = new Float32Array(n * d);
    const b = new Float32Array(n * d);
    const t = [1, 1.2, 0.8, -6, -7];
    t.forEach((ti, i) => {
      a[i * d + 1] = ti;
      a[i * d + 0] = 0.001 * i;
    });
    const { direction } = pcaOfDifferences(a, b, n, d);
    expect(direction[1]!).toBeCloseTo(1, 4);
    expect(differenceOfMeans(a, b, n, d)[1]!).toBeLessThan(0);
    // Swapping the sets flips the direction.
    expect(pcaOfDifferences(b, a, n, d).direction[1]!).toBeCloseTo(-1, 4);
  });

  test("the power iteration's answer satisfies C v = λ v for a small matrix", () => {
    const r = rng(3);
    const n = 9;
    const d = 3;
    const x = Float64Array.from({ length: n * d }, () => r());
    const { vector, value } = topComponent(x, n, d);
    const cv = [0, 0, 0];
    for (let i = 0; i < d; i++) for (let j = 0; j < d; j++) for (let k = 0; k < n; k++) cv[i]! += x[k * d + i]! * x[k * d + j]! * vector[j]!;
    for (let i = 0; i < d; i++) expect(cv[i]!).toBeCloseTo(value * vector[i]!, 8);
  });

  test("identical or constant-shift pairs have no principal component: an error, not NaN", () => {
    const a = new Float32Array([1, 2, 3, 4]);
    expect(() => pcaOfDifferences(a, a, 2, 2)).toThrow(/no variance/);
    expect(() => pcaOfDifferences(a, new Float32Array([0, 1, 2, 3]), 2, 2)).toThrow(/no variance/);
  });

  test("separation: mean projections, Cohen's d with pooled sample variance, midpoint accuracy", () => {
    const a = new Float32Array([2, 0, 4, 0]); // projections on [1,0]: 2, 4
    const b = new Float32Array([0, 0, 3, 0]); // 0, 3
    const s = separation([2, 0], a, b, 2);
    expect(s.meanA).toBe(3);
    expect(s.meanB).toBe(1.5);
    // variances 2 and 4.5: pooled sqrt(3.25)
    expect(s.d).toBeCloseTo(1.5 / Math.sqrt(3.25), 10);
    // threshold 2.25: A's 2 and B's 3 are on the wrong side
    expect(s.accuracy).toBe(0.5);
  });
});
