/**
 * Every `tokenizer.ggml.pre` name of the pinned llama.cpp, against llama.cpp itself (issue 9): the
 * same vocabulary under each name (test/fixtures/tokenizer/record-pre-tokenizers.ts; 87 names, 86
 * converted in 28 split-regex sets), the ids with BOS, without and with special-token parsing and the decoded text
 * that llama.cpp recorded on 134 texts (the corpus, the multilingual text: 14 languages, combining
 * marks, emoji, code, whitespace runs).
 * - each converted name, by name: GgufTokenizer (which runs the converted tokenizer.json) equals
 *   llama.cpp on every text, so the flags per name (clean-up, BOS) are checked as well as the regexes;
 * - one name per regex set: the vocabulary on stories260K's tensors opened by the llama.cpp adapter
 *   and, after `steerkit convert`, by the ONNX adapter, and the written tokenizer.json loaded as any
 *   Hugging Face consumer would, all equal llama.cpp;
 * - each name left out is refused by name with the reason, and each name we convert is one llama.cpp knows.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Tokenizer } from "@huggingface/tokenizers";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import type { Model } from "../../src/core/backend.ts";
import { readGgufHeader, type GgufValue } from "../../src/formats/gguf.ts";
import { GgufTokenizer, keepByteOrderMarks, readTokenizerSpec } from "../../src/formats/gguf-tokenizer.ts";
import { PRE_TOKENIZERS, REFUSED_PRE_TOKENIZERS } from "../../src/formats/gguf-tokenizer/pre-tokenizers.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { withTokenizerOf } from "../convert/gguf-edit.ts";
import { preVocabGguf } from "../fixtures/tokenizer/make-vocabs.ts";
import { readPreRecording, vocabDigest, type PerPre } from "../fixtures/tokenizer/record-pre-tokenizers.ts";

const { header, rows } = readPreRecording();
const converted = header.names.filter((pre) => pre in PRE_TOKENIZERS);
const refused = header.names.filter((pre) => !(pre in PRE_TOKENIZERS));
const sameRegexes = (a: string, b: string) => JSON.stringify(PRE_TOKENIZERS[a]!.regexes) === JSON.stringify(PRE_TOKENIZERS[b]!.regexes);
/** One name per split-regex set (the first in llama.cpp's order): these also run on both backends. */
const representatives = converted.filter((pre, i) => converted.findIndex((p) => sameRegexes(p, pre)) === i);

const dir = mkdtempSync(join(tmpdir(), "steerkit-pre-"));
const vocabPath = (pre: string) => join(dir, `vocab-${pre}.gguf`);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const want = (pre: string) => rows.map((r) => ({ text: r.text, ...r.byPre.get(pre)! }));

test("the recording was made from this vocabulary (else re-record: see record-pre-tokenizers.ts)", () => {
  expect(vocabDigest()).toBe(header.vocabSha256);
});

test("every converted name is a name the pinned llama.cpp knows", () => {
  expect(Object.keys(PRE_TOKENIZERS).filter((pre) => !header.names.includes(pre))).toEqual([]);
});

describe("each converted name: GgufTokenizer equals llama.cpp on every text", () => {
  test.each(converted)("%s", (pre) => {
    writeFileSync(vocabPath(pre), preVocabGguf(pre));
    const t = GgufTokenizer.fromGguf(readGgufHeader(vocabPath(pre)));
    for (const r of want(pre)) {
      const got: PerPre & { text: string } = {
        text: r.text,
        ids: t.encode(r.text),
        idsNoBos: t.encode(r.text, { addSpecial: false }),
        idsSpecial: t.encode(r.text, { parseSpecial: true }),
        decoded: t.decode(r.ids),
        decodedNoBos: t.decode(r.idsNoBos),
      };
      expect(got).toEqual(r);
    }
  });
});

