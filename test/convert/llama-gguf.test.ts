import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConvertError, openLlamaGguf, ropeFactors } from "../../src/convert/llama-gguf.ts";
import { GgufError } from "../../src/formats/gguf.ts";
import { argmax } from "../../src/core/tensor.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { encodeRandomGguf } from "../../src/testing/random-gguf.ts";
import { rewriteGguf, type TensorEntry, withMetadataString } from "./gguf-edit.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const PROMPT = [1, 403, 407, 261, 378]; // "<s>Once upon a time"
export const EXPECTED_START = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.";

const dir = mkdtempSync(join(tmpdir(), "steerkit-llama-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error");
}

describe("openLlamaGguf", () => {
  test("reads stories260K's hyper-parameters", () => {
    const h = openLlamaGguf(MODEL).hparams;
    expect(h).toMatchObject({ nLayers: 5, nEmbd: 64, nFf: 172, nHead: 8, nHeadKv: 4, headDim: 8, nRot: 8, vocabSize: 512 });
    expect(h.ropeFreqBase).toBe(10000);
    expect(h.tiedEmbeddings).toBe(false);
    expect(h.bosTokenId).toBe(1);
    expect(h.eosTokenId).toBe(2);
  });

  test("the written-down math, as the reference backend computes it, reproduces the model's known greedy story", async () => {
    const model = loadReferenceLlama(MODEL);
    const seq = model.createSequence();
    let logits = await seq.prefill(PROMPT);
    const ids = [...PROMPT];
    for (let i = 0; i < 32; i++) {
      ids.push(argmax(logits));
      logits = await seq.decode(ids.at(-1)!);
    }
    expect(model.detokenize(ids).trimStart()).toStartWith(EXPECTED_START);
  });

  test("a non-GGUF file is refused with the file name", () => {
    const p = join(dir, "not.gguf");
    writeFileSync(p, "hello, this is not a model at all........");
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
    expect(e.message).toContain("magic");
  });

  test("an unsupported architecture is refused by name", () => {
    const p = join(dir, "phi2.gguf");
    writeFileSync(p, withMetadataString(readFileSync(MODEL), "general.architecture", "phi2"));
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('unsupported architecture "phi2"');
  });

  test("an unsupported quantisation is refused by type name", () => {
    const p = join(dir, "q4k.gguf");
    // A well-formed Q4_1 tensor (zeros): the GGUF reader accepts it, the converter must refuse it.
    const q4 = (t: TensorEntry): TensorEntry =>
      t.name === "blk.2.ffn_up.weight" ? { ...t, type: 3, data: new Uint8Array((t.dims[0]! * t.dims[1]! / 32) * 20) } : t;
    writeFileSync(p, rewriteGguf(readFileSync(MODEL), { tensors: q4 }));
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('tensor "blk.2.ffn_up.weight" has type Q4_1');
  });

  test("a missing tensor is refused by name", () => {
    const p = join(dir, "missing.gguf");
    // Renaming keeps every offset valid: same name length.
    const bytes = new Uint8Array(readFileSync(MODEL));
    const from = new TextEncoder().encode("blk.3.ffn_gate.weight");
    const to = new TextEncoder().encode("blk.3.ffn_xxxx.weight");
    const at = indexOf(bytes, from);
    bytes.set(to, at);
    writeFileSync(p, bytes);
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('tensor "blk.3.ffn_gate.weight" is missing');
  });
});

