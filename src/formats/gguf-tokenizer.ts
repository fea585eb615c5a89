/**
 * GGUF tokenizer metadata -> Hugging Face `tokenizer.json` + `tokenizer_config.json`, and a
 * {@link GgufTokenizer} that encodes and decodes exactly as llama.cpp does.
 *
 * Why convert instead of porting llama.cpp's tokenizers: `@huggingface/tokenizers` is a maintained
 * implementation of the same algorithms, and the ONNX side of the project reads `tokenizer.json`
 * anyway, so one conversion serves both the converter (`steerkit convert`) and the reference backend.
 *
 * Two GGUF tokenizer models are supported:
 * - `llama` (SentencePiece). llama.cpp's SPM tokenizer repeatedly merges the adjacent pair whose
 *   concatenation is the highest-scoring vocab piece, then falls back to `<0xXX>` byte tokens. That
 *   is a BPE whose merge ranks are the pieces' scores, which is exactly how HF's `LlamaConverter`
 *   builds its BPE model (merges derived from the vocab, ordered by score, byte fallback), with a
 *   `▁` prefix (`add_space_prefix`) and spaces replaced by `▁`.
 * - `gpt2` (byte-level BPE) with `tokenizer.ggml.merges`; `tokenizer.ggml.pre` picks the split regexes.
 *
 * Where HF's decode and llama.cpp's detokenize disagree (which leading space is dropped, which
 * token kinds print nothing, its space clean-up rules), {@link GgufTokenizer.decode} follows llama.cpp;
 * the emitted `tokenizer.json` follows HF's own converters so other HF consumers see what they expect.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Tokenizer } from "@huggingface/tokenizers";
import { GgufError, type GgufFile, type GgufValue } from "./gguf.ts";

/** GGUF `tokenizer.ggml.token_type` values (llama.cpp `llama_token_type`). */
export const TokenType = {
  UNDEFINED: 0,
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

export type TokenizerKind = "spm" | "bpe";

/** Everything llama.cpp reads about a tokenizer, with llama.cpp's defaults filled in. */
export interface GgufTokenizerSpec {
  readonly kind: TokenizerKind;
  /** `tokenizer.ggml.model` as written in the file. */
  readonly model: string;
  /** `tokenizer.ggml.pre` (BPE only; "default" when absent). */
  readonly pre: string | null;
  readonly tokens: readonly string[];
  readonly scores: readonly number[] | null;
  readonly types: readonly number[];
  /** BPE merges as pairs, in rank order (empty for SPM). */
  readonly merges: readonly (readonly [string, string])[];
  readonly bosId: number | null;
  readonly eosId: number | null;
  readonly eotId: number | null;
  readonly eomId: number | null;
  /** Tokens that end generation, as llama.cpp's `llama_vocab_is_eog` decides (EOS, EOT, EOM and text rules). */
  readonly eogIds: readonly number[];
  readonly unkId: number | null;
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  readonly ignoreMerges: boolean;
  readonly chatTemplate: string | null;
}

/** Plain JSON objects: write them with `JSON.stringify`, or pass them to `new Tokenizer(json, config)`. */
export interface HfTokenizerFiles {
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
}

type GgufLike = Pick<GgufFile, "path" | "metadata">;

const SPACE_MARK = "\u2581"; // ▁, SentencePiece's visible space

/**
 * Split regexes per `tokenizer.ggml.pre`, as in the models' own `tokenizer.json` (Oniguruma syntax,
 * which @huggingface/tokenizers translates). Each list is applied in order, each split isolating its
 * matches, then bytes are mapped GPT-2 style. `null` means "GPT-2's ByteLevel regex".
 */
const GPT2_REGEX = null;
const CONTRACTIONS = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";
const LLAMA3_REGEX = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const QWEN2_REGEX = `${CONTRACTIONS}|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const GPT2_BODY = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const UPPER = "[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]";
const LOWER = "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]";
const TEKKEN_REGEX = `[^\\r\\n\\p{L}\\p{N}]?${UPPER}*${LOWER}+|[^\\r\\n\\p{L}\\p{N}]?${UPPER}+${LOWER}*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const GPT4O_REGEX = `[^\\r\\n\\p{L}\\p{N}]?${UPPER}*${LOWER}+${CONTRACTIONS}?|[^\\r\\n\\p{L}\\p{N}]?${UPPER}+${LOWER}*${CONTRACTIONS}?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+`;
const DEEPSEEK3_REGEXES = [
  "\\p{N}{1,3}",
  "[一-龥぀-ゟ゠-ヿ]+",
  "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
];
const DEEPSEEK_CODER_REGEXES = ["[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"];
const BLOOM_REGEX = " ?[^(\\s|.,!?…。，、।۔،)]+";
const DIGITS_THEN_GPT2 = ["\\p{N}", GPT2_BODY];

interface PreTokenizerInfo {
  readonly regexes: readonly string[] | typeof GPT2_REGEX;
  readonly ignoreMerges?: boolean;
  readonly cleanSpaces?: boolean;
  readonly addBos?: boolean;
}

/**
 * `tokenizer.ggml.pre` -> split regexes and the flags llama.cpp sets for it (llama-vocab.cpp).
 * Every entry is checked against llama.cpp's own tokenizer in test/formats/gguf-tokenizer.test.ts.
 */
const PRE_TOKENIZERS: Record<string, PreTokenizerInfo> = {
  // llama.cpp's fallback when a converter did not recognise the tokenizer.
  default: { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|]+", GPT2_BODY, "\\p{N}+", "[0-9][0-9][0-9]"] },
  "gpt-2": { regexes: GPT2_REGEX },
  "phi-2": { regexes: GPT2_REGEX },
  mpt: { regexes: GPT2_REGEX },
  olmo: { regexes: GPT2_REGEX },
  jais: { regexes: GPT2_REGEX },
  "roberta-bpe": { regexes: GPT2_REGEX },
  starcoder: { regexes: DIGITS_THEN_GPT2 },
  refact: { regexes: DIGITS_THEN_GPT2 },
  codeshell: { regexes: DIGITS_THEN_GPT2 },
  exaone: { regexes: DIGITS_THEN_GPT2 },
  "minerva-7b": { regexes: DIGITS_THEN_GPT2 },
  smollm: { regexes: DIGITS_THEN_GPT2, cleanSpaces: false },
  "command-r": { regexes: DIGITS_THEN_GPT2, cleanSpaces: false },
  falcon: { regexes: ["[\\p{P}\\$\\+<=>\\^~\\|`]+", GPT2_BODY, "[0-9][0-9][0-9]"] },
  llama3: { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true },
  "llama-v3": { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true },
  "llama-bpe": { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true },
  falcon3: { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true },
  pixtral: { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true },
  dbrx: { regexes: [LLAMA3_REGEX] },
  "smaug-bpe": { regexes: [LLAMA3_REGEX] },
  qwen2: { regexes: [QWEN2_REGEX], cleanSpaces: false },
  "deepseek-r1-qwen": { regexes: [QWEN2_REGEX], cleanSpaces: false },
  stablelm2: { regexes: [QWEN2_REGEX] },
  tekken: { regexes: [TEKKEN_REGEX], cleanSpaces: false, ignoreMerges: true, addBos: true },
  "gpt-4o": { regexes: [GPT4O_REGEX], cleanSpaces: false },
  llama4: { regexes: [GPT4O_REGEX], cleanSpaces: false },
  "deepseek-v3": { regexes: DEEPSEEK3_REGEXES, cleanSpaces: false },
  "deepseek-coder": { regexes: DEEPSEEK_CODER_REGEXES, cleanSpaces: false },
  bloom: { regexes: [BLOOM_REGEX] },
  "gpt3-finnish": { regexes: [BLOOM_REGEX] },
  "poro-chat": { regexes: [BLOOM_REGEX], cleanSpaces: false },
  viking: { regexes: [BLOOM_REGEX, "\\p{N}"], cleanSpaces: false },
};

/** The `tokenizer.ggml.pre` values this module converts. */
export const SUPPORTED_BPE_PRE_TOKENIZERS: readonly string[] = Object.keys(PRE_TOKENIZERS);

// ---- reading the GGUF metadata ---------------------------------------------------------------

function fail(file: GgufLike, reason: string): never {
  throw new GgufError(file.path, reason);
}

/**
 * A special-token id as llama.cpp reads it: the key when it names a token of the vocabulary, else the
 * default (llama.cpp warns "bad special token" and keeps the default, e.g. for -1 stored as 4294967295),
 * and a default outside the vocabulary means none.
 */
function specialId(file: GgufLike, key: string, fallback: number | null, nTokens: number): number | null {
  const base = fallback !== null && fallback < nTokens ? fallback : null;
  const v = file.metadata.get(key);
  if (v === undefined) return base;
  const n = typeof v === "bigint" ? Number(v) : v;
  if (typeof n !== "number" || !Number.isInteger(n)) fail(file, `metadata "${key}" must be a token id, got ${JSON.stringify(String(v))}`);
  return n >= 0 && n < nTokens ? n : base;
}

// Token texts llama.cpp recognises whatever the file says (llama-vocab.cpp, "auto-detect special
// tokens by text"): it forces them to control tokens and ends generation on some of them.
const EOT_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"];
const FIM_TEXTS = {
  pre: ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
  suf: ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
  mid: ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"],
  pad: ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
  rep: ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
  sep: ["<|file_sep|>"],
} as const;
const EOG_TEXTS = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]);
const FORCED_USER_DEFINED = new Set(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]);