describe("defaults llama.cpp sets by name (llama-vocab.cpp), where the recorded vocabulary does not reach them", () => {
  const header = (pre: string, drop: string, set: [string, GgufValue][] = []) => {
    writeFileSync(vocabPath(pre), preVocabGguf(pre));
    const file = readGgufHeader(vocabPath(pre));
    const metadata = new Map(file.metadata);
    metadata.delete(drop);
    for (const [k, v] of set) metadata.set(k, v);
    return { path: file.path, metadata };
  };
  test("without a bos_token_id, GLM-4 has no BOS (llama.cpp's BPE default is 11 otherwise)", () => {
    expect(readTokenizerSpec(header("glm4", "tokenizer.ggml.bos_token_id")).bosId).toBeNull();
    expect(readTokenizerSpec(header("chatglm-bpe", "tokenizer.ggml.bos_token_id")).bosId).toBeNull();
    expect(readTokenizerSpec(header("qwen2", "tokenizer.ggml.bos_token_id")).bosId).toBe(11);
  });
  test("Kimi K2 may go without merges (llama.cpp loads it; words are then spelled by characters), other names may not", () => {
    expect(readTokenizerSpec(header("kimi-k2", "tokenizer.ggml.merges")).merges).toEqual([]);
    expect(() => readTokenizerSpec(header("gpt-4o", "tokenizer.ggml.merges"))).toThrow(/merges" is missing/);
  });
  test("Gemma 4 adds BOS even when the file says not to", () => {
    expect(readTokenizerSpec(header("gemma4", "tokenizer.ggml.add_bos_token", [["tokenizer.ggml.add_bos_token", false]])).addBos).toBe(true);
    expect(readTokenizerSpec(header("sarvam-moe", "tokenizer.ggml.add_bos_token", [["tokenizer.ggml.add_bos_token", false]])).addBos).toBe(false);
  });
});

describe("names left out are refused by name", () => {
  test.each(refused)("%s", (pre) => {
    writeFileSync(vocabPath(pre), preVocabGguf(pre));
    expect(() => readTokenizerSpec(readGgufHeader(vocabPath(pre)))).toThrow(`BPE pre-tokenizer "${pre}" (tokenizer.ggml.pre) is not supported: ${REFUSED_PRE_TOKENIZERS[pre]}`);
  });
});

describe("one name per regex set on both backends and in a Hugging Face consumer", () => {
  const models = new Map<string, { llama: Model; onnx: Model }>();
  beforeAll(async () => {
    const base = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));
    for (const pre of representatives) {
      const file = join(dir, `model-${pre}.gguf`);
      writeFileSync(file, withTokenizerOf(base, preVocabGguf(pre)));
      await convertGgufToOnnx(file, join(dir, `onnx-${pre}`));
      models.set(pre, {
        llama: await llamaCpp.load(file, { contextLength: 64, threads: 1 }),
        onnx: await onnx.load(join(dir, `onnx-${pre}`), { contextLength: 64, threads: 1 }),
      });
    }
  }, 120_000);
  afterAll(() => {
    for (const m of models.values()) (m.llama.dispose(), m.onnx.dispose());
  });

  test.each(representatives)("%s", (pre) => {
    const { llama, onnx: ort } = models.get(pre)!;
    for (const r of want(pre)) {
      const expected = { text: r.text, ids: r.ids, noBos: r.idsNoBos, special: r.idsSpecial, decoded: r.decodedNoBos };
      for (const [backend, m] of [["llama.cpp", llama], ["onnx", ort]] as const) {
        const got = { text: r.text, ids: m.tokenize(r.text), noBos: m.tokenize(r.text, { addBos: false }), special: m.tokenize(r.text, { special: true }), decoded: m.detokenize(r.ids) };
        expect({ backend, ...got }).toEqual({ backend, ...expected });
      }
    }
    const read = (name: string) => JSON.parse(readFileSync(join(dir, `onnx-${pre}`, name), "utf8"));
    // keepByteOrderMarks: the library's ByteFallback decoder drops a decoded U+FEFF (see byte-order-mark.ts).
    const hf = keepByteOrderMarks(new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json")));
    for (const r of want(pre)) {
      // HF always splits special-token text out, so its ids are llama.cpp's with parse_special.
      expect({ text: r.text, ids: hf.encode(r.text).ids }).toEqual({ text: r.text, ids: r.idsSpecial });
      if (r.idsNoBos.length > 0) {
        expect({ ids: r.idsNoBos, text: hf.decode(r.idsNoBos, { skip_special_tokens: true }) }).toEqual({ ids: r.idsNoBos, text: r.decodedNoBos });
      }
    }
  });
});

/**
 * The recording checked live against the pinned llama.cpp's own `llama-tokenize` (vocab only) for one
 * name per regex set, when STEERKIT_LLAMA_TOKENIZE names the binary; skipped without it. Each text is
 * passed as a file (`-f`, `--no-escape`) so its bytes reach llama.cpp unchanged.
 */
const llamaTokenize = process.env.STEERKIT_LLAMA_TOKENIZE;
describe("llama-tokenize (the pinned llama.cpp's tool) agrees with the recording", () => {
  test.skipIf(!llamaTokenize).each(representatives)("%s", (pre) => {
    const vocab = join(dir, `live-${pre}.gguf`);
    writeFileSync(vocab, preVocabGguf(pre));
    const file = join(dir, `live-${pre}.txt`);
    const run = (flags: string[]): number[] => {
      const p = Bun.spawnSync([llamaTokenize!, "-m", vocab, "-f", file, "--no-escape", "--ids", "--log-disable", ...flags]);
      if (p.exitCode !== 0) throw new Error(`llama-tokenize exited ${p.exitCode}: ${p.stderr.toString()}`);
      return JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!);
    };
    // The whole multilingual text and the paragraphs richest in what split regexes disagree on.
    for (const r of want(pre).filter((r, i, all) => i === all.length - 1 || /Numbers:|Mixed:|हिन्दी|中文|Newlines:|Special-token/.test(r.text))) {
      writeFileSync(file, r.text);
      expect({ text: r.text, ids: run(["--no-parse-special"]) }).toEqual({ text: r.text, ids: r.ids });
      expect({ text: r.text, ids: run([]) }).toEqual({ text: r.text, ids: r.idsSpecial });
    }
  }, 60_000);
});
