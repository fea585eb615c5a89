import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { recorded } from "../fixtures/tokenizer/recorded.ts";
import { GgufError, readGgufHeader, type GgufValue } from "../../src/formats/gguf.ts";
import {
  GgufTokenizer,
  ggufToHfTokenizer,
  keepByteOrderMarks,
  readTokenizerSpec,
  spmMerges,
  SUPPORTED_BPE_PRE_TOKENIZERS,
  writeHfTokenizer,
} from "../../src/formats/gguf-tokenizer.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const FIXTURES = join(import.meta.dir, "../fixtures/tokenizer");
const gguf = readGgufHeader(MODEL);
const tok = GgufTokenizer.fromGguf(gguf);

describe("SentencePiece (tokenizer.ggml.model = llama) on stories260K", () => {
  test("reads the metadata with llama.cpp's defaults", () => {
    const spec = readTokenizerSpec(gguf);
    expect(spec.kind).toBe("spm");
    expect(spec.tokens.length).toBe(512);
    expect([spec.bosId, spec.eosId, spec.unkId, spec.padId]).toEqual([1, 2, 0, null]);
    expect([spec.addBos, spec.addEos, spec.addSpacePrefix]).toEqual([true, false, true]);
    expect(spec.chatTemplate).toBeNull();
  });

  test("known ids: 'Once upon a time' with BOS", () => {
    expect(tok.encode("Once upon a time")).toEqual([1, 403, 407, 261, 378]);
    expect(tok.encode("Once upon a time", { addSpecial: false })).toEqual([403, 407, 261, 378]);
    expect(tok.encode("")).toEqual([1]);
    expect(tok.encode("", { addSpecial: false })).toEqual([]);
  });

  // Recorded from llama.cpp itself (libllama of @node-llama-cpp/linux-x64 3.21.1): see fixtures/tokenizer/README.md.
  const cases = recorded("stories260K-llamacpp.jsonl");
  test(`matches llama.cpp's llama_tokenize on ${cases.length} recorded strings (plain, no BOS, parse_special)`, () => {
    for (const c of cases) {
      expect({ text: c.text, ids: tok.encode(c.text) }).toEqual({ text: c.text, ids: c.ids });
      expect({ text: c.text, ids: tok.encode(c.text, { addSpecial: false }) }).toEqual({ text: c.text, ids: c.idsNoBos });
      expect({ text: c.text, ids: tok.encode(c.text, { parseSpecial: true }) }).toEqual({ text: c.text, ids: c.idsSpecial });
    }
  });

  test("matches llama.cpp's llama_detokenize (remove_special, with and without BOS)", () => {
    for (const c of cases) {
      expect({ ids: c.ids, text: tok.decode(c.ids) }).toEqual({ ids: c.ids, text: c.decoded });
      expect({ ids: c.idsNoBos, text: tok.decode(c.idsNoBos) }).toEqual({ ids: c.idsNoBos, text: c.decodedNoBos });
    }
  });

  test("round-trips punctuation, digits, unicode (byte fallback) and whitespace", () => {
    const texts = [
      "Hello, world! How are you? I'm fine; thanks.",
      "Numbers: 0 12 345 6789 3.14 -2",
      "café 日本 😀 ☃",
      "tabs\tand\nnewlines  double",
    ];
    for (const text of texts) expect(tok.decode(tok.encode(text, { addSpecial: false }))).toBe(text);
    // A character outside the 512-token vocabulary is spelled as UTF-8 byte tokens <0xE6><0x97><0xA5>.
    const ids = tok.encode("日", { addSpecial: false });
    expect(ids.map((i) => tok.spec.tokens[i])).toEqual(["▁", "<0xE6>", "<0x97>", "<0xA5>"]);
  });

  test("special tokens: split out only with parseSpecial, never printed by decode", () => {
    expect(tok.encode("<s>x</s>", { parseSpecial: true, addSpecial: false })).toEqual([1, 410, 444, 2]);
    expect(tok.encode("<s>x</s>", { addSpecial: false })).not.toContain(1);
    expect(tok.decode([1, 403, 407, 2])).toBe(" Once upon"); // llama.cpp keeps the space after a dropped BOS
    expect(tok.decode([403, 407, 2, 261])).toBe("Once upon a");
    expect(tok.piece(432)).toBe(",");
    expect(tok.piece(2)).toBe("");
  });

  test("the emitted tokenizer.json runs in @huggingface/tokenizers like HF's LlamaConverter output", () => {
    const { tokenizerJson, tokenizerConfig } = ggufToHfTokenizer(gguf);
    const hf = new Tokenizer(tokenizerJson, tokenizerConfig);
    expect(hf.encode("Once upon a time").ids).toEqual([1, 403, 407, 261, 378]);
    expect(hf.encode("<s>x</s>", { add_special_tokens: false }).ids).toEqual([1, 410, 444, 2]);
    expect(hf.decode([1, 403, 407, 261, 378], { skip_special_tokens: true })).toBe("Once upon a time");
    expect(tokenizerConfig).toMatchObject({ bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>", add_bos_token: true, add_eos_token: false });
  });

  test("writeHfTokenizer writes both files and they load back", () => {
    const dir = mkdtempSync(join(tmpdir(), "steerkit-tok-"));
    try {
      writeHfTokenizer(gguf, join(dir, "sub"));
      const json = JSON.parse(readFileSync(join(dir, "sub", "tokenizer.json"), "utf8"));
      const config = JSON.parse(readFileSync(join(dir, "sub", "tokenizer_config.json"), "utf8"));
      expect(new Tokenizer(json, config).encode("Lily", { add_special_tokens: false }).ids).toEqual(tok.encode("Lily", { addSpecial: false }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a byte order mark spelled in byte tokens survives decoding (the library's ByteFallback drops it)", () => {
    const { tokenizerJson, tokenizerConfig } = ggufToHfTokenizer(gguf);
    const ids = tok.encode("a\ufeffb", { addSpecial: false });
    expect(ids.map((i) => tok.spec.tokens[i])).toContain("<0xEF>");
    // When this starts failing, @huggingface/tokenizers has fixed ByteFallback and keepByteOrderMarks can go.
    expect(new Tokenizer(tokenizerJson, tokenizerConfig).decode(ids)).toBe("ab");
    expect(keepByteOrderMarks(new Tokenizer(tokenizerJson, tokenizerConfig)).decode(ids)).toBe("a\ufeffb");
    expect(tok.decode(ids)).toBe("a\ufeffb");
  });

  test("spmMerges ranks merges by the merged piece's score", () => {
    expect(spmMerges(["a", "b", "c", "ab", "bc", "abc"], [0, 0, 0, -2, -1, -3])).toEqual([
      ["b", "c"],
      ["a", "b"],
      ["a", "bc"],
      ["ab", "c"],
    ]);
  });
});

// Synthetic byte-level BPE vocabularies (make-bpe-gguf.ts), recorded from llama.cpp like the SPM cases.
for (const variant of ["gpt2", "llama3"] as const) {
  describe(`byte-level BPE (tokenizer.ggml.model = gpt2, pre = ${variant === "gpt2" ? "gpt-2" : "llama-bpe"})`, () => {
    const file = readGgufHeader(join(FIXTURES, `bpe-${variant}.gguf`));
    const bpe = GgufTokenizer.fromGguf(file);
    const cases = recorded(`bpe-${variant}-llamacpp.jsonl`);

    const endOfText = bpe.spec.tokens.indexOf("<|endoftext|>");
    const user = bpe.spec.tokens.indexOf("<|user|>");

    test("reads merges, pre-tokenizer, special ids and the chat template", () => {
      const spec = bpe.spec;
      expect(spec.kind).toBe("bpe");
      expect(spec.merges.length).toBeGreaterThan(500);
      expect(spec.bosId).toBe(endOfText);
      // "</s>" is an ordinary merge in this vocabulary, but llama.cpp makes it a control, end-of-generation token by its text.
      const closeS = spec.tokens.indexOf("</s>");
      expect(closeS).toBeGreaterThan(255);
      expect(spec.types[closeS]).toBe(3);
      expect(spec.eogIds).toEqual([closeS, endOfText].sort((a, b) => a - b));
      expect(spec.eotId).toBe(endOfText);
      expect(spec.addBos).toBe(variant === "llama3"); // llama.cpp turns BOS on for llama3-style BPE
      expect(spec.chatTemplate).toContain("<|user|>");
      expect(ggufToHfTokenizer(file).tokenizerConfig.chat_template).toBe(spec.chatTemplate!);
    });

    test(`matches llama.cpp's tokenize and detokenize on ${cases.length} recorded strings`, () => {
      for (const c of cases) {
        expect({ text: c.text, ids: bpe.encode(c.text) }).toEqual({ text: c.text, ids: c.ids });
        expect({ text: c.text, ids: bpe.encode(c.text, { addSpecial: false }) }).toEqual({ text: c.text, ids: c.idsNoBos });
        expect({ text: c.text, ids: bpe.encode(c.text, { parseSpecial: true }) }).toEqual({ text: c.text, ids: c.idsSpecial });
        expect({ ids: c.ids, text: bpe.decode(c.ids) }).toEqual({ ids: c.ids, text: c.decoded });
      }
    });

    test("user-defined tokens are always split out; control tokens only with parseSpecial", () => {
      expect(bpe.encode("a<|user|>b", { addSpecial: false })).toContain(user);
      expect(bpe.encode("x<|endoftext|>", { addSpecial: false })).not.toContain(endOfText);
      expect(bpe.encode("x<|endoftext|>", { addSpecial: false, parseSpecial: true }).at(-1)).toBe(endOfText);
    });

    test("the emitted tokenizer.json round-trips text in @huggingface/tokenizers", () => {
      const { tokenizerJson, tokenizerConfig } = ggufToHfTokenizer(file);
      const hf = new Tokenizer(tokenizerJson, tokenizerConfig);
      const text = "Once upon a time, Lily (age 7) said: \"café 😀\".";
      const ids = hf.encode(text, { add_special_tokens: false }).ids;
      expect(ids).toEqual(bpe.encode(text, { addSpecial: false }));
      expect(hf.decode(ids)).toBe(text);
    });
  });
}

describe("byte-level BPE: every supported family of tokenizer.ggml.pre regexes against llama.cpp", () => {
  // Recorded from llama.cpp on bpe-<pre>.gguf files that differ from bpe-gpt2.gguf only in tokenizer.ggml.pre.
  const base = readGgufHeader(join(FIXTURES, "bpe-gpt2.gguf"));
  const rows: { text: string; ids: Record<string, number[]>; idsSpecial?: Record<string, number[]>; decoded?: Record<string, string> }[] = readFileSync(
    join(FIXTURES, "bpe-pre-llamacpp.jsonl"),
    "utf8",
  )
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const pres = Object.keys(rows[0]!.ids);
  test.each(pres)("pre = %s", (pre) => {
    expect(SUPPORTED_BPE_PRE_TOKENIZERS).toContain(pre);
    const metadata = new Map(base.metadata);
    metadata.set("tokenizer.ggml.pre", pre);
    const t = GgufTokenizer.fromGguf({ path: `bpe-${pre}.gguf`, metadata });
    for (const r of rows) {
      expect({ text: r.text, ids: t.encode(r.text) }).toEqual({ text: r.text, ids: r.ids[pre]! });
      expect({ text: r.text, ids: t.encode(r.text, { parseSpecial: true }) }).toEqual({ text: r.text, ids: r.idsSpecial?.[pre] ?? r.ids[pre]! });
      expect(t.decode(r.ids[pre]!)).toBe(r.decoded?.[pre] ?? r.text);
    }
  });
});

describe("bad tokenizer metadata", () => {
  const base = (entries: [string, GgufValue][]) => ({ path: "synthetic.gguf", metadata: new Map(entries) });
  test("an unsupported tokenizer model names the model and what is supported", () => {
    expect(() => readTokenizerSpec(base([["tokenizer.ggml.model", "t5"], ["tokenizer.ggml.tokens", ["a"]]]))).toThrow(
      /synthetic\.gguf.*tokenizer model "t5" is not supported/,
    );
  });
  test("no tokenizer at all", () => {
    expect(() => readTokenizerSpec(base([]))).toThrow(GgufError);
  });
  test("an unknown BPE pre-tokenizer", () => {
    const md = base([["tokenizer.ggml.model", "gpt2"], ["tokenizer.ggml.pre", "nonesuch"], ["tokenizer.ggml.tokens", ["a", "b"]], ["tokenizer.ggml.merges", ["a b"]]]);
    expect(() => readTokenizerSpec(md)).toThrow(/pre-tokenizer "nonesuch".*not supported/);
  });
  test("BPE without merges, scores of the wrong length, special ids outside the vocabulary", () => {
    expect(() => readTokenizerSpec(base([["tokenizer.ggml.model", "gpt2"], ["tokenizer.ggml.tokens", ["a"]]]))).toThrow(/merges" is missing/);
    expect(() =>
      readTokenizerSpec(base([["tokenizer.ggml.model", "llama"], ["tokenizer.ggml.tokens", ["a", "b"]], ["tokenizer.ggml.scores", [0]]])),
    ).toThrow(/scores" has 1 entries, expected one per token \(2\)/);
    // As llama.cpp does ("bad special token ... using default id"), an id outside the vocabulary falls
    // back to the default, and a default outside it means none: here BOS is then missing but required.
    const tiny = (bos: number): [string, GgufValue][] => [
      ["tokenizer.ggml.model", "llama"],
      ["tokenizer.ggml.tokens", ["<unk>", "<s>", "<0x00>"]],
      ["tokenizer.ggml.token_type", [2, 3, 6]],
      ["tokenizer.ggml.bos_token_id", bos],
    ];
    expect(readTokenizerSpec(base(tiny(7))).bosId).toBe(1);
    expect(readTokenizerSpec(base(tiny(0xffffffff))).bosId).toBe(1);
    expect(() =>
      readTokenizerSpec(base([["tokenizer.ggml.model", "llama"], ["tokenizer.ggml.tokens", ["<0x00>"]], ["tokenizer.ggml.token_type", [6]], ["tokenizer.ggml.bos_token_id", 7]])),
    ).toThrow(/adds a BOS token \(add_bos_token\) but has no usable bos_token_id/);
  });
});
