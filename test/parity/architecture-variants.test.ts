/**
 * The architecture features the default random models exercise only weakly, turned up until they
 * decide the output: strong attention and final soft-caps (gemma2), a 3-token sliding window
 * (gemma2, gemma3) with gemma3's own rope base for sliding blocks, linear rope scaling on gemma3's
 * global blocks only, gemma3's optional final soft-cap, partial rotary and longrope (phi3: long and
 * short factors chosen by the context, as llama.cpp chooses them), and fp16 exports.
 * Each variant must change llama.cpp's greedy tokens (so the feature matters) and the reference
 * backend and the converted ONNX model must follow: same 32 greedy tokens, logits within a measured
 * tolerance.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Model } from "../../src/core/backend.ts";
import { argmax } from "../../src/core/tensor.ts";
import { convertGgufToOnnx, type ConvertOptions } from "../../src/convert/gguf-to-onnx.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { encodeRandomGguf, type RandomGgufOptions } from "../../src/testing/random-gguf.ts";
import { type MetaEdit, rewriteGguf, type TensorEntry } from "../convert/gguf-edit.ts";
import { maxAbsDiff } from "../onnx/helpers/hooks.ts";

const STEPS = 32;
const PROMPT = [1, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140];
const dir = mkdtempSync(join(tmpdir(), "steerkit-arch-variants-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Variant {
  readonly model: RandomGgufOptions;
  readonly metadata?: Record<string, MetaEdit>;
  readonly append?: TensorEntry[];
  readonly convert?: ConvertOptions;
  /** Max |logit difference| against llama.cpp (measured value in the comment). */
  readonly tolerance: number;
  /** Reference vs ONNX (fp32 exports: measured below 2e-5). */
  readonly onnxTolerance?: number;
  /**
   * How the feature shows against the default model: it changes the greedy tokens, or only the
   * logits (a final soft-cap is monotonic: same argmax), or nothing (an export option).
   */
  readonly shows: "tokens" | "logits" | "none";
}

const f32 = (value: number): MetaEdit => ({ type: "f32", value });
const u32 = (value: number): MetaEdit => ({ type: "u32", value });
const factors = (name: string, values: number[]): TensorEntry => ({ name, type: 0, dims: [values.length], data: new Uint8Array(new Float32Array(values).buffer) });
/** Phi-3 longrope as its converter writes it: both factor tensors, the attention factor and the original context. */
const longrope = (originalContext: number): Pick<Variant, "metadata" | "append"> => ({
  metadata: { "phi3.rope.scaling.attn_factor": f32(1.19), "phi3.rope.scaling.original_context_length": u32(originalContext) },
  append: [factors("rope_factors_long.weight", [1, 2, 4, 8, 16, 32, 48, 64]), factors("rope_factors_short.weight", [1, 1.1, 1.3, 1.6, 2, 2.5, 3, 4])],
});
const VARIANTS: Record<string, Variant> = {
  // Measured 0.0057: attention scores squashed into (-1, 1) before the softmax.
  "gemma2, attention soft-cap 1": { model: { arch: "gemma2" }, metadata: { "gemma2.attn_logit_softcapping": f32(1) }, tolerance: 0.015, shows: "tokens" },
  // Measured 0.0058: every logit squashed into (-3, 3).
  "gemma2, final soft-cap 3": { model: { arch: "gemma2" }, metadata: { "gemma2.final_logit_softcapping": f32(3) }, tolerance: 0.015, shows: "logits" },
  // Measured 0.0074: even blocks see 3 keys.
  "gemma2, sliding window 3": { model: { arch: "gemma2", slidingWindow: 3 }, tolerance: 0.015, shows: "tokens" },
  // Measured 0.0081: blocks 0-4 see 3 keys and rotate with base 100; block 5 is global.
  "gemma3, sliding window 3, local rope base 100": { model: { arch: "gemma3", slidingWindow: 3, ropeThetaSwa: 100 }, tolerance: 0.02, shows: "tokens" },
  // Measured 0.0088: the global block's rope is scaled, the sliding ones' is not.
  "gemma3, linear rope scaling x8 on global blocks": {
    model: { arch: "gemma3", slidingWindow: 3, ropeThetaSwa: 100 },
    metadata: { "gemma3.rope.scaling.type": { type: "string", value: "linear" }, "gemma3.rope.scaling.factor": f32(8) },
    tolerance: 0.02,
    shows: "tokens",
  },
  // Measured 0.0064: gemma3 has no final soft-cap unless the key is present.
  "gemma3, final soft-cap 2": { model: { arch: "gemma3" }, metadata: { "gemma3.final_logit_softcapping": f32(2) }, tolerance: 0.015, shows: "logits" },
  // Measured 0.024: 8 of each head's 16 lanes rotate (NEOX halves of the first 8), 8 pass through.
  "phi3, partial rotary 8 of 16": { model: { arch: "phi3" }, metadata: { "phi3.rope.dimension_count": u32(8) }, tolerance: 0.05, shows: "tokens" },
  // Measured 0.022: a 128-token context above the original 16 takes the long factors (and the 1.19 attention factor).
  "phi3, longrope (long factors)": { model: { arch: "phi3" }, ...longrope(16), convert: { maxPositionEmbeddings: 128 }, tolerance: 0.05, shows: "tokens" },
  // Measured 0.027: up to the original context the short factors.
  "phi3, longrope (short factors)": { model: { arch: "phi3" }, ...longrope(4096), convert: { maxPositionEmbeddings: 128 }, tolerance: 0.05, shows: "tokens" },
  // Measured 0.011 (ONNX vs reference 0.0075): weights, activations and KV cache in float16; LayerNorm in float32 inside the op.
  "gpt2, exported as float16": { model: { arch: "gpt2" }, convert: { dtype: "float16" }, tolerance: 0.03, onnxTolerance: 0.03, shows: "none" },
  // Measured 0.013 (ONNX vs reference 0.012).
  "gemma2, exported as float16": { model: { arch: "gemma2" }, convert: { dtype: "float16" }, tolerance: 0.03, onnxTolerance: 0.03, shows: "none" },
};

