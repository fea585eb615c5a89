/**
 * The ONNX adapter on onnxruntime-genai's CPU layout (`steerkit convert --layout genai`, written as
 * the builder writes it: GroupQueryAttention with rotary inside, packed q/k/v, SimplifiedLayerNorm
 * then SkipSimplifiedLayerNorm with the residual stream in output 3, MatMulNBits for int4, the
 * builder's node and initializer names; src/convert/genai-llama-graph.ts), checked against llama.cpp
 * on the GGUF it came from and against Steerkit's own (Optimum-layout) export of the same GGUF.
 * GroupQueryAttention on CPU needs head_size % 16 == 0, so the model is a random llama of width 256
 * with 4 heads of 64 and 2 KV heads (grouped), written by bench/make-random-gguf.ts.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaCpp, quantizeGguf } from "../../src/adapters/llama-cpp/index.ts";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx, type ConvertReport } from "../../src/convert/gguf-to-onnx.ts";
import type { Model } from "../../src/core/backend.ts";
import { allPoints, pointName } from "../../src/core/sites.ts";
import { decodeModel } from "../../src/formats/onnx/index.ts";
import { greedy, maxLogitsDiff, type Run } from "../parity/parity-helpers.ts";
import { asArchitecture, type TensorEntry } from "../convert/gguf-edit.ts";
import { writeRandomLlamaGguf } from "../helpers/random-gguf.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-genai-"));
const gguf = join(dir, "random-d256.gguf");
const STEPS = 24;
const LAYERS = 3;
/**
 * Max |logit difference| over every step. llama.cpp (F16 KV cache) vs ONNX (F32): measured 0.011-0.013
 * on the generator's d256 llama, whose logits span ±9 (F16's relative rounding, scaled by them).
 */
const LLAMA_TOLERANCE = 0.03;
/** Two float32 ONNX graphs of the same weights (fused vs plain attention, either rotary placement): measured 1.3e-6. */
const ONNX_TOLERANCE = 1e-4;

const models: Record<string, Model> = {};
const reports: Record<string, ConvertReport> = {};
beforeAll(async () => {
  writeRandomLlamaGguf(gguf, { d: 256, layers: LAYERS, ff: 512, heads: 4, kvHeads: 2, vocab: 512, ctx: 256 });
  reports.genai = await convertGgufToOnnx(gguf, join(dir, "genai"), { layout: "genai" });
  await convertGgufToOnnx(gguf, join(dir, "genai-rotary-nodes"), { layout: "genai", genaiRotary: "separate" });
  reports.optimum = await convertGgufToOnnx(gguf, join(dir, "optimum"));
  models.llama = await llamaCpp.load(gguf, { contextLength: 128, threads: 1 });
  for (const name of ["genai", "genai-rotary-nodes", "optimum"]) models[name] = await onnx.load(join(dir, name), { contextLength: 128, threads: 1 });
});
afterAll(() => {
  for (const m of Object.values(models)) m.dispose();
  rmSync(dir, { recursive: true, force: true });
});

