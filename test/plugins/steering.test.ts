import { describe, expect, test } from "bun:test";
import { dot, normalize } from "../../src/core/tensor.ts";
import { ablateDirection, addVector } from "../../src/plugins/index.ts";
import { checkAffine, runPlugin } from "../../src/testing/index.ts";

const d = 64;
const r = Array.from({ length: d }, (_, i) => Math.sin(i + 1));
const unit = normalize(r);

describe("add-vector", () => {
  test("adds exactly scale * vector at its points and nowhere else", async () => {
    const run = await runPlugin(addVector({ points: ["resid_mid.1"], vector: r, scale: 0.5 }), { maxTokens: 3 });
    expect(new Set(run.changed.map((t) => t.point))).toEqual(new Set(["resid_mid.1"]));
    for (const t of run.changed) for (let i = 0; i < t.before.length; i++) expect(t.after[i]! - t.before[i]!).toBeCloseTo(0.5 * r[i % d]!, 5);
  });
  test("positions { from } leaves earlier rows alone", async () => {
    const run = await runPlugin(addVector({ points: ["resid_post.0"], vector: r, positions: { from: 5 } }), { maxTokens: 3 });
    const prefill = run.residuals.find((t) => t.step === 0 && t.point === "resid_post.0")!;
    expect(prefill.after).toEqual(prefill.before);
    expect(run.changed.length).toBe(2);
    expect(run.changed.every((t) => t.positions.every((p) => p >= 5))).toBe(true);
  });
  test('positions "prompt" and "generated" split the rows at the prompt length', async () => {
    // "Once upon a time" is 5 tokens with BOS: prompt rows are 0..4, generated rows 5 and on.
    const prompt = await runPlugin(addVector({ points: ["resid_mid.1"], vector: r, positions: "prompt" }), { maxTokens: 3 });
    expect(prompt.changed.map((t) => t.step)).toEqual([0]);
    const generated = await runPlugin(addVector({ points: ["resid_mid.1"], vector: r, positions: "generated" }), { maxTokens: 3 });
    expect(generated.changed.map((t) => t.positions)).toEqual([[5], [6]]);
    const mid = await runPlugin(addVector({ points: ["resid_mid.1"], vector: r, positions: { from: 2, to: 4 } }), { maxTokens: 2 });
    const t = mid.changed[0]!;
    for (let row = 0; row < 5; row++) {
      const moved = t.after.subarray(row * d, (row + 1) * d).some((x, i) => x !== t.before[row * d + i]);
      expect(moved).toBe(row >= 2 && row < 4);
    }
  });
  test("position-limited affine forms equal the JS hook", async () => {
    for (const positions of ["prompt", "generated", { from: 3 }, { from: 1, to: 4 }] as const) {
      const check = await checkAffine(addVector({ points: ["resid_post.2"], vector: r, scale: 3, positions }));
      expect(check.maxAbsDiff).toBeLessThan(1e-4);
      expect(check.fast.tokens).toEqual(check.js.tokens);
    }
  });
  test("a vector times a scale that overflows float32 is bad input naming scale", async () => {
    expect(runPlugin(addVector({ points: ["resid_post.0"], vector: r.map(() => 1e30), scale: 1e10 }))).rejects.toThrow(/scale: .*overflows float32/);
  });
  test("its affine form equals its JS hook", async () => {
    const check = await checkAffine(addVector({ points: ["resid_post.2", "resid_pre.0"], vector: r, scale: 3 }));
    expect(check.maxAbsDiff).toBeLessThan(1e-4);
    expect(check.fast.tokens).toEqual(check.js.tokens);
  });
});

describe("ablate-direction", () => {
  test("after it, every hooked residual row has no component along the direction", async () => {
    const run = await runPlugin(ablateDirection({ direction: r }), { maxTokens: 3 });
    expect(run.changed.length).toBeGreaterThan(0);
    for (const t of run.residuals) {
      for (let off = 0; off < t.after.length; off += d) expect(Math.abs(dot(t.after.subarray(off, off + d), unit))).toBeLessThan(1e-4);
    }
    const points = new Set(run.residuals.map((t) => t.point));
    expect(points.size).toBe(11); // embeddings + mid and post of 5 layers: every place the stream is written
  });
  test("its affine form equals its JS hook, also composed with an addition at the same point", async () => {
    const check = await checkAffine([addVector({ points: ["resid_post.1"], vector: r, scale: 2 }), ablateDirection({ direction: r.map((x, i) => x * (i % 3)) })]);
    expect(check.maxAbsDiff).toBeLessThan(1e-4);
    expect(check.fast.tokens).toEqual(check.js.tokens);
  });
  test("a direction of the wrong width is refused with its size", async () => {
    expect(runPlugin(ablateDirection({ direction: [1, 2] }))).rejects.toThrow("direction has 2 values; the model's residual has 64");
  });
});
