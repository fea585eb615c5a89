/**
 * The converter against llama.cpp on variants of stories260K that exercise what the embedded model
 * alone does not: tied embeddings (no output.weight), another rope base, linear rope scaling,
 * Llama-3.1-style rope frequency factors, the other llama-family architectures (qwen2, qwen3,
 * smollm3, mistral3: the same weights under their names, plus the tensors they add), and F16 /
 * BF16 / Q8_0 weights. Each variant is loaded by the
 * llama.cpp adapter as a GGUF, by the reference backend, and by the ONNX adapter after conversion;
 * greedy tokens must agree and logits stay within a tolerance measured per variant.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Model } from "../../src/core/backend.ts";
import { argmax } from "../../src/core/tensor.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { asArchitecture, rewriteGguf, toBF16, toF16, toQ8_0, type TensorEntry } from "../convert/gguf-edit.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const PROMPT = [1, 403, 407, 261, 378];
const STEPS = 24;
const dir = mkdtempSync(join(tmpdir(), "steerkit-variants-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const source = new Uint8Array(readFileSync(MODEL));
const scaled = (t: TensorEntry, k: number): TensorEntry => {
  const f = new Float32Array(t.data.slice().buffer).map((x) => x * k);
  return { ...t, data: new Uint8Array(f.buffer) };
};
const f32Tensor = (name: string, values: number[]): TensorEntry => ({
  name,
  type: 0,
  dims: [values.length],
  data: new Uint8Array(new Float32Array(values).buffer),
});

/** Deterministic small values (xorshift) for added tensors. */
function values(seed: number, n: number, center: number, spread: number): number[] {
  let x = seed >>> 0 || 1;
  return Array.from({ length: n }, () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return center + spread * ((x >>> 0) / 2 ** 32 - 0.5);
  });
}
const perLayer = (make: (layer: number) => TensorEntry[]) => Array.from({ length: 5 }, (_, i) => make(i)).flat();

/** name -> [GGUF bytes, max |logit diff| allowed (measured value in the comment)]. */
const VARIANTS: Record<string, [Uint8Array, number]> = {
  // Measured 0.021. The output head is token_embd.weight. llama2.c ties its weights, so the embedding is also scaled
  // by 1.25 to make the tied model differ from the original.
  tied: [
    rewriteGguf(source, {
      tensors: (t) => (t.name === "output.weight" ? null : t.name === "token_embd.weight" ? scaled(t, 1.25) : t),
    }),
    0.05,
  ],
  // Measured 0.023.
  "rope base 500000": [rewriteGguf(source, { metadata: { "llama.rope.freq_base": { type: "f32", value: 500000 } } }), 0.05],
  // Measured 0.041.
  "linear rope scaling x4": [
    rewriteGguf(source, {
      metadata: { "llama.rope.scaling.type": { type: "string", value: "linear" }, "llama.rope.scaling.factor": { type: "f32", value: 4 } },
    }),
    0.06,
  ],
  // Measured 0.032. Per-pair divisors of the rotation frequency, as Llama 3.1's rope_freqs are.
  "rope_freqs factors": [
    rewriteGguf(source, {
      tensors: (t) => t,
      append: [f32Tensor("rope_freqs.weight", [3, 5, 20, 50])],
    }),
    0.05,
  ],
  // Measured 0.037: NEOX rope (halves), q/k/v biases and an output bias.
  "qwen2 architecture": [
    asArchitecture(source, "qwen2", {
      append: [
        ...perLayer((i) => [
          f32Tensor(`blk.${i}.attn_q.bias`, values(10 + i, 64, 0, 0.4)),
          f32Tensor(`blk.${i}.attn_k.bias`, values(20 + i, 32, 0, 0.4)),
          f32Tensor(`blk.${i}.attn_v.bias`, values(30 + i, 32, 0, 0.4)),
        ]),
        f32Tensor("output.bias", values(40, 512, 0, 1)),
      ],
    }),
    0.05,
  ],
  // Measured 0.006: NEOX rope and per-head q/k RMSNorm.
  "qwen3 architecture": [
    asArchitecture(source, "qwen3", {
      append: perLayer((i) => [
        f32Tensor(`blk.${i}.attn_q_norm.weight`, values(50 + i, 8, 1, 0.6)),
        f32Tensor(`blk.${i}.attn_k_norm.weight`, values(60 + i, 8, 1, 0.6)),
      ]),
    }),
    0.05,
  ],
  // Measured 0.016: block 3 has no rope (NoPE every 4th block).
  "smollm3 architecture": [asArchitecture(source, "smollm3"), 0.05],
  // Measured 0.016: the llama graph under another name (so the same story as the original).
  "mistral3 architecture": [asArchitecture(source, "mistral3"), 0.05],
  // Measured 0.018: llama.cpp rounds activations to F16 before F16 matmuls, the ONNX graph does not.
  "F16 weights": [toF16(source), 0.05],
  // Measured 0.069: llama.cpp rounds activations to BF16 before BF16 matmuls.
  "BF16 weights": [toBF16(source), 0.1],
  // Measured 0.26 (logits reach ~18): llama.cpp quantises activations to Q8_0 blocks before Q8_0 matmuls.
  "Q8_0 weights": [toQ8_0(source), 0.35],
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

describe("converted variants agree with llama.cpp", () => {
  let baseline: number[] | null = null;
  for (const [name, [bytes, tolerance]] of Object.entries(VARIANTS)) {
    test(name, async () => {
      const slug = name.replace(/\W+/g, "-");
      const gguf = join(dir, `${slug}.gguf`);
      writeFileSync(gguf, bytes);
      await convertGgufToOnnx(gguf, join(dir, slug));
      const a = await llamaCpp.load(gguf, { contextLength: 256, threads: 1 });
      const b = await onnx.load(join(dir, slug), { contextLength: 256, threads: 1 });
      const c = loadReferenceLlama(gguf, { contextLength: 256 });
      try {
        const ra = await greedy(a);
        for (const other of [b, c]) {
          const rb = await greedy(other);
          expect(rb.tokens).toEqual(ra.tokens);
          let diff = 0;
          ra.logits.forEach((x, s) => x.forEach((v, i) => (diff = Math.max(diff, Math.abs(v - rb.logits[s]![i]!)))));
          expect(diff).toBeLessThan(tolerance);
        }
        // The variant is really different from the plain model where it changes the math.
        expect(b.info.architecture).toBe(a.info.architecture);
        if (!name.includes("weights") && !name.includes("mistral3")) {
          if (!baseline) {
            const plain = await llamaCpp.load(MODEL, { contextLength: 256, threads: 1 });
            baseline = (await greedy(plain)).tokens;
            plain.dispose();
          }
          expect(ra.tokens).not.toEqual(baseline);
        }
      } finally {
        a.dispose();
        b.dispose();
        c.dispose();
      }
    });
  }
});