interface SpecialTokens {
  eotId: number | null;
  eomId: number | null;
  eogIds: number[];
}

/** Apply llama.cpp's text-based special-token rules to `types` (in place); returns EOT/EOM/EOG. */
function detectSpecialTokens(
  tokens: readonly string[],
  types: number[],
  ids: { eos: number | null; eot: number | null; eom: number | null; fim: Record<keyof typeof FIM_TEXTS, number | null> },
): SpecialTokens {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.set(t, i)); // a later duplicate wins, as in llama.cpp's token_to_id
  const control = (id: number) => {
    if (types[id] !== TokenType.CONTROL) types[id] = TokenType.CONTROL;
  };
  // llama.cpp walks an unordered map here; when several candidates exist we take the first in list order.
  const find = (texts: readonly string[]): number | null => {
    for (const t of texts) {
      const id = idOf.get(t);
      if (id !== undefined) return id;
    }
    return null;
  };
  let eot = ids.eot;
  if (eot === null && (eot = find(EOT_TEXTS)) !== null) control(eot);
  let eom = ids.eom;
  if (eom === null && (eom = idOf.get("<|eom_id|>") ?? null) !== null) control(eom);
  const fim = { ...ids.fim };
  for (const k of Object.keys(FIM_TEXTS) as (keyof typeof FIM_TEXTS)[]) {
    if (fim[k] === null && (fim[k] = find(FIM_TEXTS[k])) !== null) control(fim[k]!);
  }
  const eog = new Set<number>();
  for (const id of [fim.pad, fim.rep, fim.sep]) if (id !== null) eog.add(id);
  for (const [text, id] of idOf) {
    if (EOG_TEXTS.has(text)) {
      eog.add(id);
      control(id);
    }
  }
  for (const [text, id] of idOf) if (FORCED_USER_DEFINED.has(text)) types[id] = TokenType.USER_DEFINED;
  for (const id of [ids.eos, eot, eom]) if (id !== null) eog.add(id);
  const textOf = (id: number) => tokens[id]!;
  const eogTexts = new Set([...eog].map(textOf));
  // gpt-oss style vocabularies: <|end|> ends a message, not the generation.
  if ((eogTexts.has("<|return|>") && eogTexts.has("<|call|>") && eogTexts.has("<|end|>")) || (eogTexts.has("<|call|>") && eogTexts.has("<|flush|>") && eogTexts.has("<|end|>"))) {
    for (const id of eog) if (textOf(id) === "<|end|>") (eog.delete(id), (types[id] = TokenType.USER_DEFINED));
  }
  if (eogTexts.has("<|tool_response>") && eogTexts.has("</s>")) {
    for (const id of eog) if (textOf(id) === "</s>") (eog.delete(id), (types[id] = TokenType.NORMAL));
  }
  return { eotId: eot, eomId: eom, eogIds: [...eog].sort((a, b) => a - b) };
}

