/**
 * GGUF tokenizer metadata -> {@link GgufTokenizerSpec}, applying llama.cpp's defaults (BOS/EOS ids,
 * add_bos per pre-tokenizer, space prefix) and its leniency: a special-token id outside the
 * vocabulary falls back to the default, as llama.cpp warns and continues. Anything llama.cpp itself
 * would reject, or that we cannot reproduce, fails here with a {@link GgufError} naming the key, so
 * the builder and the runtime tokenizer never see a half-valid spec.
 */
import { GgufError, type GgufValue } from "../gguf.ts";
import { PRE_TOKENIZERS, REFUSED_PRE_TOKENIZERS } from "./pre-tokenizers.ts";
import { detectSpecialTokens, stripAttributes } from "./special-tokens.ts";
import { TokenType, type GgufLike, type GgufTokenizerSpec, type TokenizerKind } from "./spec.ts";

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
  else if (model === "gpt2" || model === "gemma4") kind = "bpe";
  else {
    fail(file, `tokenizer model "${model}" is not supported (supported: "llama" = SentencePiece, "gpt2" = BPE, "gemma4" = Gemma 4's BPE)`);
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
  let escapeWhitespaces = false;
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
    // llama.cpp ignores the key for a "gemma4" model: its pre-tokenizer is always Gemma 4's.
    pre = model === "gemma4" ? "gemma4" : typeof preValue === "string" && preValue.length > 0 ? preValue : "default";
    const info = PRE_TOKENIZERS[pre];
    if (!info) {
      const why = REFUSED_PRE_TOKENIZERS[pre] ?? `the pinned llama.cpp does not know it either; supported: ${Object.keys(PRE_TOKENIZERS).join(", ")}`;
      fail(file, `BPE pre-tokenizer "${pre}" (tokenizer.ggml.pre) is not supported: ${why}`);
    }
    addBos = info!.addBos ?? false;
    addSpacePrefix = false;
    cleanSpaces = info!.cleanSpaces ?? true;
    ignoreMerges = info!.ignoreMerges ?? false;
    escapeWhitespaces = info!.escapeWhitespaces ?? false;
    // llama.cpp lets Kimi K2 (a tiktoken vocabulary) go without merges: every word is then spelled in single characters.
    const raw = stringArray(file, "tokenizer.ggml.merges") ?? (pre === "kimi-k2" ? [] : null);
    if (!raw) fail(file, `metadata "tokenizer.ggml.merges" is missing: a "gpt2" tokenizer needs its BPE merges`);
    merges = raw!.map((m, i) => {
      // As llama.cpp does: split at the first space after the first character (a merge may start with a space).
      const at = m.indexOf(" ", 1);
      if (at < 0) fail(file, `metadata "tokenizer.ggml.merges"[${i}] is "${m}", expected "left right"`);
      return [m.slice(0, at), m.slice(at + 1)] as [string, string];
    });
  }
  addBos = optionalBool(file, "tokenizer.ggml.add_bos_token", addBos!) || (pre !== null && PRE_TOKENIZERS[pre]!.forceBos === true);
  const addEos = optionalBool(file, "tokenizer.ggml.add_eos_token", false);
  addSpacePrefix = optionalBool(file, "tokenizer.ggml.add_space_prefix", addSpacePrefix!);

  const spm = kind! === "spm";
  // llama.cpp's default special ids: SentencePiece 1/2, "gpt2" 11/11 (GLM-4: no BOS), "gemma4" none.
  const bpeDefault = model === "gemma4" ? null : 11;
  const noDefaultBos = pre !== null && PRE_TOKENIZERS[pre]!.noDefaultBos === true;
  const bosId = specialId(file, "tokenizer.ggml.bos_token_id", spm ? 1 : noDefaultBos ? null : bpeDefault, n);
  const eosId = specialId(file, "tokenizer.ggml.eos_token_id", spm ? 2 : bpeDefault, n);
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
  const text = (key: string) => {
    const v = file.metadata.get(key);
    return typeof v === "string" ? v : "";
  };
  const strip = stripAttributes(tokens!, types, { model: text("general.name"), pre: pre ?? "", arch: text("general.architecture") });
  if ("missing" in strip) {
    fail(file, `general.name "${text("general.name")}" makes llama.cpp set Phi-3's token attributes, which need a token "${strip.missing}" the vocabulary lacks (llama.cpp refuses to load it)`);
  }

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
    rstripIds: strip.rstrip,
    lstripIds: strip.lstrip,
    addBos,
    addEos,
    addSpacePrefix: addSpacePrefix!,
    cleanSpaces: cleanSpaces!,
    ignoreMerges,
    escapeWhitespaces,
    chatTemplate: typeof chat === "string" ? chat : null,
  };
}
