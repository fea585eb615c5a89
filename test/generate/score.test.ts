/**
 * `score`: the log-probability of a continuation with a chain attached, on the reference backend,
 * llama.cpp and ONNX Runtime (stories260K converted). The oracle is `generate` itself: a greedy
 * generation records the log-probability of each token it picks (a logits tap placed last in the
 * chain), and scoring those tokens after the same prompt, under the same chain, must give the same
 * numbers — steered or not, with a position-limited edit that only touches generated rows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import type { Model } from "../../src/core/backend.ts";
import type { ChainPlugin } from "../../src/core/chain.ts";
import { generate } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { score, scoreTokens } from "../../src/core/score.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { addVector } from "../../src/plugins/steering.ts";
import { DEFAULT_MODEL_PATH, referenceLlama } from "../../src/testing/index.ts";

const PROMPT = "Once upon a time";
const STEPS = 12;

/** Records log softmax of each sampled token (runs after every other plugin: `enforce: "post"`). */
const tap = definePlugin({
  name: "test-logprob-tap",
  options: v.object({ out: v.custom<number[][]>(Array.isArray) }),
  needs: ["logits:read"],
  enforce: "post",
  create: (o) => ({
    onLogits(l) {
      let max = -Infinity;
      for (const x of l) if (x > max) max = x;
      let z = 0;
      for (const x of l) z += Math.exp(x - max);
      o.out.push(Array.from(l, (x) => x - max - Math.log(z)));
    },
  }),
});

function unit(seed: number, n: number): number[] {
  let s = seed;
  const out = Array.from({ length: n }, () => ((s = (s * 1103515245 + 12345) >>> 0), s / 2 ** 32 - 0.5));
  const norm = Math.hypot(...out);
  return out.map((x) => x / norm);
}

/** Only generated rows are edited: the scored continuation must see the same edit as generation did. */
const steer = (m: Model): ChainPlugin[] => [addVector({ points: ["resid_post.2"], vector: unit(3, m.info.dModel), scale: 6, positions: "generated" })];

async function greedyWithLogprobs(model: Model, plugins: ChainPlugin[]) {
  const rows: number[][] = [];
  const r = await generate(model, { prompt: PROMPT, maxTokens: STEPS, temperature: 0, ignoreEos: true, plugins: [...plugins, tap({ out: rows })] });
  return { tokens: r.tokens, promptTokens: r.promptTokens, logprobs: r.tokens.map((t, i) => rows[i]![t]!) };
}

const dir = mkdtempSync(join(tmpdir(), "steerkit-score-"));
const models: Record<string, Model> = {};
/** Agreement with generate on one backend: the same forward passes, so float noise only. */
const SAME_BACKEND = 1e-4;
/** Across backends: llama.cpp's F16 KV cache (parity test: logits within 0.05). */
const ACROSS = 0.05;

beforeAll(async () => {
  await convertGgufToOnnx(DEFAULT_MODEL_PATH, dir);
  models.reference = await referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 128 });
  models["llama-cpp"] = await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 128, threads: 1 });
  models.onnx = await onnx.load(dir, { contextLength: 128, threads: 1 });
}, 60_000);
afterAll(() => {
  for (const m of Object.values(models)) m.dispose();
  rmSync(dir, { recursive: true, force: true });
});

for (const backend of ["reference", "llama-cpp", "onnx"]) {
  describe(`score on ${backend}`, () => {
    for (const steered of [false, true]) {
      test(`equals generate's log-probabilities of its own greedy tokens${steered ? " (steered, generated rows only)" : ""}`, async () => {
        const model = models[backend]!;
        const plugins = steered ? steer(model) : [];
        const g = await greedyWithLogprobs(model, plugins);
        const s = await score(model, { tokens: g.promptTokens, continuationTokens: g.tokens, plugins });
        expect(s.tokens).toEqual(g.tokens);
        expect(s.greedy).toBe(true);
        for (let i = 0; i < STEPS; i++) expect(Math.abs(s.logprobs[i]! - g.logprobs[i]!)).toBeLessThan(SAME_BACKEND);
        expect(Math.abs(s.logprob - g.logprobs.reduce((a, b) => a + b, 0))).toBeLessThan(SAME_BACKEND * STEPS);
      });
    }

    test("the JS path and the native affine path score alike", async () => {
      const model = models[backend]!;
      const g = await greedyWithLogprobs(model, []);
      const fast = await score(model, { tokens: g.promptTokens, continuationTokens: g.tokens, plugins: steer(model) });
      const js = await score(model, { tokens: g.promptTokens, continuationTokens: g.tokens, plugins: steer(model), fastPath: false });
      for (let i = 0; i < STEPS; i++) expect(Math.abs(fast.logprobs[i]! - js.logprobs[i]!)).toBeLessThan(1e-3);
    });
  });
}