describe("openLlamaGguf on the other architectures", () => {
  const refused = (name: string, bytes: Uint8Array, message: string) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain(message);
  };
  const f32 = (name: string, n: number): TensorEntry => ({ name, type: 0, dims: [n], data: new Uint8Array(4 * n) });

  test("each architecture's departures become per-block numbers", () => {
    const write = (name: string, bytes: Uint8Array) => {
      const p = join(dir, name);
      writeFileSync(p, bytes);
      return openLlamaGguf(p).hparams;
    };
    const gemma2 = write("gemma2.gguf", encodeRandomGguf({ arch: "gemma2", slidingWindow: 5 }));
    expect(gemma2.slidingWindow).toEqual([5, 0, 5, 0]);
    expect(gemma2).toMatchObject({ attnSoftcap: 50, finalSoftcap: 30, embedScale: 8, queryScale: 1 / Math.sqrt(32), tiedEmbeddings: true });
    const gemma3 = write("gemma3.gguf", encodeRandomGguf({ arch: "gemma3", slidingWindow: 5, ropeThetaSwa: 100 }));
    expect(gemma3.slidingWindow).toEqual([5, 5, 5, 5, 5, 0]);
    expect(gemma3.layerRope.map((r) => r.freqBase)).toEqual([100, 100, 100, 100, 100, gemma3.ropeFreqBase]);
    expect(gemma3).toMatchObject({ attnSoftcap: 0, finalSoftcap: 0 });
    // A per-layer pattern array is skipped, as llama.cpp's scalar get_key_or_arr skips it: the default period (6) applies.
    const arrayPattern = rewriteGguf(encodeRandomGguf({ arch: "gemma3", slidingWindow: 5 }), {
      metadata: { "gemma3.attention.sliding_window_pattern": { type: "raw", bytes: boolArray([true, false, true, false, true, false]) } },
    });
    expect(write("gemma3-array.gguf", arrayPattern).slidingWindow).toEqual([5, 5, 5, 5, 5, 0]);
    const gpt2 = write("gpt2.gguf", encodeRandomGguf({ arch: "gpt2" }));
    expect(gpt2).toMatchObject({ nRot: 0, ropeLayers: [false, false, false] });
    const phi3 = write("phi3.gguf", encodeRandomGguf({ arch: "phi3" }));
    expect(phi3.slidingWindow).toEqual([0, 0, 0]); // llama.cpp disables Phi-3's window
  });

  test("longrope factors are read for phi3 (long above the original context) and refused elsewhere by name", () => {
    const p = join(dir, "phi3-longrope.gguf");
    const factors = (name: string, v: number): TensorEntry => ({ name, type: 0, dims: [8], data: new Uint8Array(new Float32Array(8).fill(v).buffer) });
    const meta = { "phi3.rope.scaling.original_context_length": { type: "u32" as const, value: 64 } };
    writeFileSync(p, rewriteGguf(encodeRandomGguf({ arch: "phi3" }), { metadata: meta, append: [factors("rope_factors_long.weight", 4), factors("rope_factors_short.weight", 2)] }));
    const h = openLlamaGguf(p).hparams;
    expect(ropeFactors(h, 65)![0]).toBe(4);
    expect(ropeFactors(h, 64)![0]).toBe(2);
    refused("longrope.gguf", rewriteGguf(encodeRandomGguf({ arch: "qwen2" }), { append: [f32("rope_factors_long.weight", 8)] }), 'tensor "rope_factors_long.weight": longrope frequency factors for qwen2');
  });

  test("a separate output head on gemma2 is refused (llama.cpp would not load it)", () => {
    const bytes = encodeRandomGguf({ arch: "gemma2" });
    refused("gemma2-output.gguf", rewriteGguf(bytes, { append: [{ name: "output.weight", type: 0, dims: [64, 8], data: new Uint8Array(64 * 8 * 4) }] }), 'tensor "output.weight": a separate output head for gemma2');
  });

  test("partial rotary is refused for llama, as llama.cpp refuses it", () => {
    refused("llama-partial.gguf", rewriteGguf(encodeRandomGguf({ arch: "llama" }), { metadata: { "llama.rope.dimension_count": { type: "u32", value: 8 } } }), "refuses partial rotary for llama");
  });

  test("a missing architecture tensor (gemma2's post-FFN norm) is refused by name", () => {
    const bytes = encodeRandomGguf({ arch: "gemma2" });
    refused("gemma2-missing.gguf", rewriteGguf(bytes, { tensors: (t) => (t.name === "blk.1.post_ffw_norm.weight" ? null : t) }), 'tensor "blk.1.post_ffw_norm.weight" is missing');
  });
});

/** A GGUF metadata value's raw bytes (type + value): an array of bools. */
function boolArray(values: boolean[]): Uint8Array {
  const out = new Uint8Array(4 + 4 + 8 + values.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, 9, true); // GGUF_TYPE_ARRAY
  v.setUint32(4, 7, true); // of GGUF_TYPE_BOOL
  v.setBigUint64(8, BigInt(values.length), true);
  values.forEach((x, i) => (out[16 + i] = x ? 1 : 0));
  return out;
}

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}
