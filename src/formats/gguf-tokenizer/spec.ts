/**
 * The tokenizer as llama.cpp sees it, in one plain object: the reader (read-spec.ts) fills it from
 * GGUF metadata with llama.cpp's defaults applied, and everything downstream (tokenizer.json,
 * the runtime tokenizer) reads only this, never the GGUF again. Keeping it a plain readonly value
 * is what lets `ggufToHfTokenizer` accept either a file or an already-read spec.
 */
import type { GgufFile } from "../gguf.ts";

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
  /** Tokens after which llama.cpp drops whitespace when splitting text at special tokens (attribute RSTRIP; Phi-3). */
  readonly rstripIds: readonly number[];
  /** Tokens before which it drops whitespace (attribute LSTRIP; `<mask>` of some BERT-style vocabularies). */
  readonly lstripIds: readonly number[];
  readonly padId: number | null;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly addSpacePrefix: boolean;
  readonly cleanSpaces: boolean;
  readonly ignoreMerges: boolean;
  /** BPE over raw UTF-8 with spaces as ▁ and <0xXX> byte tokens (Gemma 4), not GPT-2's byte-level BPE. */
  readonly escapeWhitespaces: boolean;
  readonly chatTemplate: string | null;
}

/** Plain JSON objects: write them with `JSON.stringify`, or pass them to `new Tokenizer(json, config)`. */
export interface HfTokenizerFiles {
  readonly tokenizerJson: Record<string, unknown>;
  readonly tokenizerConfig: Record<string, unknown>;
}

/** The part of a parsed GGUF the tokenizer reads: its metadata, and its path for error messages. */
export type GgufLike = Pick<GgufFile, "path" | "metadata">;

export const SPACE_MARK = "\u2581"; // ▁, SentencePiece's visible space