test("backends agree, and steering moves the score by far more than they differ", async () => {
  const ref = models.reference!;
  const g = await greedyWithLogprobs(ref, []);
  const plain: Record<string, number[]> = {};
  const steered: Record<string, number[]> = {};
  for (const [name, m] of Object.entries(models)) {
    plain[name] = (await score(m, { tokens: g.promptTokens, continuationTokens: g.tokens })).logprobs;
    steered[name] = (await score(m, { tokens: g.promptTokens, continuationTokens: g.tokens, plugins: steer(m) })).logprobs;
  }
  let effect = 0;
  for (const name of ["llama-cpp", "onnx"]) {
    for (let i = 0; i < STEPS; i++) {
      expect(Math.abs(plain[name]![i]! - plain.reference![i]!)).toBeLessThan(ACROSS);
      expect(Math.abs(steered[name]![i]! - steered.reference![i]!)).toBeLessThan(ACROSS);
    }
  }
  for (let i = 1; i < STEPS; i++) effect = Math.max(effect, Math.abs(steered.reference![i]! - plain.reference![i]!));
  expect(effect).toBeGreaterThan(20 * ACROSS);
  // The first continuation token is predicted from the prompt's last row, which "generated" leaves alone.
  expect(Math.abs(steered.reference![0]! - plain.reference![0]!)).toBeLessThan(1e-6);
});

describe("tokens at the boundary", () => {
  test("a text continuation is scored as the tokens it has inside the whole text", () => {
    const m = models.reference!;
    const { prompt, tokens } = scoreTokens(m, { prompt: "Once upon", continuation: " a time" });
    expect([...prompt, ...tokens]).toEqual(m.tokenize("Once upon a time", { addBos: true }));
    expect(prompt).toEqual(m.tokenize("Once upon", { addBos: true }));
  });

  test("an empty prompt scores every token after BOS (perplexity)", () => {
    const m = models.reference!;
    const { prompt, tokens } = scoreTokens(m, { prompt: "", continuation: "Once upon a time" });
    expect(prompt).toEqual([m.info.bosToken!]);
    expect(tokens).toEqual(m.tokenize("Once upon a time", { addBos: false }));
  });

  test("chat messages: the prompt is generate's, the continuation follows the template's text", async () => {
    const m = models.reference!;
    const messages = [{ role: "user", content: "Tell me a story" }];
    const { prompt, tokens } = scoreTokens(m, { messages, continuation: "Once upon a time" });
    const rendered = m.applyChatTemplate(messages, { addGenerationPrompt: true });
    expect([...prompt, ...tokens]).toEqual(m.tokenize(rendered + "Once upon a time", { addBos: true, special: true }));
    const g = await generate(m, { messages, maxTokens: 1, temperature: 0 });
    expect(prompt).toEqual(g.promptTokens);
  });
});

describe("bad input", () => {
  test("names what is wrong", async () => {
    const m = models.reference!;
    await expect(score(m, { prompt: "a" } as never)).rejects.toThrow("exactly one of continuation or continuationTokens");
    await expect(score(m, { prompt: "a", tokens: [1], continuation: "b" })).rejects.toThrow("exactly one of prompt, messages or tokens (got 2)");
    await expect(score(m, { prompt: "a", continuation: "" })).rejects.toThrow("the continuation has no tokens");
    await expect(score(m, { prompt: "a", continuationTokens: [1, 99999] })).rejects.toThrow("continuationTokens[1] = 99999");
    await expect(score(m, { prompt: "a", continuationTokens: new Array(200).fill(5) })).rejects.toThrow("the context holds 128");
    await expect(score(m, { tokens: [1], addBos: false, continuationTokens: [-1] })).rejects.toThrow("continuationTokens");
  });
});
