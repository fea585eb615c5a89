import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConvertError, convertGgufToOnnx, type ConvertReport } from "../../src/convert/gguf-to-onnx.ts";
import { openLlamaGguf } from "../../src/convert/llama-gguf.ts";
import { GgufError } from "../../src/formats/gguf.ts";
import { asArchitecture, rewriteGguf, toF16, toQ8_0, type TensorEntry, withMetadataString } from "./gguf-edit.ts";
import { argmax } from "../../src/core/tensor.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { logitsOf, OnnxDecoder } from "./run-onnx.ts";
import { ort } from "../../src/adapters/onnx/ort.ts";
import { Tokenizer } from "@huggingface/tokenizers";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const PROMPT = [1, 403, 407, 261, 378]; // "<s>Once upon a time"
const EXPECTED_START = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";
const SHAPE = { nLayers: 5, nKvHeads: 4, headDim: 8, vocabSize: 512 };

const dir = mkdtempSync(join(tmpdir(), "steerkit-convert-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let report: ConvertReport;
let decoder: OnnxDecoder;
beforeAll(async () => {
  report = await convertGgufToOnnx(MODEL, join(dir, "f32"));
  decoder = await OnnxDecoder.open(join(dir, "f32", "model.onnx"), SHAPE);
});

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function greedy(d: OnnxDecoder, prompt: readonly number[], steps: number): Promise<number[]> {
  d.reset();
  const ids = [...prompt];
  let logits = await d.last(prompt);
  for (let i = 0; i < steps; i++) {
    ids.push(argmax(logits));
    logits = await d.last([ids.at(-1)!]);
  }
  return ids;
}

/** Last-position logits after feeding `prompt` one token at a time through the reference backend. */
async function referenceLogits(gguf: string, prompt: readonly number[]): Promise<Float32Array> {
  const model = loadReferenceLlama(gguf);
  const seq = model.createSequence();
  let logits = new Float32Array();
  for (const t of prompt) logits = new Float32Array(await seq.decode(t));
  seq.free();
  return logits;
}

/** Text of ids as the embedded model's tokenizer decodes them. */
const decodeIds = (ids: readonly number[]) => loadReferenceLlama(MODEL).detokenize(ids);

describe("convertGgufToOnnx on stories260K", () => {
  test("writes the export directory and reports the model", () => {
    expect(report.architecture).toBe("llama");
    expect(report).toMatchObject({ nLayers: 5, dModel: 64, nHeads: 8, nKvHeads: 4, vocabSize: 512, dtype: "float32", externalData: false });
    expect(report.sourceTypes).toEqual({ F32: 48 });
    expect(report.parameterCount).toBe(292_800);
    const config = JSON.parse(readFileSync(join(dir, "f32", "config.json"), "utf8"));
    expect(config).toMatchObject({
      model_type: "llama",
      hidden_size: 64,
      intermediate_size: 172,
      num_hidden_layers: 5,
      num_attention_heads: 8,
      num_key_value_heads: 4,
      vocab_size: 512,
      max_position_embeddings: 2048,
      rope_theta: 10000,
      bos_token_id: 1,
      eos_token_id: 2,
      torch_dtype: "float32",
    });
    expect(config.rms_norm_eps).toBeCloseTo(1e-5, 8);
    expect(JSON.parse(readFileSync(join(dir, "f32", "generation_config.json"), "utf8"))).toEqual({ bos_token_id: 1, eos_token_id: 2 });
  });

  test("carries the tokenizer over: tokenizer.json encodes like the GGUF vocabulary", () => {
    expect(report.tokenizer).toBe(true);
    const json = JSON.parse(readFileSync(join(dir, "f32", "tokenizer.json"), "utf8"));
    const config = JSON.parse(readFileSync(join(dir, "f32", "tokenizer_config.json"), "utf8"));
    const tok = new Tokenizer(json, config);
    expect(tok.encode("Once upon a time", { add_special_tokens: true }).ids).toEqual(PROMPT);
    expect(tok.decode([403, 407, 261, 378], { skip_special_tokens: true })).toBe("Once upon a time");
    expect(config.chat_template).toBeUndefined(); // stories260K has none
  });

  test("carries the chat template over into tokenizer_config.json", async () => {
    const template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}";
    const gguf = join(dir, "with-template.gguf");
    writeFileSync(gguf, withMetadataString(readFileSync(MODEL), "tokenizer.chat_template", template));
    const out = join(dir, "with-template");
    await convertGgufToOnnx(gguf, out);
    expect(JSON.parse(readFileSync(join(out, "tokenizer_config.json"), "utf8")).chat_template).toBe(template);
  });

  test("a GGUF without tokenizer metadata converts, and says it wrote no tokenizer", async () => {
    const gguf = join(dir, "no-tokenizer.gguf");
    const drop = Object.fromEntries([...openLlamaGguf(MODEL).file.metadata.keys()].filter((k) => k.startsWith("tokenizer.")).map((k) => [k, null]));
    writeFileSync(gguf, rewriteGguf(readFileSync(MODEL), { metadata: drop }));
    const out = join(dir, "no-tokenizer");
    const r = await convertGgufToOnnx(gguf, out);
    expect(r.tokenizer).toBe(false);
    expect(existsSync(join(out, "tokenizer.json"))).toBe(false);
    expect(existsSync(join(out, "model.onnx"))).toBe(true);
  });

  test("an unsupported tokenizer fails before any weight is written", async () => {
    const gguf = join(dir, "unsupported-tokenizer.gguf");
    writeFileSync(gguf, withMetadataString(readFileSync(MODEL), "tokenizer.ggml.model", "rwkv"));
    const out = join(dir, "unsupported-tokenizer");
    let error: Error | null = null;
    await convertGgufToOnnx(gguf, out).catch((e) => (error = e));
    expect(error).not.toBeNull();
    expect(error!.message).toContain(gguf);
    expect(error!.message).toContain(`tokenizer model "rwkv" is not supported`);
    expect(existsSync(join(out, "model.onnx"))).toBe(false);
  });

  test("every end-of-generation token llama.cpp knows ends generation in the export (EOS first)", async () => {
    const gguf = join(dir, "with-eot.gguf");
    writeFileSync(gguf, rewriteGguf(readFileSync(MODEL), { metadata: { "tokenizer.ggml.eot_token_id": { type: "u32", value: 5 } } }));
    const out = join(dir, "with-eot");
    await convertGgufToOnnx(gguf, out);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).eos_token_id).toEqual([2, 5]);
    expect(JSON.parse(readFileSync(join(out, "generation_config.json"), "utf8"))).toEqual({ bos_token_id: 1, eos_token_id: [2, 5] });
  });

  test("has the Optimum decoder interface", () => {
    const s = decoder.session;
    expect(s.inputNames.slice(0, 3)).toEqual(["input_ids", "attention_mask", "position_ids"]);
    expect(s.inputNames).toContain("past_key_values.4.value");
    expect(s.outputNames[0]).toBe("logits");
    expect(s.outputNames).toContain("present.0.key");
    expect(s.outputNames).toHaveLength(1 + 2 * 5);
  });

  test("greedy continuation with the KV cache, step by step, tells the known story", async () => {
    const ids = await greedy(decoder, PROMPT, 32);
    expect(decodeIds(ids).trimStart()).toStartWith(EXPECTED_START);
  });

  test("logits equal the TypeScript reference forward pass of the documented math", async () => {
    decoder.reset();
    const onnx = await decoder.last(PROMPT);
    const ref = await referenceLogits(MODEL, PROMPT);
    // Measured 7.6e-6 on logits up to ~18 (float32 rounding; the reference accumulates dot products in double).
    expect(maxAbsDiff(onnx, ref)).toBeLessThan(1e-4);
  });

  test("prefill of N tokens at once gives the last logits of N single-token steps", async () => {
    const tokens = [...PROMPT, 160, 261, 299, 330, 407];
    decoder.reset();
    const batched = await decoder.last(tokens);
    decoder.reset();
    let stepped: Float32Array = new Float32Array();
    for (const t of tokens) stepped = await decoder.last([t]);
    expect(argmax(batched)).toBe(argmax(stepped));
    // Measured 9.5e-6: only the order of float sums differs.
    expect(maxAbsDiff(batched, stepped)).toBeLessThan(1e-4);
    // And a prefill split in two chunks over the cache.
    decoder.reset();
    await decoder.feed(tokens.slice(0, 4));
    expect(maxAbsDiff(await decoder.last(tokens.slice(4)), batched)).toBeLessThan(1e-4);
  });

  test("attention_mask: a left-padded row in a batch gives the unpadded row's logits", async () => {
    const short = PROMPT.slice(0, 3);
    decoder.reset();
    const alone = await decoder.last(short);
    const i64 = (v: number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(v, BigInt), dims);
    const past: Record<string, ort.Tensor> = {};
    for (let i = 0; i < 5; i++) for (const k of ["key", "value"]) past[`past_key_values.${i}.${k}`] = new ort.Tensor("float32", new Float32Array(0), [2, 4, 0, 8]);
    const out = await decoder.session.run({
      input_ids: i64([...PROMPT, 0, 0, ...short], [2, 5]),
      attention_mask: i64([1, 1, 1, 1, 1, 0, 0, 1, 1, 1], [2, 5]),
      position_ids: i64([0, 1, 2, 3, 4, 0, 0, 0, 1, 2], [2, 5]),
      ...past,
    });
    const logits = logitsOf(out.logits!);
    expect(maxAbsDiff(logits.slice(9 * 512, 10 * 512), alone)).toBeLessThan(1e-4);
    // Row 0 is unaffected by row 1's padding.
    decoder.reset();
    expect(maxAbsDiff(logits.slice(4 * 512, 5 * 512), await decoder.last(PROMPT))).toBeLessThan(1e-4);
    // Fully masked padding rows stay finite (no NaN from an all-masked softmax).
    expect(logits.slice(5 * 512, 6 * 512).every(Number.isFinite)).toBe(true);
  });

  test("external data: weights in model.onnx.data give the same logits", async () => {
    const out = join(dir, "external");
    const r = await convertGgufToOnnx(MODEL, out, { externalData: true });
    expect(r.externalData).toBe(true);
    expect(existsSync(join(out, "model.onnx.data"))).toBe(true);
    expect(statSync(join(out, "model.onnx")).size).toBeLessThan(64 * 1024);
    expect(statSync(join(out, "model.onnx.data")).size).toBeGreaterThanOrEqual(r.weightBytes);
    const d = await OnnxDecoder.open(join(out, "model.onnx"), SHAPE);
    decoder.reset();
    expect(maxAbsDiff(await d.last(PROMPT), await decoder.last(PROMPT))).toBe(0);
  });

  test("external data is chosen automatically above the threshold", async () => {
    const out = join(dir, "auto-external");
    const r = await convertGgufToOnnx(MODEL, out, { externalThresholdBytes: 1_000_000 });
    expect(r.weightBytes).toBeGreaterThan(1_000_000);
    expect(r.externalData).toBe(true);
    expect(r.files).toContain(join(out, "model.onnx.data"));
    const small = await convertGgufToOnnx(MODEL, join(dir, "auto-inline"), { externalThresholdBytes: 10_000_000 });
    expect(small.externalData).toBe(false);
  });

  test("float16 output: half weights, KV cache and logits; same story", async () => {
    const out = join(dir, "fp16");
    const r = await convertGgufToOnnx(MODEL, out, { dtype: "float16" });
    expect(r.weightBytes).toBe(report.weightBytes / 2);
    expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).torch_dtype).toBe("float16");
    const d = await OnnxDecoder.open(join(out, "model.onnx"), { ...SHAPE, float16: true });
    const ids = await greedy(d, PROMPT, 32);
    expect(decodeIds(ids).trimStart()).toStartWith(EXPECTED_START);
    d.reset();
    decoder.reset();
    // Measured 0.011 on logits up to ~18 (half-precision weights, activations and cache).
    expect(maxAbsDiff(await d.last(PROMPT), await decoder.last(PROMPT))).toBeLessThan(0.1);
  });

  test("F16 and Q8_0 GGUF weights convert and match the reference on the same dequantised weights", async () => {
    const source = new Uint8Array(readFileSync(MODEL));
    for (const [name, bytes, types] of [
      ["f16", toF16(source), { F16: 37, F32: 11 }],
      ["q8_0", toQ8_0(source), { Q8_0: 32, F32: 16 }],
    ] as const) {
      const gguf = join(dir, `stories260K-${name}.gguf`);
      writeFileSync(gguf, bytes);
      const out = join(dir, name);
      const r = await convertGgufToOnnx(gguf, out);
      expect(r.sourceTypes).toEqual(types);
      const d = await OnnxDecoder.open(join(out, "model.onnx"), SHAPE);
      expect(maxAbsDiff(await d.last(PROMPT), await referenceLogits(gguf, PROMPT))).toBeLessThan(1e-4);
    }
  });
});

