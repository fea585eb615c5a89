/**
 * Which exports batch (adapter README, "Concurrent sequences"): Optimum / transformers.js layouts
 * that honour attention_mask per row with position_ids do, and give what one sequence each gives;
 * the others are refused by name with the reason, and keep working one session.run per sequence.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import type { Model } from "../../src/core/backend.ts";
import { generate } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { addVector } from "../../src/plugins/index.ts";
import * as v from "valibot";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { writeRandomGguf, type RandomGgufArchitecture } from "../../src/testing/random-gguf.ts";
import { writeDecoderDir } from "./helpers/decoder-builder.ts";
import { maxAbsDiff, wave } from "./helpers/hooks.ts";
import { writeOptimumExport, type OptimumLayout } from "./helpers/optimum-export.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-onnx-batched-layouts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A JS hook (no affine form): the graph is cut there for the whole batch. */
const squash = definePlugin({
  name: "test-squash",
  options: v.object({}),
  needs: ["residual:write"],
  create: () => ({
    points: [{ site: "resid_mid", layer: 1 }],
    onResidual(x) {
      for (let i = 0; i < x.data.length; i++) x.data[i] = 2 * Math.tanh(x.data[i]! / 2);
    },
  }),
});

/** Five requests (three steered, one by a JS hook) alone, then together on the batched view: the same greedy tokens. */
async function sameTokens(model: Model, batched: Model): Promise<void> {
  const d = model.info.dModel;
  const requests = [
    { tokens: [1, 5, 17, 30], plugins: [addVector({ points: ["resid_post.1"], vector: Array.from(wave(d, 2)) })] },
    { tokens: [1, 9, 8], plugins: [] },
    { tokens: [1, 100, 200, 45, 46, 47], plugins: [addVector({ points: ["resid_mid.0"], vector: Array.from(wave(d, 3, 1)), positions: "generated" })] },
    { tokens: [1, 61], plugins: [] },
    { tokens: [1, 7, 7], plugins: [squash({})] },
  ].map((r, i) => ({ ...r, maxTokens: 12 + 3 * i, temperature: 0, ignoreEos: true }));
  const alone = [];
  for (const r of requests) alone.push((await generate(model, r)).tokens);
  const together = await Promise.all(requests.map((r) => generate(batched, r).then((g) => g.tokens)));
  expect(together).toEqual(alone);
}

/** The export at `path` is not refused, and its batched view gives what one sequence each gives. */
async function batchesAsAlone(path: string): Promise<void> {
  const model = await onnx.load(path, { threads: 1 });
  try {
    expect(model.batchRefusal).toBeNull();
    const batched = model.batched!({ sequences: 5, promptChunk: 12 });
    await sameTokens(model, batched);
    // A prompt in chunks (past and padding before each), beside a decoding sequence: the logits of one run.
    const long = Array.from({ length: 40 }, (_, i) => 5 + ((i * 7) % 200));
    const alone = model.createSequence();
    const expected = Float32Array.from(await alone.prefill(long));
    alone.free();
    const other = batched.createSequence();
    await other.prefill([1, 2, 3]);
    const seq = batched.createSequence();
    const [got] = await Promise.all([seq.prefill(long), other.decode(4).then(() => other.decode(5))]);
    expect(maxAbsDiff(got!, expected)).toBeLessThan(1e-4);
    batched.dispose();
  } finally {
    model.dispose();
  }
}

describe("exports that batch", () => {
  for (const [arch, layout] of [["llama", "transformers.js"], ["gpt2", "optimum-merged"], ["qwen3", "optimum-merged"]] as [RandomGgufArchitecture, OptimumLayout][]) {
    test(`${arch} laid out as ${layout}`, async () => {
      const gguf = join(dir, `${arch}.gguf`);
      writeRandomGguf(gguf, { arch });
      await batchesAsAlone(writeOptimumExport(gguf, join(dir, `${arch}-${layout}`), layout));
    });
  }
});

test("steerkit convert, float16 (KV cache, residual and logits in half precision)", async () => {
  const out = join(dir, "stories-fp16");
  await convertGgufToOnnx(DEFAULT_MODEL_PATH, out, { dtype: "float16" });
  await batchesAsAlone(out);
});

describe("onnxruntime-genai layout (GroupQueryAttention: each row's past length from the mask's sum)", () => {
  for (const genaiRotary of ["attention", "separate"] as const) {
    test(`rotary ${genaiRotary === "attention" ? "inside GroupQueryAttention (positions from seqlens_k)" : "in RotaryEmbedding nodes (position_ids)"}`, async () => {
      // A random llama with head_dim 16 (ORT's GroupQueryAttention wants a multiple of 16; stories260K's is 8).
      const gguf = join(dir, "llama-genai.gguf");
      writeRandomGguf(gguf, { arch: "llama" });
      const out = join(dir, `genai-${genaiRotary}`);
      await convertGgufToOnnx(gguf, out, { layout: "genai", genaiRotary });
      await batchesAsAlone(out);
    });
  }
});

describe("exports refused by name, still served one sequence at a time", () => {
  const cases: [string, () => Promise<string>, string][] = [
    ["legacy past_N KV layout", async () => join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32"), "legacy past_N"],
    ["sliding-window attention (gemma2)", async () => {
      const gguf = join(dir, "gemma2.gguf");
      writeRandomGguf(gguf, { arch: "gemma2" });
      return writeOptimumExport(gguf, join(dir, "gemma2"), "transformers.js");
    }, "sliding-window"],
    ["a graph that reads attention_mask for its shape only (probe run)", async () => writeDecoderDir(join(dir, "shape-only-mask"), { dModel: 32, nLayers: 2, nHeads: 4, vocab: 64 }), "does not hide masked past rows"],
  ];
  for (const [name, make, reason] of cases) {
    test(name, async () => {
      const model = await onnx.load(await make(), { threads: 1 });
      try {
        expect(model.batchRefusal).toContain(reason);
        expect(model.batched).toBeUndefined();
        // Concurrent sequences still work: one session.run each.
        const got = await Promise.all([generate(model, { tokens: [1, 2, 3], maxTokens: 4, temperature: 0, ignoreEos: true }), generate(model, { tokens: [1, 4], maxTokens: 4, temperature: 0, ignoreEos: true })]);
        expect(got.map((g) => g.tokens.length)).toEqual([4, 4]);
      } finally {
        model.dispose();
      }
    });
  }
});