function optionalBool(file: GgufLike, key: string, fallback: boolean): boolean {
  const v = file.metadata.get(key);
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") fail(file, `metadata "${key}" must be a bool, got ${JSON.stringify(String(v))}`);
  return v;
}

function stringArray(file: GgufLike, key: string): string[] | null {
  const v = file.metadata.get(key);
  if (v === undefined) return null;
  if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) fail(file, `metadata "${key}" must be an array of strings`);
  return v as string[];
}

function numberArray(file: GgufLike, key: string, length: number): number[] | null {
  const v = file.metadata.get(key);
  if (v === undefined) return null;
  if (!Array.isArray(v)) fail(file, `metadata "${key}" must be an array of numbers`);
  if (v.length !== length) fail(file, `metadata "${key}" has ${v.length} entries, expected one per token (${length})`);
  return (v as GgufValue[]).map((x, i) => {
    const n = typeof x === "bigint" ? Number(x) : x;
    if (typeof n !== "number") fail(file, `metadata "${key}"[${i}] must be a number, got ${typeof x}`);
    return n;
  });
}

/** Read and check a GGUF's tokenizer metadata, applying llama.cpp's defaults. */
export function readTokenizerSpec(file: GgufLike): GgufTokenizerSpec {
  const modelValue = file.metadata.get("tokenizer.ggml.model");
  if (typeof modelValue !== "string") fail(file, `metadata "tokenizer.ggml.model" is missing: the file has no tokenizer`);
  const model = modelValue as string;
  let kind: TokenizerKind;
  if (model === "llama") kind = "spm";
  else if (model === "gpt2") kind = "bpe";
  else {
    fail(file, `tokenizer model "${model}" is not supported (supported: "llama" = SentencePiece, "gpt2" = byte-level BPE)`);
  }

  const tokens = stringArray(file, "tokenizer.ggml.tokens");
  if (!tokens || tokens.length === 0) fail(file, `metadata "tokenizer.ggml.tokens" is missing or empty`);
  const n = tokens!.length;
  const scores = numberArray(file, "tokenizer.ggml.scores", n);
  const types = numberArray(file, "tokenizer.ggml.token_type", n) ?? new Array<number>(n).fill(TokenType.NORMAL);

  let pre: string | null = null;
  let merges: [string, string][] = [];
  let addBos: boolean;
  let addSpacePrefix: boolean;
  let cleanSpaces: boolean;
  let ignoreMerges = false;
  if (kind! === "spm") {
    addBos = true;
    addSpacePrefix = true;
    cleanSpaces = false;
    if (!types.some((t) => t === TokenType.BYTE)) {
      // llama.cpp looks bytes up as <0xXX> tokens; without them unknown characters cannot be encoded.
      fail(file, `SentencePiece vocabulary has no byte tokens (<0x00>..<0xFF>), which llama.cpp's tokenizer requires`);
    }
  } else {
    const preValue = file.metadata.get("tokenizer.ggml.pre");
    pre = typeof preValue === "string" && preValue.length > 0 ? preValue : "default";
    const info = PRE_TOKENIZERS[pre];
    if (!info) {
      fail(file, `BPE pre-tokenizer "${pre}" (tokenizer.ggml.pre) is not supported (supported: ${Object.keys(PRE_TOKENIZERS).join(", ")})`);
    }
    addBos = info!.addBos ?? false;
    addSpacePrefix = false;
    cleanSpaces = info!.cleanSpaces ?? true;
    ignoreMerges = info!.ignoreMerges ?? false;
    const raw = stringArray(file, "tokenizer.ggml.merges");
    if (!raw) fail(file, `metadata "tokenizer.ggml.merges" is missing: a "gpt2" tokenizer needs its BPE merges`);
    merges = raw!.map((m, i) => {
      // As llama.cpp does: split at the first space after the first character (a merge may start with a space).
      const at = m.indexOf(" ", 1);
      if (at < 0) fail(file, `metadata "tokenizer.ggml.merges"[${i}] is "${m}", expected "left right"`);
      return [m.slice(0, at), m.slice(at + 1)] as [string, string];
    });
  }
  addBos = optionalBool(file, "tokenizer.ggml.add_bos_token", addBos!);
  const addEos = optionalBool(file, "tokenizer.ggml.add_eos_token", false);
  addSpacePrefix = optionalBool(file, "tokenizer.ggml.add_space_prefix", addSpacePrefix!);

  const spm = kind! === "spm";
  const bosId = specialId(file, "tokenizer.ggml.bos_token_id", spm ? 1 : 11, n);
  const eosId = specialId(file, "tokenizer.ggml.eos_token_id", spm ? 2 : 11, n);
  const unkId = specialId(file, "tokenizer.ggml.unknown_token_id", spm ? 0 : null, n);
  const padId = specialId(file, "tokenizer.ggml.padding_token_id", null, n);
  if (addBos && bosId === null) fail(file, `tokenizer adds a BOS token (add_bos_token) but has no usable bos_token_id`);
  if (addEos && eosId === null) fail(file, `tokenizer adds an EOS token (add_eos_token) but has no usable eos_token_id`);
  const fimId = (name: string) => specialId(file, `tokenizer.ggml.fim_${name}_token_id`, null, n);
  const special = detectSpecialTokens(tokens!, types, {
    eos: eosId,
    eot: specialId(file, "tokenizer.ggml.eot_token_id", null, n),
    eom: specialId(file, "tokenizer.ggml.eom_token_id", null, n),
    fim: {
      pre: fimId("pre") ?? specialId(file, "tokenizer.ggml.prefix_token_id", null, n),
      suf: fimId("suf") ?? specialId(file, "tokenizer.ggml.suffix_token_id", null, n),
      mid: fimId("mid") ?? specialId(file, "tokenizer.ggml.middle_token_id", null, n),
      pad: fimId("pad"),
      rep: fimId("rep"),
      sep: fimId("sep"),
    },
  });
  const chat = file.metadata.get("tokenizer.chat_template");

  return {
    kind: kind!,
    model,
    pre,
    tokens: tokens!,
    scores,
    types,
    merges,
    bosId,
    eosId,
    eotId: special.eotId,
    eomId: special.eomId,
    eogIds: special.eogIds,
    unkId,
    padId,
    addBos,
    addEos,
    addSpacePrefix: addSpacePrefix!,
    cleanSpaces: cleanSpaces!,
    ignoreMerges,
    chatTemplate: typeof chat === "string" ? chat : null,
  };
}

