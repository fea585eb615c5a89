import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConvertError, openLlamaGguf } from "../../src/convert/llama-gguf.ts";
import { GgufError } from "../../src/formats/gguf.ts";
import { argmax } from "../../src/core/tensor.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
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
    const p = join(dir, "gpt2.gguf");
    writeFileSync(p, withMetadataString(readFileSync(MODEL), "general.architecture", "gpt2"));
    const e = errorOf(() => openLlamaGguf(p));
    expect(e).toBeInstanceOf(ConvertError);
    expect(e.message).toContain(p);
    expect(e.message).toContain('unsupported architecture "gpt2"');
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

function indexOf(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error("needle not found");
}
