/**
 * The TypeScript trainer (src/train/llama.ts): its forward pass is the reference backend's, its
 * gradient is the loss's (central differences, in float64), the loss weights mask what they say,
 * and what it saves is what llama.cpp then runs.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { LlamaPass, LlamaWeights, trainLlama } from "../../src/train/llama.ts";
import { DEFAULT_MODEL_PATH, referenceLlama } from "../../src/testing/index.ts";
import { writeRandomGguf } from "../../src/testing/random-gguf.ts";

/** "Once upon a time, there was a little girl named Lily." and a few more, as stories260K tokenizes it. */
async function storyTokens(n: number): Promise<Int32Array> {
  const m = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
  const text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her dog. One day, she saw a big red ball. ".repeat(20);
  const ids = m.tokenize(text, { addBos: true }).slice(0, n);
  m.dispose();
  return Int32Array.from(ids);
}

function probabilities(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  const out = Float64Array.from(logits, (x) => Math.exp(x - max));
  const sum = out.reduce((a, b) => a + b, 0);
  return out.map((x) => x / sum);
}

describe("LlamaPass", () => {
  test("forward: next-token probabilities equal the reference backend's at every position", async () => {
    const tokens = await storyTokens(17);
    const pass = new LlamaPass(LlamaWeights.open(DEFAULT_MODEL_PATH), 16);
    pass.forward(tokens);
    const ours = pass.probabilities();
    const ref = await referenceLlama.load(DEFAULT_MODEL_PATH);
    const seq = ref.createSequence();
    let worst = 0;
    for (let t = 0; t < 16; t++) {
      const p = probabilities(await seq.prefill(tokens.subarray(t, t + 1)));
      for (let j = 0; j < p.length; j++) worst = Math.max(worst, Math.abs(p[j]! - ours[t * p.length + j]!));
    }
    seq.free();
    ref.dispose();
    expect(worst).toBeLessThan(1e-5); // float32 storage in the reference backend; measured 1.7e-7
  });

  test("backward: every tensor's gradient matches central differences, with loss weights", async () => {
    const T = 10;
    const tokens = await storyTokens(T + 1);
    const w = LlamaWeights.open(DEFAULT_MODEL_PATH);
    const pass = new LlamaPass(w, T);
    const weights = Float32Array.from({ length: T }, (_, i) => (i % 3 === 0 ? 0 : 1 + i / 10));
    const grads = w.zerosLike();
    pass.forward(tokens, weights);
    pass.backward(grads, 1);
    let seed = 7;
    const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (const [name, p] of w.tensors) {
      const g = grads.get(name)!;
      // Rows that the window touches for the embedding; any element elsewhere.
      const idx = name === "token_embd.weight" ? tokens[1 + Math.floor(next() * (T - 1))]! * w.hparams.nEmbd + Math.floor(next() * w.hparams.nEmbd) : Math.floor(next() * p.length);
      const old = p[idx]!;
      const e = 1e-5;
      p[idx] = old + e;
      const plus = pass.forward(tokens, weights);
      p[idx] = old - e;
      const minus = pass.forward(tokens, weights);
      p[idx] = old;
      const numeric = (plus - minus) / (2 * e);
      expect(Math.abs(numeric - g[idx]!)).toBeLessThan(1e-6 + 1e-4 * Math.abs(numeric));
    }
  });

  test("a zero weight masks its position: changing that label changes no gradient", async () => {
    const T = 12;
    const a = await storyTokens(T + 1);
    const b = a.slice();
    b[T] = (b[T]! + 5) % 512; // the label of the last position only
    const weights = new Float32Array(T).fill(1);
    weights[T - 1] = 0;
    const gradients = (tokens: Int32Array, lw?: Float32Array) => {
      const w = LlamaWeights.open(DEFAULT_MODEL_PATH);
      const pass = new LlamaPass(w, T);
      const g = w.zerosLike();
      pass.forward(tokens, lw);
      pass.backward(g, 1);
      return g.get("blk.0.attn_k.weight")!;
    };
    expect(gradients(b, weights)).toEqual(gradients(a, weights));
    expect(gradients(b)).not.toEqual(gradients(a));
  });
});