// ---- building tokenizer.json -----------------------------------------------------------------

/**
 * SentencePiece merges as HF's `SentencePieceExtractor` derives them: every split of a vocab piece
 * into two vocab pieces is a merge, ranked by the merged piece's score (highest first). Ties keep
 * vocab order, which is what llama.cpp's leftmost-first tie-break gives for the usual
 * distinct-score vocabularies.
 */
export function spmMerges(tokens: readonly string[], scores: readonly number[] | null): [string, string][] {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.set(t, i));
  // Flat arrays rather than an object per merge: real vocabularies give tens of thousands of merges.
  const lefts: string[] = [];
  const rights: string[] = [];
  const mergeScores: number[] = [];
  const local: { left: string; right: string; leftId: number; rightId: number }[] = [];
  for (let id = 0; id < tokens.length; id++) {
    const piece = tokens[id]!;
    if (piece.length < 2 || idOf.get(piece) !== id) continue; // a duplicate text: llama.cpp resolves the text to its last id
    const score = scores ? scores[id]! : -id;
    local.length = 0;
    for (let k = 1; k < piece.length; k++) {
      // split between code points, as llama.cpp's symbols are whole UTF-8 characters
      const c = piece.charCodeAt(k);
      if (c >= 0xdc00 && c <= 0xdfff) continue;
      const left = piece.slice(0, k);
      const leftId = idOf.get(left);
      if (leftId === undefined) continue;
      const right = piece.slice(k);
      const rightId = idOf.get(right);
      if (rightId !== undefined) local.push({ left, right, leftId, rightId });
    }
    if (local.length > 1) local.sort((a, b) => a.leftId - b.leftId || a.rightId - b.rightId);
    for (const m of local) {
      lefts.push(m.left);
      rights.push(m.right);
      mergeScores.push(score);
    }
  }
  const order = Array.from({ length: lefts.length }, (_, i) => i);
  order.sort((a, b) => mergeScores[b]! - mergeScores[a]! || a - b);
  return order.map((i) => [lefts[i]!, rights[i]!]);
}

