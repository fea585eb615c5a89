import { describe, expect, test } from "bun:test";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { DEFAULT_MODEL_PATH, loadTestModel, runPlugin } from "../../src/testing/index.ts";
import { logger } from "../../src/plugins/index.ts";
import { collectResiduals, generateCorpus } from "../../src/sae/collect.ts";

const texts = ["Once upon a time, there was a dog.", "Lily liked the rain", "Once upon a time"];

describe("collectResiduals", () => {
  test("one row per token without BOS, in text order; rows equal the residual steering plugins see", async () => {
    const model = await loadTestModel();
    const r = await collectResiduals(model, texts, "resid_post.2");
    const lengths = texts.map((t) => model.tokenize(t, { addBos: true }).length - 1);
    expect(r.rowsPerText).toEqual(lengths);
    expect(r.rows).toBe(lengths.reduce((a, b) => a + b, 0));
    expect(r.data.length).toBe(r.rows * 64);
    // Independent path: steerkit/testing's trace of the same prompt at the same point.
    const run = await runPlugin(logger({ points: ["resid_post.2"], onRecord: () => {} }), { prompt: texts[1]!, maxTokens: 1 });
    const trace = run.residuals.find((t) => t.point === "resid_post.2" && t.phase === "prefill")!;
    const offset = lengths[0]! * 64;
    expect([...r.data.subarray(offset, offset + lengths[1]! * 64)]).toEqual([...trace.before.subarray(64)]);
    // Causality: "Once upon a time" is a prefix of text 0, so its rows are text 0's first rows.
    const third = r.data.subarray((lengths[0]! + lengths[1]!) * 64);
    expect([...third]).toEqual([...r.data.subarray(0, lengths[2]! * 64)]);
  });

  test("keepBos, maxTokensPerText and maxRows; deterministic", async () => {
    const model = await loadTestModel();
    const withBos = await collectResiduals(model, texts, "resid_post.2", { keepBos: true });
    const plain = await collectResiduals(model, texts, "resid_post.2");
    expect(withBos.rows).toBe(plain.rows + 3);
    expect([...withBos.data.subarray(64, 128)]).toEqual([...plain.data.subarray(0, 64)]);
    const cut = await collectResiduals(model, texts, "resid_post.2", { maxTokensPerText: 4 });
    expect(cut.rowsPerText).toEqual([3, 3, 3]);
    const capped = await collectResiduals(model, texts, "resid_post.2", { maxRows: 5 });
    expect(capped.rows).toBe(5);
    const again = await collectResiduals(model, texts, "resid_post.2");
    expect(Buffer.from(again.data.buffer).equals(Buffer.from(plain.data.buffer))).toBe(true);
    await expect(collectResiduals(model, texts, "resid_post.9")).rejects.toThrow(/layer 9 of resid_post is outside 0..4/);
  });

  test("llama.cpp gives the reference backend's rows (within float tolerance), and says why the last layer cannot be collected there", async () => {
    const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 128 });
    try {
      const cpp = await collectResiduals(model, texts, "resid_post.2");
      const ref = await collectResiduals(await loadTestModel(), texts, "resid_post.2");
      expect(cpp.rows).toBe(ref.rows);
      let maxDiff = 0;
      for (let i = 0; i < cpp.data.length; i++) maxDiff = Math.max(maxDiff, Math.abs(cpp.data[i]! - ref.data[i]!));
      // llama.cpp sums in another order (the conformance suite allows 0.05 on logits between these two backends).
      expect(maxDiff).toBeLessThan(1e-2);
      await expect(collectResiduals(model, texts, "resid_post.4")).rejects.toThrow(/computes only the last row at the last layer/);
    } finally {
      model.dispose();
    }
  });
});

describe("generateCorpus", () => {
  test("the model writes n texts from the prompts, the same for the same seed", async () => {
    const model = await loadTestModel();
    const a = await generateCorpus(model, { n: 3, seed: 4, maxTokens: 16, prompts: ["Once upon a time", "The dog"] });
    const b = await generateCorpus(model, { n: 3, seed: 4, maxTokens: 16, prompts: ["Once upon a time", "The dog"] });
    const c = await generateCorpus(model, { n: 3, seed: 5, maxTokens: 16, prompts: ["Once upon a time", "The dog"] });
    expect(a).toEqual(b);
    expect(c).not.toEqual(a);
    expect(a.map((t) => t.startsWith("Once upon a time") || t.startsWith("The dog"))).toEqual([true, true, true]);
    expect(a[1]!.startsWith("The dog")).toBe(true);
    expect(a.every((t, i) => t.length > ["Once upon a time", "The dog"][i % 2]!.length)).toBe(true);
  });
});
