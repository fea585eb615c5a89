/** Capability scoring on the reference backend: choices after their question, perplexity, the space at the seam. */
import { afterAll, beforeAll, expect, test } from "bun:test";
import type { Model } from "../../src/core/backend.ts";
import { score } from "../../src/core/score.ts";
import { joinChoice, scoreChoices, scoreText } from "../../src/eval/scoring.ts";
import { DEFAULT_MODEL_PATH, referenceLlama } from "../../src/testing/index.ts";

let model: Model;
beforeAll(async () => {
  model = await referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 128 });
});
afterAll(() => model.dispose());
const ctx = { plugins: [], chat: false };

test("joinChoice puts one space at the seam when neither side has one", () => {
  expect(joinChoice("a glass of", "water")).toBe(" water");
  expect(joinChoice("a glass of", " water")).toBe(" water");
  expect(joinChoice("a glass of ", "water")).toBe("water");
  expect(joinChoice("", "water")).toBe("water");
});

test("a choice written with or without its leading space scores the same", async () => {
  const a = await scoreChoices(model, { id: "x", question: "Lily and her mom went to the", choices: ["park", "because"], answer: 0, extra: {} }, ctx);
  const b = await scoreChoices(model, { id: "x", question: "Lily and her mom went to the", choices: [" park", " because"], answer: 0, extra: {} }, ctx);
  expect(a.logprobs).toEqual(b.logprobs);
  expect(a.predicted).toBe(0);
  const direct = await score(model, { prompt: "Lily and her mom went to the", continuation: " park" });
  expect(a.logprobs[0]).toBe(direct.logprob);
});

test("normalised predictions divide each choice's log-likelihood by its characters or tokens", async () => {
  // A long choice loses on raw log-likelihood (more tokens, more negative terms) but may win per token.
  const choices = ["cat", "girl named Lily. She loved to play outside."];
  const s = await scoreChoices(model, { id: "x", question: "Once upon a time, there was a little", choices, answer: 0, extra: {} }, ctx);
  expect(s.tokens[1]!).toBeGreaterThan(s.tokens[0]!);
  const best = (xs: number[]) => xs.indexOf(Math.max(...xs));
  expect(s.predicted).toBe(best(s.logprobs));
  expect(s.predictedPerToken).toBe(best(s.logprobs.map((l, i) => l / s.tokens[i]!)));
  expect(s.predictedPerChar).toBe(best(s.logprobs.map((l, i) => l / choices[i]!.length)));
  expect(s.predicted).toBe(0); // raw: the short choice
  expect(s.predictedPerToken).toBe(1); // per token and per character: the long, likely one
  expect(s.predictedPerChar).toBe(1);
});

test("perplexity scores every token after BOS", async () => {
  const text = "Once upon a time, there was a little girl.";
  const s = await scoreText(model, { id: "t", text, extra: {} }, ctx);
  expect(s.tokens).toBe(model.tokenize(text, { addBos: false }).length);
  const direct = await score(model, { tokens: [model.info.bosToken!], continuationTokens: model.tokenize(text, { addBos: false }) });
  expect(s.logprob).toBeCloseTo(direct.logprob, 10);
  expect(Math.exp(-s.logprob / s.tokens)).toBeLessThan(20); // the model's own kind of text
});
