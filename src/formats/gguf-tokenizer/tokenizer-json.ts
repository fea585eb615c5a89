/**
 * {@link GgufTokenizerSpec} -> Hugging Face `tokenizer.json` + `tokenizer_config.json`. The output
 * follows HF's own converters (`LlamaConverter` for SentencePiece: Prepend/Replace normalizers,
 * byte-fallback BPE; ByteLevel BPE with Split pre-tokenizers for gpt2; for Gemma 4's BPE a Replace
 * normalizer, a newline Split and byte-fallback BPE), so other HF consumers see what they expect.
 * The split regexes are the ones llama.cpp runs (pre-tokenizers.ts), so that a consumer of the files
 * tokenizes as the GGUF does in llama.cpp; where llama.cpp's decoding differs at runtime, tokenizer.ts
 * corrects for it instead of bending the files.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { PRE_TOKENIZERS } from "./pre-tokenizers.ts";
import { readTokenizerSpec } from "./read-spec.ts";
import { SPACE_MARK, TokenType, type GgufLike, type GgufTokenizerSpec, type HfTokenizerFiles } from "./spec.ts";
import { memoSpmMerges } from "./spm-merges.ts";

interface AddedTokenJson {
  id: number;
  content: string;
  single_word: boolean;
  lstrip: boolean;
  rstrip: boolean;
  normalized: boolean;
  special: boolean;
}

/**
 * Tokens that llama.cpp splits out of text before tokenizing: control, unknown and user-defined; and,
 * for Gemma 4's pre-tokenizer, the tokens made only of newlines, which llama.cpp takes whole when a newline run
 * spells one (a run longer than the longest such token is where the two can differ: see the README).
 */
function addedTokens(spec: GgufTokenizerSpec, includeSpecial: boolean): AddedTokenJson[] {
  const out: AddedTokenJson[] = [];
  const lstrip = new Set(spec.lstripIds);
  const rstrip = new Set(spec.rstripIds);
  const newlineRunsWhole = spec.pre !== null && PRE_TOKENIZERS[spec.pre]?.newlineRunsWhole === true;
  spec.types.forEach((type, id) => {
    const special = type === TokenType.CONTROL || type === TokenType.UNKNOWN;
    const newlineRun = newlineRunsWhole && type === TokenType.NORMAL && /^\n+$/.test(spec.tokens[id]!);
    if (!(special && includeSpecial) && type !== TokenType.USER_DEFINED && !newlineRun) return;
    out.push({ id, content: spec.tokens[id]!, single_word: false, lstrip: lstrip.has(id), rstrip: rstrip.has(id), normalized: false, special });
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

export interface BuildOptions {
  /** Split control/unknown tokens out of text (llama.cpp `parse_special`). HF always does; default true. */
  readonly parseSpecial?: boolean;
  /**
   * Put llama.cpp's space clean-up in the decoder (where the vocabulary has it). Default true; the
   * runtime tokenizer turns it off because it also prints single tokens, which llama.cpp never cleans.
   */
  readonly cleanUpInDecoder?: boolean;
}

/**
 * llama.cpp's `clean_spaces` pass of detokenize (llama-vocab.cpp: " ?", " !", " .", " ," lose their
 * space, then " ' " becomes "'", then " 's", " 'm", " 're", " 've" lose theirs), as `Replace`
 * decoders in the same order. HF's own `clean_up_tokenization_spaces` differs (it also joins
 * " n't"), so the config turns it off and any consumer of the files decodes as llama.cpp does.
 */
const LLAMA_CLEAN_UP: readonly (readonly [string, string])[] = [
  [" ?", "?"], [" !", "!"], [" .", "."], [" ,", ","],
  [" ' ", "'"],
  [" 's", "'s"], [" 'm", "'m"], [" 're", "'re"], [" 've", "'ve"],
];

export function buildTokenizerJson(spec: GgufTokenizerSpec, options: BuildOptions = {}): Record<string, unknown> {
  const parseSpecial = options.parseSpecial ?? true;
  const cleanUp = spec.cleanSpaces && (options.cleanUpInDecoder ?? true);
  const unk = spec.unkId !== null ? spec.tokens[spec.unkId]! : null;
  const spaceMarkDecoders: Record<string, unknown>[] = [
    { type: "Replace", pattern: { String: SPACE_MARK }, content: " " },
    { type: "ByteFallback" },
    { type: "Fuse" },
  ];
  const cleanUpDecoders = LLAMA_CLEAN_UP.map(([pattern, content]) => ({ type: "Replace", pattern: { String: pattern }, content }));
  if (spec.kind === "spm") {
    const normalizers: Record<string, unknown>[] = [];
    if (spec.addSpacePrefix) normalizers.push({ type: "Prepend", prepend: SPACE_MARK });
    normalizers.push({ type: "Replace", pattern: { String: " " }, content: SPACE_MARK });
    const decoders = [...spaceMarkDecoders];
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
  const bpeModel = (byteFallback: boolean) => ({
    type: "BPE",
    dropout: null,
    unk_token: unk,
    continuing_subword_prefix: null,
    end_of_word_suffix: null,
    fuse_unk: false,
    byte_fallback: byteFallback,
    ignore_merges: spec.ignoreMerges,
    vocab: vocabObject(spec.tokens),
    merges: spec.merges.map(([a, b]) => [a, b]),
  });
  const splits = (regexes: readonly string[]) => regexes.map((regex) => ({ type: "Split", pattern: { Regex: regex }, behavior: "Isolated", invert: false }));
  if (spec.escapeWhitespaces) {
    // Gemma 4: as llama.cpp, spaces -> ▁, split at newline runs, BPE over characters, <0xXX> bytes for the rest.
    return {
      version: "1.0",
      truncation: null,
      padding: null,
      added_tokens: addedTokens(spec, parseSpecial),
      normalizer: { type: "Replace", pattern: { String: " " }, content: SPACE_MARK },
      pre_tokenizer: { type: "Sequence", pretokenizers: splits(info.regexes) },
      post_processor: postProcessor(spec),
      decoder: { type: "Sequence", decoders: [...spaceMarkDecoders, ...(cleanUp ? cleanUpDecoders : [])] },
      model: bpeModel(true),
    };
  }
  const preTokenizer = {
    type: "Sequence",
    pretokenizers: [...splits(info.regexes), { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: false }],
  };
  return {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: addedTokens(spec, parseSpecial),
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: postProcessor(spec),
    decoder: cleanUp
      ? {
          type: "Sequence",
          decoders: [
            { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: true },
            { type: "Fuse" }, // one string, so a clean-up pattern spanning two tokens is seen
            ...cleanUpDecoders,
          ],
        }
      : { type: "ByteLevel", add_prefix_space: false, trim_offsets: false, use_regex: true },
    model: bpeModel(false),
  };
}

export function buildTokenizerConfig(spec: GgufTokenizerSpec): Record<string, unknown> {
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
    // llama.cpp's clean-up, where the vocabulary has one, is in the decoder (LLAMA_CLEAN_UP); HF's would differ.
    clean_up_tokenization_spaces: false,
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
