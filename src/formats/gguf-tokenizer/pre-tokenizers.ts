/**
 * The `tokenizer.ggml.pre` table: which split regexes and flags llama.cpp uses for each byte-level
 * BPE pre-tokenizer name. A table of data rather than code so that supporting a new model family is
 * one line, checked against llama.cpp's own tokenizer by test/formats/gguf-tokenizer.test.ts; both
 * the reader (flags, "is it supported") and the tokenizer.json builder (the regexes) read it.
 */

/**
 * Split regexes per `tokenizer.ggml.pre`, as in the models' own `tokenizer.json` (Oniguruma syntax,
 * which @huggingface/tokenizers translates). Each list is applied in order, each split isolating its
 * matches, then bytes are mapped GPT-2 style. `null` means "GPT-2's ByteLevel regex".
 */
export const GPT2_REGEX = null;
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

export interface PreTokenizerInfo {
  readonly regexes: readonly string[] | typeof GPT2_REGEX;
  readonly ignoreMerges?: boolean;
  readonly cleanSpaces?: boolean;
  readonly addBos?: boolean;
}

/**
 * `tokenizer.ggml.pre` -> split regexes and the flags llama.cpp sets for it (llama-vocab.cpp).
 * Every entry is checked against llama.cpp's own tokenizer in test/formats/gguf-tokenizer.test.ts.
 */
export const PRE_TOKENIZERS: Record<string, PreTokenizerInfo> = {
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