// GgufTokenizer builds three tokenizer.json variants of one spec; derive the merges once.
const spmMergesCache = new WeakMap<GgufTokenizerSpec, [string, string][]>();
function memoSpmMerges(spec: GgufTokenizerSpec): [string, string][] {
  let merges = spmMergesCache.get(spec);
  if (!merges) spmMergesCache.set(spec, (merges = spmMerges(spec.tokens, spec.scores)));
  return merges;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/** Tokens that llama.cpp splits out of text before tokenizing: control, unknown and user-defined. */
function addedTokens(spec: GgufTokenizerSpec, includeSpecial: boolean): AddedTokenJson[] {
  const out: AddedTokenJson[] = [];
  spec.types.forEach((type, id) => {
    const special = type === TokenType.CONTROL || type === TokenType.UNKNOWN;
    if (!(special && includeSpecial) && type !== TokenType.USER_DEFINED) return;
    out.push({ id, content: spec.tokens[id]!, single_word: false, lstrip: false, rstrip: false, normalized: false, special });
  });
  return out;
}

function vocabObject(tokens: readonly string[]): Record<string, number> {
  // A later duplicate text wins, as in llama.cpp's token_to_id.
  const vocab: Record<string, number> = Object.create(null);
  tokens.forEach((t, i) => (vocab[t] = i));
  return vocab;
}

function postProcessor(spec: GgufTokenizerSpec): Record<string, unknown> | null {
  const bos = spec.addBos && spec.bosId !== null ? spec.tokens[spec.bosId]! : null;
  const eos = spec.addEos && spec.eosId !== null ? spec.tokens[spec.eosId]! : null;
  if (!bos && !eos) return null;
  const seq = (id: "A" | "B", type_id: number) => ({ Sequence: { id, type_id } });
  const wrap = (id: "A" | "B", type_id: number) => [
    ...(bos ? [{ SpecialToken: { id: bos, type_id } }] : []),
    seq(id, type_id),
    ...(eos ? [{ SpecialToken: { id: eos, type_id } }] : []),
  ];
  const specialTokens: Record<string, unknown> = {};
  if (bos) specialTokens[bos] = { id: bos, ids: [spec.bosId], tokens: [bos] };
  if (eos) specialTokens[eos] = { id: eos, ids: [spec.eosId], tokens: [eos] };
  return { type: "TemplateProcessing", single: wrap("A", 0), pair: [...wrap("A", 0), ...wrap("B", 1)], special_tokens: specialTokens };
}

interface BuildOptions {
  /** Split control/unknown tokens out of text (llama.cpp `parse_special`). HF always does; default true. */
  readonly parseSpecial?: boolean;
}

function buildTokenizerJson(spec: GgufTokenizerSpec, options: BuildOptions = {}): Record<string, unknown> {
  const parseSpecial = options.parseSpecial ?? true;
  const unk = spec.unkId !== null ? spec.tokens[spec.unkId]! : null;
  if (spec.kind === "spm") {
    const normalizers: Record<string, unknown>[] = [];
    if (spec.addSpacePrefix) normalizers.push({ type: "Prepend", prepend: SPACE_MARK });
    normalizers.push({ type: "Replace", pattern: { String: " " }, content: SPACE_MARK });
    const decoders: Record<string, unknown>[] = [
      { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
      { type: "ByteFallback" },
      { type: "Fuse" },
    ];
    if (spec.addSpacePrefix) decoders.push({ type: "Strip", content: " ", start: 1, stop: 0 });
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: addedTokens(spec, parseSpecial),
      normalizer: { type: "Sequence", normalizers },
      pre_tokenizer: null,
      post_processor: postProcessor(spec),
      decoder: { type: "Sequence", decoders },
      model: {
        type: "BPE",
        dropout: null,
        unk_token: unk,
        continuing_subword_prefix: null,
        end_of_word_suffix: null,
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab: vocabObject(spec.tokens),
        merges: memoSpmMerges(spec),
      },
    };
  }
  const info = PRE_TOKENIZERS[spec.pre ?? "default"]!;
  const byteLevel = { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: info.regexes === GPT2_REGEX };
  const preTokenizer =
    info.regexes === GPT2_REGEX
      ? byteLevel
      : {
          type: "Sequence",
          pretokenizers: [
            ...info.regexes.map((regex) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false })),
            byteLevel,
          ],
        };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(spec, parseSpecial),
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor(spec),
    decoder: { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: unk,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: spec.ignoreMerges,
      vocab: vocabObject(spec.tokens),
      merges: spec.merges.map(([a, b]) => [a, b]),
    },
  };
}

