import { describe, expect, test } from "bun:test";
import { createRng, createSampler, type SamplingOptions } from "../../src/core/sampling.ts";

const base: SamplingOptions = { temperature: 1, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, repetitionWindow: 64, seed: 7 };
const logits = () => new Float32Array([0, 1, 2, 3, 2.5, -1, 0.5, 1.5]);

function histogram(o: Partial<SamplingOptions>, n = 4000): number[] {
  const s = createSampler(8, { ...base, ...o });
  const h = new Array(8).fill(0);
  for (let i = 0; i < n; i++) h[s.sample(logits(), [])]++;
  return h;
}

describe("rng", () => {
  test("same seed, same stream; different seed, different stream; values in [0,1)", () => {
    const a = createRng(42), b = createRng(42), c = createRng(43);
    const xs = Array.from({ length: 100 }, () => a());
    expect(Array.from({ length: 100 }, () => b())).toEqual(xs);
    expect(Array.from({ length: 100 }, () => c())).not.toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.35);
    expect(mean).toBeLessThan(0.65);
  });
});

describe("sampler", () => {
  test("temperature 0 is argmax", () => {
    const s = createSampler(8, { ...base, temperature: 0 });
    expect(s.sample(logits(), [])).toBe(3);
  });
  test("same seed gives the same sequence of draws", () => {
    const draw = (seed: number) => {
      const s = createSampler(8, { ...base, seed });
      return Array.from({ length: 50 }, () => s.sample(logits(), []));
    };
    expect(draw(1)).toEqual(draw(1));
    expect(draw(1)).not.toEqual(draw(2));
  });
  test("top-k keeps exactly the k most likely tokens", () => {
    const h = histogram({ topK: 2 });
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([3, 4]);
    // softmax over {3, 2.5}: p(3) = 1 / (1 + e^-0.5) = 0.6225
    expect(h[3]! / 4000).toBeGreaterThan(0.58);
    expect(h[3]! / 4000).toBeLessThan(0.66);
  });
  test("top-p keeps the smallest set reaching p", () => {
    // probabilities (T=1) sorted: 3 -> .367, 4 -> .222, 2 -> .135, 7 -> .082 ... ; cumulative .367, .589, .724
    const h = histogram({ topP: 0.7 });
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([2, 3, 4]);
  });
  test("min-p drops tokens below minP times the top probability", () => {
    // p(i)/p(3) = e^(l_i - 3): keep l_i >= 3 + ln(0.3) = 1.796 -> tokens 2, 3, 4
    const h = histogram({ minP: 0.3 });
    expect(h.map((c, i) => (c > 0 ? i : -1)).filter((i) => i >= 0)).toEqual([2, 3, 4]);
  });
  test("repetition penalty divides positive and multiplies negative logits of recent tokens", () => {
    const s = createSampler(8, { ...base, temperature: 0, repetitionPenalty: 2 });
    const l = logits();
    expect(s.sample(l, [3, 5])).toBe(4); // 3 -> 1.5, now 2.5 wins
    expect(l[3]).toBe(1.5);
    expect(l[5]).toBe(-2);
  });
  test("NaN and -Infinity logits are never chosen; all-invalid logits raise", () => {
    const s = createSampler(4, { ...base, temperature: 1, seed: 3 });
    for (let i = 0; i < 200; i++) expect(s.sample(new Float32Array([NaN, -Infinity, 0, NaN]), [])).toBe(2);
    expect(() => s.sample(new Float32Array([NaN, -Infinity, NaN, NaN]), [])).toThrow(/no token can be chosen/);
  });
});
