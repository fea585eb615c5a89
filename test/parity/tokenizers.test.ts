/**
 * Tokenizer parity per vocabulary family (issue 9): for each test vocabulary of
 * test/fixtures/tokenizer/make-vocabs.ts (SentencePiece as Llama 2, Gemma and Phi-3 lay it out;
 * byte-level BPE with the gpt-2, llama-bpe and qwen2 pre-tokenizers; Gemma 4's SentencePiece-style BPE),
 * put on stories260K's tensors,
 * the ids of
 *   - the llama.cpp adapter (libllama's llama_tokenize through bun:ffi),
 *   - the ONNX adapter's text path (`steerkit convert`'s tokenizer.json in @huggingface/tokenizers),
 *   - GgufTokenizer (the reference backend's),
 * equal what the pinned llama.cpp build recorded (vocab-<family>-llamacpp.jsonl, see the fixtures'
 * README) on the corpus and the multilingual text (scripts, combining marks, emoji, code, whitespace
 * runs), with BOS, without it and with special-token parsing; and decoding gives llama.cpp's text
 * back on every backend.
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
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { GgufTokenizer, keepByteOrderMarks } from "../../src/formats/gguf-tokenizer.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { withTokenizerOf } from "../convert/gguf-edit.ts";
import { FAMILIES, type Family } from "../fixtures/tokenizer/make-vocabs.ts";
import { recorded } from "../fixtures/tokenizer/recorded.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/tokenizer");

const recordedFor = (family: Family) => recorded(`vocab-${family}-llamacpp.jsonl`);

const dir = mkdtempSync(join(tmpdir(), "steerkit-tokenizers-"));
const models = new Map<Family, { llama: Model; onnx: Model; gguf: GgufTokenizer }>();

beforeAll(async () => {
  const base = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));
  for (const family of FAMILIES) {
    const file = join(dir, `${family}.gguf`);
    writeFileSync(file, withTokenizerOf(base, new Uint8Array(readFileSync(join(FIXTURES, `vocab-${family}.gguf`)))));
    await convertGgufToOnnx(file, join(dir, family));
    models.set(family, {
      llama: await llamaCpp.load(file, { contextLength: 64, threads: 1 }),
      onnx: await onnx.load(join(dir, family), { contextLength: 64, threads: 1 }),
      gguf: GgufTokenizer.fromGguf(readGgufHeader(file)),
    });
  }
}, 120_000);

afterAll(() => {
  for (const m of models.values()) (m.llama.dispose(), m.onnx.dispose());
  rmSync(dir, { recursive: true, force: true });
});

for (const family of FAMILIES) {
  describe(family, () => {
    const rows = recordedFor(family);
    const get = () => models.get(family)!;

    test(`ids equal llama.cpp's on ${rows.length} texts: llama.cpp adapter, ONNX adapter (converted tokenizer.json), GgufTokenizer`, () => {
      const { llama, onnx, gguf } = get();
      for (const r of rows) {
        const want = { text: r.text, ids: r.ids, noBos: r.idsNoBos, special: r.idsSpecial };
        for (const [name, m] of [["llama.cpp", llama], ["onnx", onnx]] as const) {
          const got = { text: r.text, ids: m.tokenize(r.text), noBos: m.tokenize(r.text, { addBos: false }), special: m.tokenize(r.text, { special: true }) };
          expect({ backend: name, ...got }).toEqual({ backend: name, ...want });
        }
        const got = { text: r.text, ids: gguf.encode(r.text), noBos: gguf.encode(r.text, { addSpecial: false }), special: gguf.encode(r.text, { parseSpecial: true }) };
        expect(got).toEqual(want);
      }
    });

    test("the written tokenizer.json, as any Hugging Face consumer loads it: ids with its post-processor, decode", () => {
      const read = (name: string) => JSON.parse(readFileSync(join(dir, family, name), "utf8"));
      // keepByteOrderMarks: the library's ByteFallback decoder drops a decoded U+FEFF (see byte-order-mark.ts).
      const hf = keepByteOrderMarks(new Tokenizer(read("tokenizer.json"), read("tokenizer_config.json")));
      for (const r of rows) {
        // HF always splits special-token text out, so its ids are llama.cpp's with parse_special.
        expect({ text: r.text, ids: hf.encode(r.text).ids }).toEqual({ text: r.text, ids: r.idsSpecial });
        expect({ ids: r.idsNoBos, text: hf.decode(r.idsNoBos, { skip_special_tokens: true }) }).toEqual({ ids: r.idsNoBos, text: r.decodedNoBos });
      }
    });

    const roundTrips = rows.filter((r) => r.decodedNoBos === r.text);
    test(`text round-trips on both backends wherever it does in llama.cpp (${roundTrips.length} of ${rows.length} texts)`, () => {
      const { llama, onnx } = get();
      // The rest lose what llama.cpp loses too: control-token text printed as nothing, its space clean-up
      // (which Gemma 4's BPE applies too, 13 texts), a typed ▁ read back as a space (Gemma 4).
      expect(roundTrips.length).toBeGreaterThan(rows.length - 14);
      for (const r of roundTrips) {
        for (const [name, m] of [["llama.cpp", llama], ["onnx", onnx]] as const) {
          expect({ backend: name, text: m.detokenize(m.tokenize(r.text)) }).toEqual({ backend: name, text: r.text });
        }
      }
    });

    test("decoding gives llama.cpp's text on every backend", () => {
      const { llama, onnx, gguf } = get();
      for (const r of rows) {
        // GgufTokenizer.decode is llama_detokenize itself; the adapters drop a leading BOS first (their contract).
        expect({ ids: r.ids, text: gguf.decode(r.ids) }).toEqual({ ids: r.ids, text: r.decoded });
        expect({ ids: r.idsNoBos, text: gguf.decode(r.idsNoBos) }).toEqual({ ids: r.idsNoBos, text: r.decodedNoBos });
        for (const [name, m] of [["llama.cpp", llama], ["onnx", onnx]] as const) {
          expect({ backend: name, ids: r.ids, text: m.detokenize(r.ids) }).toEqual({ backend: name, ids: r.ids, text: r.decodedNoBos });
        }
      }
    });
  });
}

/**
 * The recordings checked live against the pinned llama.cpp's own `llama-tokenize` (vocab only), when
 * STEERKIT_LLAMA_TOKENIZE names the binary (build it from the pinned source: `make llama-tokenize`);
 * skipped without it. Each text is passed as a file (`-f`, `--no-escape`): the bytes reach llama.cpp unchanged.
 * (The tool parses special-token text by default; `--no-parse-special` gives the plain mode.)
 */