describe("trainLlama", () => {
  test("lowers the loss, trains keys, values and embeddings, is deterministic, and llama.cpp runs what it saved", async () => {
    const T = 32;
    const stream = await storyTokens(4 * T + 1);
    const windows = [0, 1, 2, 3].map((i) => stream.slice(i * T, i * T + T + 1));
    const options = { window: T, epochs: 4, batch: 2, learningRate: 3e-3, seed: 5, clipNorm: 1 };
    const a = trainLlama(DEFAULT_MODEL_PATH, windows, windows.slice(0, 1), options);
    const b = trainLlama(DEFAULT_MODEL_PATH, windows, windows.slice(0, 1), options);
    expect(a.result.steps).toBe(8);
    expect(a.result.trainLoss.at(-1)!).toBeLessThan(a.result.trainLoss[0]! * 0.8);
    expect(b.result.trainLoss).toEqual(a.result.trainLoss);
    const base = LlamaWeights.open(DEFAULT_MODEL_PATH);
    for (const name of ["token_embd.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight", "blk.4.ffn_down.weight"]) {
      expect(a.weights.tensors.get(name)).not.toEqual(base.tensors.get(name));
    }
    const dir = mkdtempSync(join(tmpdir(), "steerkit-train-"));
    try {
      const out = join(dir, "tuned.gguf");
      a.weights.save(out, { "general.name": { type: "string", value: "tuned" } });
      const tuned = await llamaCpp.load(out, { threads: 1 });
      expect(tuned.info.name).toBe("tuned");
      const seq = tuned.createSequence();
      const logits = await seq.prefill(windows[0]!.subarray(0, T));
      seq.free();
      tuned.dispose();
      const pass = new LlamaPass(LlamaWeights.open(out), T);
      pass.forward(windows[0]!);
      const ours = pass.probabilities().subarray((T - 1) * 512, T * 512);
      const theirs = probabilities(logits);
      let worst = 0;
      for (let j = 0; j < 512; j++) worst = Math.max(worst, Math.abs(ours[j]! - theirs[j]!));
      expect(worst).toBeLessThan(1e-4);
    } finally {
      rmSync(dir, { recursive: true });
    }
  }, 30_000);

  test("frozen tensors stay as they were", async () => {
    const T = 16;
    const stream = await storyTokens(T + 1);
    const { weights } = trainLlama(DEFAULT_MODEL_PATH, [stream], [], { window: T, epochs: 2, learningRate: 1e-3, seed: 1, frozen: ["token_embd.weight"] });
    expect(weights.tensors.get("token_embd.weight")).toEqual(LlamaWeights.open(DEFAULT_MODEL_PATH).tensors.get("token_embd.weight"));
  });

  test("bad input: clear errors", async () => {
    const T = 8;
    const ok = await storyTokens(T + 1);
    const o = { window: T, epochs: 1, learningRate: 1e-3, seed: 1 };
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [], [], o)).toThrow(/no training windows/);
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [ok.subarray(0, 4)], [], o)).toThrow(/windows\[0\] has 4 tokens, expected window \+ 1 = 9/);
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [ok], [], { ...o, lossWeights: [new Float32Array(3)] })).toThrow(/lossWeights\[0\] has 3 weights, expected window = 8/);
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [ok], [], { ...o, lossWeights: [new Float32Array(T).fill(Number.NaN)] })).toThrow(/lossWeights\[0\]\[0\] is NaN/);
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [ok], [], { ...o, frozen: ["nope.weight"] })).toThrow(/no trainable tensor nope.weight/);
    expect(() => trainLlama(DEFAULT_MODEL_PATH, [Int32Array.from({ length: T + 1 }, () => 9999)], [], o)).toThrow(/token 9999 at position 0 is outside the vocabulary/);
    const dir = mkdtempSync(join(tmpdir(), "steerkit-train-"));
    try {
      const gpt2 = join(dir, "gpt2.gguf");
      writeRandomGguf(gpt2, { arch: "gpt2", nEmbd: 16, nLayers: 1, nHead: 2 });
      expect(() => LlamaWeights.open(gpt2)).toThrow(/plain llama blocks only; this model has LayerNorm/);
      const f16 = join(dir, "f16.gguf");
      writeRandomGguf(f16, { arch: "llama", nEmbd: 16, nLayers: 1, nHead: 2, weightType: "f16" });
      expect(() => LlamaWeights.open(f16)).toThrow(/is not F32/);
    } finally {
      rmSync(dir, { recursive: true });
    }
  });
});