async function greedy(model: Model): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const seq = model.createSequence();
  try {
    let logits = (await seq.prefill(PROMPT)).slice();
    const out = { tokens: [] as number[], logits: [logits] };
    for (let i = 0; i < STEPS; i++) {
      out.tokens.push(argmax(logits));
      logits = (await seq.decode(out.tokens.at(-1)!)).slice();
      out.logits.push(logits);
    }
    return out;
  } finally {
    seq.free();
  }
}
const maxDiff = (a: Float32Array[], b: Float32Array[]) => a.reduce((m, x, s) => Math.max(m, maxAbsDiff(x, b[s]!)), 0);

describe("architecture features that decide the output, on llama.cpp, the reference backend and ONNX", () => {
  for (const [name, variant] of Object.entries(VARIANTS)) {
    test(name, async () => {
      const slug = name.replace(/\W+/g, "-");
      const gguf = join(dir, `${slug}.gguf`);
      const base = join(dir, `${slug}-base.gguf`);
      const bytes = encodeRandomGguf(variant.model);
      const edited = variant.metadata || variant.append;
      writeFileSync(gguf, edited ? rewriteGguf(bytes, { metadata: variant.metadata, append: variant.append }) : bytes);
      // The feature is measured against the same model without it: the unedited file for a metadata
      // edit, else the default model of the architecture.
      writeFileSync(base, edited ? bytes : encodeRandomGguf({ arch: variant.model.arch }));
      await convertGgufToOnnx(gguf, join(dir, slug), variant.convert);
      const oracle = await llamaCpp.load(gguf, { contextLength: 128, threads: 1 });
      const plain = await llamaCpp.load(base, { contextLength: 128, threads: 1 });
      const reference = loadReferenceLlama(gguf, { contextLength: 128 });
      const converted = await onnx.load(join(dir, slug), { contextLength: 128, threads: 1 });
      try {
        const want = await greedy(oracle);
        const before = await greedy(plain);
        if (variant.shows === "tokens") expect(want.tokens).not.toEqual(before.tokens);
        if (variant.shows === "logits") expect(maxDiff(want.logits, before.logits)).toBeGreaterThan(10 * variant.tolerance);
        const r = await greedy(reference);
        const o = await greedy(converted);
        expect(r.tokens).toEqual(want.tokens);
        expect(o.tokens).toEqual(want.tokens);
        expect(maxDiff(r.logits, want.logits)).toBeLessThan(variant.tolerance);
        expect(maxDiff(o.logits, want.logits)).toBeLessThan(variant.tolerance);
        expect(maxDiff(o.logits, r.logits)).toBeLessThan(variant.onnxTolerance ?? 1e-4);
        if (process.env.STEERKIT_MEASURE) console.log(name, maxDiff(r.logits, want.logits), maxDiff(o.logits, want.logits), maxDiff(o.logits, r.logits));
      } finally {
        for (const m of [oracle, plain, reference, converted]) m.dispose();
      }
    });
  }
});