function buildTokenizerConfig(spec: GgufTokenizerSpec): Record<string, unknown> {
  const text = (id: number | null) => (id === null ? null : spec.tokens[id]!);
  const addedTokensDecoder: Record<string, unknown> = {};
  for (const t of addedTokens(spec, true)) {
    const { id, ...rest } = t;
    addedTokensDecoder[String(id)] = rest;
  }
  return {
    tokenizer_class: spec.kind === "spm" ? "LlamaTokenizerFast" : "PreTrainedTokenizerFast",
    bos_token: text(spec.bosId),
    eos_token: text(spec.eosId),
    unk_token: text(spec.unkId),
    pad_token: text(spec.padId),
    add_bos_token: spec.addBos,
    add_eos_token: spec.addEos,
    clean_up_tokenization_spaces: spec.cleanSpaces,
    ...(spec.kind === "spm" ? { legacy: true, add_prefix_space: spec.addSpacePrefix } : {}),
    model_max_length: 1e30,
    added_tokens_decoder: addedTokensDecoder,
    ...(spec.chatTemplate !== null ? { chat_template: spec.chatTemplate } : {}),
  };
}

/** The HF tokenizer files equivalent to a GGUF's tokenizer. */
export function ggufToHfTokenizer(file: GgufLike | GgufTokenizerSpec): HfTokenizerFiles {
  const spec = "kind" in file ? file : readTokenizerSpec(file);
  return { tokenizerJson: buildTokenizerJson(spec), tokenizerConfig: buildTokenizerConfig(spec) };
}