describe("convertGgufToOnnx refuses bad input by file and reason", () => {
  async function rejection(gguf: string, out = join(dir, "bad-out")): Promise<Error> {
    try {
      await convertGgufToOnnx(gguf, out);
    } catch (e) {
      return e as Error;
    }
    throw new Error("expected the conversion to fail");
  }
  const variant = (name: string, bytes: Uint8Array | string) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return p;
  };

  test("a file that is not a GGUF", async () => {
    const p = variant("model.onnx.gguf", "\x08\x07\x12\x04test: not a GGUF but an ONNX-looking file");
    const e = await rejection(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('expected "GGUF"');
  });

  test("a file that does not exist", async () => {
    const e = await rejection(join(dir, "nope.gguf"));
    expect(e.message).toContain("nope.gguf");
    expect(e.message).toContain("no such file or directory");
  });

  test("an unsupported architecture", async () => {
    const p = variant("falcon.gguf", withMetadataString(readFileSync(MODEL), "general.architecture", "falcon"));
    const e = await rejection(p);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('unsupported architecture "falcon"');
  });

  test("an unsupported quantisation type", async () => {
    const q4k = (t: TensorEntry): TensorEntry =>
      t.name === "blk.0.attn_q.weight" ? { ...t, type: 3, data: new Uint8Array(((t.dims[0]! * t.dims[1]!) / 32) * 20) } : t;
    const p = variant("q4_1.gguf", rewriteGguf(readFileSync(MODEL), { tensors: q4k }));
    const e = await rejection(p);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('tensor "blk.0.attn_q.weight" has type Q4_1');
  });

  test("a missing tensor", async () => {
    const p = variant("no-ffn-norm.gguf", rewriteGguf(readFileSync(MODEL), { tensors: (t) => (t.name === "blk.4.ffn_norm.weight" ? null : t) }));
    const e = await rejection(p);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('tensor "blk.4.ffn_norm.weight" is missing');
  });

  test("an output path that is a file", async () => {
    const file = variant("not-a-dir", "x");
    const e = await rejection(MODEL, file);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(MODEL);
    expect(e.message).toContain(`cannot create output directory ${file}`);
  });

  test("a qwen3 model without its q/k norm tensors", async () => {
    const p = variant("qwen3-no-qk-norm.gguf", asArchitecture(readFileSync(MODEL), "qwen3"));
    const e = await rejection(p);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain('tensor "blk.0.attn_q_norm.weight" is missing');
  });

  test("mistral3 attention temperature scaling", async () => {
    const p = variant(
      "mistral3-temperature.gguf",
      asArchitecture(readFileSync(MODEL), "mistral3", { metadata: { "mistral3.attention.temperature_scale": { type: "f32", value: 0.1 } } }),
    );
    const e = await rejection(p);
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain("attention temperature scaling");
  });

  test("unsupported rope scaling", async () => {
    const p = variant("yarn.gguf", withMetadataString(readFileSync(MODEL), "llama.rope.scaling.type", "yarn"));
    const e = await rejection(p);
    expect(e.message).toContain(p);
    expect(e.message).toContain('rope scaling type "yarn"');
  });
});