describe("onnxruntime-genai layout", () => {
  test("the graph is the builder's: fused ops, names, inputs, genai_config.json", () => {
    const g = decodeModel(readFileSync(join(dir, "genai", "model.onnx"))).graph!;
    const count = (op: string) => g.nodes.filter((n) => n.opType === op).length;
    expect(count("GroupQueryAttention")).toBe(LAYERS);
    expect(count("SkipSimplifiedLayerNormalization")).toBe(2 * LAYERS); // input (L > 0), post-attention, final
    expect(count("SimplifiedLayerNormalization")).toBe(1);
    expect(g.inputs.map((v) => v.name)).toEqual(["input_ids", "attention_mask", ...Array.from({ length: LAYERS }, (_, l) => [`past_key_values.${l}.key`, `past_key_values.${l}.value`]).flat()]);
    const gqa = g.nodes.find((n) => n.name === "/model/layers.1/attn/GroupQueryAttention")!;
    expect(gqa.inputs).toEqual(["/model/layers.1/attn/qkv_proj/MatMul/output_0", "", "", "past_key_values.1.key", "past_key_values.1.value",
      "/model/attn_mask_reformat/attn_mask_subgraph/Sub/Cast/output_0", "/model/attn_mask_reformat/attn_mask_subgraph/Gather/Cast/output_0", "cos_cache", "sin_cache"]);
    expect(gqa.outputs).toEqual(["/model/layers.1/attn/GroupQueryAttention/output_0", "present.1.key", "present.1.value"]);
    const skip = g.nodes.find((n) => n.name === "/model/layers.1/post_attention_layernorm/SkipLayerNorm")!;
    expect(skip.outputs).toEqual(["/model/layers.1/post_attention_layernorm/output_0", "", "", "/model/layers.1/post_attention_layernorm/output_3"]);
    const config = JSON.parse(readFileSync(join(dir, "genai", "genai_config.json"), "utf8"));
    expect(config.model.decoder).toMatchObject({ head_size: 64, num_attention_heads: 4, num_key_value_heads: 2, num_hidden_layers: LAYERS, filename: "model.onnx" });
    expect(config.model.decoder.inputs.past_key_names).toBe("past_key_values.%d.key");
    expect(config.search.past_present_share_buffer).toBe(true);
    // The report counts every GGUF tensor once, packed q/k/v included.
    expect(reports.genai!.parameterCount).toBe(reports.optimum!.parameterCount);
    expect(reports.genai!.sourceTypes).toEqual(reports.optimum!.sourceTypes);
    expect(reports.genai!.layout).toBe("genai");
  });

  test("every residual point is found, in the Skip norms' output 3", () => {
    const m = models.genai as OnnxRuntimeModel;
    expect([...m.sites.keys()].sort()).toEqual(allPoints(LAYERS).map(pointName).sort());
    expect(m.sites.get("resid_pre.0")).toBe("/model/embed_tokens/Gather/output_0");
    expect(m.sites.get("resid_mid.1")).toBe("/model/layers.1/post_attention_layernorm/output_3");
    expect(m.sites.get("resid_post.0")).toBe("/model/layers.1/input_layernorm/output_3");
  });

  const runs: Record<string, Run> = {};
  for (const steering of [null, { scale: 2, fastPath: false }, { scale: 2, fastPath: true }]) {
    const what = steering ? `steered (${steering.fastPath ? "in-graph affine edits" : "JS hooks, split sessions"})` : "unsteered";
    test(`${what}: the genai export = the Optimum export (${ONNX_TOLERANCE}) = llama.cpp (greedy tokens, ${LLAMA_TOLERANCE})`, async () => {
      const llama = await greedy(models.llama!, steering, STEPS);
      for (const name of ["genai", "genai-rotary-nodes", "optimum"]) runs[`${name}:${what}`] = await greedy(models[name]!, steering, STEPS);
      const genai = runs[`genai:${what}`]!;
      expect(genai.tokens).toEqual(llama.tokens);
      expect(maxLogitsDiff(genai, llama)).toBeLessThan(LLAMA_TOLERANCE);
      expect(maxLogitsDiff(genai, runs[`optimum:${what}`]!)).toBeLessThan(ONNX_TOLERANCE);
      expect(maxLogitsDiff(runs[`genai-rotary-nodes:${what}`]!, runs[`optimum:${what}`]!)).toBeLessThan(ONNX_TOLERANCE);
      if (steering) expect(maxLogitsDiff(genai, runs["genai:unsteered"]!)).toBeGreaterThan(0.05); // the edit acts
    });
  }

  test("qwen2 (rotate-halves rotary: no row permutation; q/k/v biases in the packed Add) = the Optimum export = llama.cpp", async () => {
    const bias = (name: string, n: number, seed: number): TensorEntry => ({
      name,
      type: 0,
      dims: [n],
      data: new Uint8Array(Float32Array.from({ length: n }, (_, i) => Math.sin(seed + i * 0.7) * 0.5).buffer),
    });
    const qwen = join(dir, "random-d256-qwen2.gguf");
    const append = Array.from({ length: LAYERS }, (_, l) => [bias(`blk.${l}.attn_q.bias`, 256, l), bias(`blk.${l}.attn_k.bias`, 128, 10 + l), bias(`blk.${l}.attn_v.bias`, 128, 20 + l)]).flat();
    writeFileSync(qwen, asArchitecture(readFileSync(gguf), "qwen2", { append }));
    await convertGgufToOnnx(qwen, join(dir, "qwen2-genai"), { layout: "genai" });
    await convertGgufToOnnx(qwen, join(dir, "qwen2-optimum"));
    const g = decodeModel(readFileSync(join(dir, "qwen2-genai", "model.onnx"))).graph!;
    expect(g.nodes.map((n) => n.name)).toContain("/model/layers.0/attn/qkv_proj/Add");
    const a = await llamaCpp.load(qwen, { contextLength: 128, threads: 1 });
    const b = await onnx.load(join(dir, "qwen2-genai"), { contextLength: 128, threads: 1 });
    const c = await onnx.load(join(dir, "qwen2-optimum"), { contextLength: 128, threads: 1 });
    try {
      const [x, y, z] = [await greedy(a, null, STEPS), await greedy(b, null, STEPS), await greedy(c, null, STEPS)];
      expect(y.tokens).toEqual(x.tokens);
      expect(maxLogitsDiff(y, x)).toBeLessThan(LLAMA_TOLERANCE);
      expect(maxLogitsDiff(y, z)).toBeLessThan(ONNX_TOLERANCE);
    } finally {
      a.dispose();
      b.dispose();
      c.dispose();
    }
    // What the builder's layout has no place for is refused by name.
    const qwen3 = join(dir, "random-d256-qwen3.gguf");
    const norms = Array.from({ length: LAYERS }, (_, l) => [bias(`blk.${l}.attn_q_norm.weight`, 64, l), bias(`blk.${l}.attn_k_norm.weight`, 64, l)]).flat();
    writeFileSync(qwen3, asArchitecture(readFileSync(gguf), "qwen3", { append: norms }));
    const e = await convertGgufToOnnx(qwen3, join(dir, "qwen3-genai"), { layout: "genai" }).catch((x: unknown) => x);
    expect((e as Error).message).toContain("the onnxruntime-genai layout does not cover qwen3's q/k norms");
  });

  test("int4 (MatMulNBits, from llama.cpp's pure Q4_0 of the same model) = llama.cpp on that Q4_0 GGUF", async () => {
    const q4 = join(dir, "random-d256-q4_0.gguf");
    quantizeGguf(gguf, q4, { type: "q4_0", pure: true, threads: 2 });
    const report = await convertGgufToOnnx(q4, join(dir, "genai-int4"), { layout: "genai", weights: "int4" });
    const a = await llamaCpp.load(q4, { contextLength: 128, threads: 1 });
    const b = await onnx.load(join(dir, "genai-int4"), { contextLength: 128, threads: 1 });
    try {
      const g = decodeModel(readFileSync(join(dir, "genai-int4", "model.onnx"))).graph!;
      expect(g.nodes.filter((n) => n.opType === "MatMulNBits").map((n) => n.name)).toContain("/model/layers.0/attn/qkv_proj/MatMul_Q4");
      expect(g.initializers.map((t) => t.name)).toContain("model.layers.0.attn.qkv_proj.MatMul.weight_Q4");
      // q, k, v (packed), o, gate, up, down per layer and the head: all repacked from Q4_0.
      expect(report.blockQuantized).toEqual({ bits: 4, blockSize: 32, repacked: 7 * LAYERS + 1, rounded: 0 });
      for (const steering of [null, { scale: 2, fastPath: true }]) {
        // Both round activations to int8 per block, each its own way (see test/parity/quantized.test.ts): on
        // the generator's d256 llama (logits within ±9) that moves logits by 0.14-0.26 per step, and
        // unsteered greedy decoding parts at step 19 on a near-tie; 16 steps stay clear of it.
        const x = await greedy(a, steering, 16);
        const y = await greedy(b, steering, 16);
        expect(y.tokens).toEqual(x.tokens);
        const scale = Math.max(...x.logits[0]!.map(Math.abs));
        expect(maxLogitsDiff(x, y) / scale).toBeLessThan(0.05);
      }
    } finally {
      a.dispose();
      b.dispose();
    }
  });
});