/** Write `tokenizer.json` and `tokenizer_config.json` for a GGUF's tokenizer into `dir` (created if needed). */
export function writeHfTokenizer(file: GgufLike | GgufTokenizerSpec, dir: string): HfTokenizerFiles {
  const files = ggufToHfTokenizer(file);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "tokenizer.json"), JSON.stringify(files.tokenizerJson, null, 1));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify(files.tokenizerConfig, null, 2));
  return files;
}

// ---- a tokenizer that behaves like llama.cpp -------------------------------------------------

export interface EncodeOptions {
  /** Add BOS (and EOS) when the model's tokenizer adds them (llama.cpp `add_special`). Default true. */
  readonly addSpecial?: boolean;
  /** Turn control-token text such as `<s>` into that token (llama.cpp `parse_special`). Default false. */
  readonly parseSpecial?: boolean;
}

/**
 * Encode/decode as llama.cpp's `llama_tokenize` / `llama_detokenize(remove_special = true,
 * unparse_special = false)`, running the converted tokenizer in @huggingface/tokenizers.
 */
export class GgufTokenizer {
  private readonly withSpecial: Tokenizer;
  /** Encodes without splitting out control tokens, and decodes (with HF's leading-space strip undone where llama.cpp keeps it). */
  private readonly plain: Tokenizer;
  private readonly silent: Uint8Array;

