import { afterAll, describe, expect, test } from "bun:test";
import { argmax } from "../../src/core/tensor.ts";
import { DEFAULT_MODEL_PATH, llamaCpp, type LlamaModel } from "../../src/adapters/llama-cpp/index.ts";

const ONCE = [1, 403, 407, 261, 378];

describe("llama.cpp model on stories260K", async () => {
  const model = (await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 256, threads: 1 })) as LlamaModel;
  afterAll(() => model.dispose());

  test("model info comes from the GGUF", () => {
    expect(model.info).toMatchObject({
      backend: "llama-cpp",
      architecture: "llama",
      nLayers: 5,
      dModel: 64,
      vocabSize: 512,
      contextLength: 256,
      bosToken: 1,
      chatTemplate: null,
    });
    expect(model.info.eosTokens).toContain(2);
  });

  test("tokenize / detokenize with the model's vocabulary", () => {
    expect(model.tokenize("Once upon a time")).toEqual(ONCE);
    expect(model.tokenize("Once upon a time", { addBos: false })).toEqual(ONCE.slice(1));
    expect(model.detokenize(ONCE)).toBe("Once upon a time");
    expect(model.tokenize("")).toEqual([1]);
    expect(() => model.detokenize([9999])).toThrow(/outside the vocabulary/);
  });

  test("a model without a chat template falls back to core's plain transcript", () => {
    expect(model.applyChatTemplate([{ role: "user", content: "Once upon a time" }])).toBe("User: Once upon a time\n\nAssistant:");
    expect(model.applyChatTemplate([{ role: "user", content: "Hi" }], { addGenerationPrompt: false })).toBe("User: Hi");
  });

  test("greedy continuation of 'Once upon a time' is the known story", async () => {
    const seq = model.createSequence();
    let logits = await seq.prefill(ONCE);
    const out = [...ONCE];
    for (let i = 0; i < 16; i++) {
      const next = argmax(logits);
      out.push(next);
      logits = await seq.decode(next);
    }
    expect(seq.length).toBe(ONCE.length + 16);
    expect(model.detokenize(out)).toStartWith("Once upon a time, there was a little girl named Lily.");
    seq.free();
  });

  test("prefill in several batches gives the logits of one batch; reset forgets the cache", async () => {
    const a = model.createSequence();
    const whole = Float32Array.from(await a.prefill(ONCE));
    a.reset();
    expect(a.length).toBe(0);
    await a.prefill(ONCE.slice(0, 2));
    await a.prefill(ONCE.slice(2, 4));
    const split = await a.decode(ONCE[4]!);
    for (let i = 0; i < whole.length; i++) expect(split[i]).toBeCloseTo(whole[i]!, 4);
    a.free();
  });

  test("sequences longer than the context give a clear error and leave the sequence usable", async () => {
    const seq = model.createSequence();
    await seq.prefill(ONCE);
    await expect(seq.prefill(new Array(300).fill(403))).rejects.toThrow(/5 cached \+ 300 new = 305 tokens exceed the context length 256/);
    expect(seq.length).toBe(5);
    await seq.decode(403);
    expect(seq.length).toBe(6);
    seq.free();
  });

  test("free is idempotent and a freed sequence refuses work", async () => {
    const before = model.liveSequences;
    const seq = model.createSequence();
    expect(model.liveSequences).toBe(before + 1);
    seq.free();
    seq.free();
    expect(model.liveSequences).toBe(before);
    await expect(seq.decode(1)).rejects.toThrow(/was freed/);
  });

  test("invalid load options are refused before any weights load", async () => {
    await expect(llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 0 })).rejects.toThrow("threads must be a positive integer, got 0");
    await expect(llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 1.5 })).rejects.toThrow(/contextLength must be a positive integer/);
  });

  test("dispose frees every sequence and refuses further work", async () => {
    const other = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
    const seq = other.createSequence();
    await seq.prefill(ONCE);
    other.dispose();
    other.dispose();
    await expect(seq.decode(403)).rejects.toThrow(/was freed/);
    expect(() => other.createSequence()).toThrow(/disposed/);
    expect(() => other.tokenize("x")).toThrow(/disposed/);
  });

  test("out-of-vocabulary tokens are refused before llama.cpp sees them", async () => {
    const seq = model.createSequence();
    await expect(seq.prefill([1, 512])).rejects.toThrow(/tokens\[1\] is 512, expected an integer token id in 0..511/);
    seq.free();
  });
});
