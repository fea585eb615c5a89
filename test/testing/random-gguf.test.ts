/**
 * The random-weight GGUF generator: deterministic bytes, the layout llama.cpp's converter writes
 * (checked byte for byte against gguf-py's GGUFWriter when STEERKIT_GGUF_PY names llama.cpp's
 * gguf-py directory and /usr/bin/python3 has numpy), and every architecture readable by Steerkit's
 * GGUF validator. Loading and generating with llama.cpp: test/llama-cpp/architectures.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { encodeRandomGguf, MORE_RANDOM_GGUF_ARCHITECTURES, RANDOM_GGUF_ARCHITECTURES, randomGguf, randomGgufConfig, writeRandomGguf } from "../../src/testing/random-gguf.ts";

const ALL = [...RANDOM_GGUF_ARCHITECTURES, ...MORE_RANDOM_GGUF_ARCHITECTURES];

const ggufPy = process.env.STEERKIT_GGUF_PY;
const python = "/usr/bin/python3";

describe("random GGUF generator", () => {
  test("same options => same bytes; another seed => other weights, same layout", () => {
    for (const arch of ALL) {
      const a = encodeRandomGguf({ arch, seed: 3 });
      expect(Bun.hash(encodeRandomGguf({ arch, seed: 3 }))).toBe(Bun.hash(a));
      const b = encodeRandomGguf({ arch, seed: 4 });
      expect(b.length).toBe(a.length);
      expect(Bun.hash(b)).not.toBe(Bun.hash(a));
    }
  });

  test("writeRandomGguf streams the same bytes encodeRandomGguf builds, and the validator reads them", () => {
    const dir = mkdtempSync(join(tmpdir(), "random-gguf-"));
    try {
      for (const arch of ALL) {
        for (const weightType of ["f32", "f16"] as const) {
          const path = join(dir, `${arch}-${weightType}.gguf`);
          const m = writeRandomGguf(path, { arch, weightType });
          expect(Bun.hash(readFileSync(path))).toBe(Bun.hash(encodeRandomGguf({ arch, weightType })));
          const f = readGgufHeader(path);
          expect(f.metadata.get("general.architecture")).toBe(arch);
          expect(f.tensors.map((t) => t.name)).toEqual(m.tensors.map((t) => t.name));
          expect(f.tensors.map((t) => t.dims)).toEqual(m.tensors.map((t) => [...t.dims]));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("each architecture's distinctive tensors and keys, as llama.cpp's converter writes them", () => {
    const names = (arch: (typeof ALL)[number]) => new Map(randomGguf({ arch }).tensors.map((t) => [t.name, t.dims]));
    const keys = (arch: (typeof ALL)[number]) => new Map(randomGguf({ arch }).metadata);
    const phi3 = names("phi3");
    expect(phi3.get("blk.0.attn_qkv.weight")).toEqual([64, 192]);
    expect(phi3.get("blk.0.ffn_up.weight")).toEqual([64, 256]); // gate and up fused
    expect(phi3.has("blk.0.ffn_gate.weight")).toBe(false);
    const gpt2 = names("gpt2");
    expect(gpt2.get("position_embd.weight")).toEqual([64, 256]);
    for (const t of ["attn_norm.bias", "attn_qkv.bias", "attn_output.bias", "ffn_norm.bias", "ffn_up.bias", "ffn_down.bias"]) expect(gpt2.has(`blk.2.${t}`)).toBe(true);
    expect(gpt2.has("output.weight")).toBe(false); // tied
    expect(keys("gpt2").has("gpt2.attention.layer_norm_epsilon")).toBe(true);
    const g2 = names("gemma2"), g3 = names("gemma3");
    for (const m of [g2, g3]) for (const t of ["post_attention_norm", "post_ffw_norm", "ffn_norm"]) expect(m.has(`blk.0.${t}.weight`)).toBe(true);
    expect(g3.get("blk.0.attn_q_norm.weight")).toEqual([32]);
    expect(g2.get("blk.0.attn_q.weight")).toEqual([64, 128]); // head_dim 32 x 4 heads != n_embd
    expect((keys("gemma2").get("gemma2.final_logit_softcapping") as { value: number }).value).toBe(30);
    expect((keys("gemma3").get("gemma3.rope.freq_base_swa") as { value: number }).value).toBe(10000);
    expect(names("qwen2").get("blk.1.attn_k.bias")).toEqual([32]);
    expect(names("qwen3").get("blk.1.attn_k_norm.weight")).toEqual([32]);
    expect(names("llama").get("blk.0.attn_k.weight")).toEqual([64, 32]); // GQA 4:2
    const phi2 = names("phi2");
    expect(phi2.has("blk.0.ffn_norm.weight")).toBe(false); // parallel block: the MLP reads attn_norm
    expect(phi2.get("output.bias")).toEqual([phi2.get("output.weight")![1]!]);
    expect(phi2.get("blk.1.attn_q.bias")).toEqual([64]);
    expect((keys("phi2").get("phi2.rope.dimension_count") as { value: number }).value).toBe(6); // int(0.4 * 64) // 4
    // mistral3 (Mistral Small 3.1): head_dim 32 x 4 heads != n_embd, written as key_length and rope.dimension_count;
    // no yarn or attention-temperature keys; Tekken's specials at ids 0..; untied output.
    const m3 = names("mistral3"), m3keys = keys("mistral3");
    expect(m3.get("blk.0.attn_q.weight")).toEqual([64, 128]);
    expect(m3.get("blk.0.attn_output.weight")).toEqual([128, 64]);
    expect(m3.has("output.weight")).toBe(true);
    for (const k of ["attention.key_length", "attention.value_length", "rope.dimension_count"]) expect((m3keys.get(`mistral3.${k}`) as { value: number }).value).toBe(32);
    expect([...m3keys.keys()].filter((k) => /temperature|yarn|rope\.scaling/.test(k))).toEqual([]);
    expect((m3keys.get("tokenizer.ggml.pre") as { value: string }).value).toBe("tekken");
    expect(((m3keys.get("tokenizer.ggml.tokens") as { value: unknown }).value as string[]).slice(0, 3)).toEqual(["<unk>", "<s>", "</s>"]);
    expect((m3keys.get("tokenizer.ggml.bos_token_id") as { value: number }).value).toBe(1);
    // smollm3: llama tensors, tied, 4 blocks (block 3 has no rope: llama.cpp's fixed step, no key), Llama 3 vocabulary.
    const s3 = names("smollm3"), s3keys = keys("smollm3");
    expect(s3.has("output.weight")).toBe(false);
    expect(s3.has("blk.3.ffn_gate.weight")).toBe(true);
    expect(s3.has("blk.4.ffn_gate.weight")).toBe(false);
    expect([...s3keys.keys()].filter((k) => /no_rope|key_length/.test(k))).toEqual([]);
    expect((s3keys.get("tokenizer.ggml.pre") as { value: string }).value).toBe("llama-bpe");
  });

  test("bad options are refused naming the option", () => {
    expect(() => randomGgufConfig({ arch: "llama", nHead: 4, nHeadKv: 3 })).toThrow(/nHead 4 is not a multiple of nHeadKv 3/);
    expect(() => randomGgufConfig({ arch: "gpt2", headDim: 8 })).toThrow(/gpt2 needs headDim \* nHead = nEmbd/);
    expect(() => randomGgufConfig({ arch: "mamba" as "llama" })).toThrow(/unknown architecture "mamba"/);
    expect(() => randomGgufConfig({ arch: "qwen2", nLayers: 0 })).toThrow(/nLayers must be a positive integer/);
  });

  test.skipIf(!ggufPy)("gguf-py's GGUFWriter rewrites every architecture to the same bytes (STEERKIT_GGUF_PY)", () => {
    const dir = mkdtempSync(join(tmpdir(), "random-gguf-py-"));
    try {
      for (const arch of ALL) {
        for (const weightType of ["f32", "f16"] as const) {
          const src = join(dir, `${arch}.gguf`), dst = join(dir, `${arch}.py.gguf`);
          writeRandomGguf(src, { arch, weightType });
          const p = Bun.spawnSync([python, join(import.meta.dir, "..", "helpers", "gguf-py-rewrite.py"), src, dst], { env: { ...process.env, PYTHONPATH: ggufPy! } });
          expect(p.stderr.toString()).toBe("");
          expect(p.exitCode).toBe(0);
          expect(Bun.hash(readFileSync(dst))).toBe(Bun.hash(readFileSync(src)));
        }
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