const llamaTokenize = process.env.STEERKIT_LLAMA_TOKENIZE;
describe("llama-tokenize (the pinned llama.cpp's tool) agrees with the recordings", () => {
  test.skipIf(!llamaTokenize).each([...FAMILIES])("%s", (family) => {
    const rows = recordedFor(family);
    // The multilingual paragraphs and the whole text (the last rows), plus a few corpus strings with special-token text.
    const picked = [...rows.slice(-12), ...rows.filter((r) => r.text.includes("<"))].slice(0, 24);
    const file = join(dir, `live-${family}.txt`);
    const run = (flags: string[]): number[] => {
      const p = Bun.spawnSync([llamaTokenize!, "-m", join(FIXTURES, `vocab-${family}.gguf`), "-f", file, "--no-escape", "--ids", "--log-disable", ...flags]);
      if (p.exitCode !== 0) throw new Error(`llama-tokenize exited ${p.exitCode}: ${p.stderr.toString()}`);
      return JSON.parse(p.stdout.toString().trim().split("\n").at(-1)!);
    };
    for (const r of picked) {
      writeFileSync(file, r.text);
      expect({ text: r.text, ids: run(["--no-parse-special"]) }).toEqual({ text: r.text, ids: r.ids });
      expect({ text: r.text, ids: run(["--no-parse-special", "--no-bos"]) }).toEqual({ text: r.text, ids: r.idsNoBos });
      expect({ text: r.text, ids: run([]) }).toEqual({ text: r.text, ids: r.idsSpecial });
    }
  }, 60_000);
});