  constructor(readonly spec: GgufTokenizerSpec) {
    const config = { ...buildTokenizerConfig(spec), clean_up_tokenization_spaces: false };
    this.withSpecial = new Tokenizer(buildTokenizerJson(spec, { parseSpecial: true }), config);
    this.plain = new Tokenizer(buildTokenizerJson(spec, { parseSpecial: false }), config);
    // Token kinds llama.cpp's token_to_piece prints as nothing (without unparse_special).
    this.silent = new Uint8Array(spec.tokens.length);
    spec.types.forEach((t, i) => {
      const printable = t === TokenType.NORMAL || t === TokenType.BYTE || t === TokenType.USER_DEFINED;
      this.silent[i] = printable ? 0 : 1;
    });
  }

  static fromGguf(file: GgufLike): GgufTokenizer {
    return new GgufTokenizer(readTokenizerSpec(file));
  }

  get vocabSize(): number {
    return this.spec.tokens.length;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial ?? true;
    const tok = options.parseSpecial ? this.withSpecial : this.plain;
    const ids = text.length === 0 ? [] : tok.encode(text, { add_special_tokens: false }).ids;
    if (addSpecial && this.spec.addBos) ids.unshift(this.spec.bosId!);
    if (addSpecial && this.spec.addEos) ids.push(this.spec.eosId!);
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    let start = 0;
    let end = ids.length;
    let removeSpace = this.spec.addSpacePrefix;
    // llama.cpp drops a leading BOS and then keeps the space the first word carries.
    if (this.spec.addBos && end > 0 && ids[0] === this.spec.bosId) {
      removeSpace = false;
      start = 1;
    }
    if (this.spec.addEos && end > start && ids[end - 1] === this.spec.eosId) end--;
    const kept: number[] = [];
    for (let i = start; i < end; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.silent.length) {
        throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.silent.length - 1})`);
      }
      if (this.silent[id]) {
        if (i === start) removeSpace = false; // the strip applies to the first token only, even if it prints nothing
        continue;
      }
      kept.push(id);
    }
    if (kept.length === 0) return "";
    // HF's SentencePiece decoder always strips one leading space (when the tokenizer adds one);
    // llama.cpp only strips it from the first token, and not after a dropped BOS.
    const text = this.hfDecode(kept, !removeSpace);
    return this.spec.cleanSpaces ? llamaCleanSpaces(text) : text;
  }

  /** The text of one token as llama.cpp's `token_to_piece` gives it (no strip, specials print nothing). */
  piece(id: number): string {
    if (this.silent[id]) return "";
    return this.hfDecode([id], true);
  }

  private hfDecode(ids: number[], keepLeadingSpace: boolean): string {
    const text = this.plain.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (!keepLeadingSpace || !this.spec.addSpacePrefix || this.spec.kind !== "spm") return text;
    const first = this.spec.tokens[ids[0]!]!;
    const startsWithSpace = first.startsWith(SPACE_MARK) || first.startsWith(" ") || first === "<0x20>";
    return startsWithSpace ? " " + text : text;
  }
}

/** llama.cpp's `clean_spaces` pass of detokenize (differs from HF's `clean_up_tokenization`: no " n't"). */
function llamaCleanSpaces(text: string): string {
  return text
    .replace(/ ([?!.,])/g, "$1")
    .replace(/ ' /g, "'")
    .replace(/ '(s|m|re|ve)/g, "'$1");
}
