/**
 * The `tokenizer.ggml.pre` table: which split regexes and flags llama.cpp uses for each BPE
 * pre-tokenizer name. A table of data rather than code so that supporting a new model family is
 * one line; both the reader (flags, "is it supported") and the tokenizer.json builder (the regexes)
 * read it, and test/parity/tokenizers-pre.test.ts checks every name against llama.cpp's recordings.
 *
 * The regexes reproduce what llama.cpp *runs*, which is not always the model's original
 * tokenizer.json. llama.cpp splits text in two ways (src/unicode.cpp):
 * - hand-written splitters for a few exact regexes (GPT-2, Llama 3, Qwen 2, Qwen 3.5, Kimi K2,
 *   AFMoE digits, newline runs): for these the original regex is written (or, for Kimi K2 and the
 *   digit groups, a regex equivalent to the hand-written code);
 * - `std::regex` for the rest, on a "collapsed" copy of the text where every non-ASCII character is
 *   replaced by one byte per Unicode category. There, every letter subcategory (`\p{Lu}`, `\p{Ll}`,
 *   ...) means any letter, `\d`/`\b` are ASCII, and llama.cpp's regex is its own adaptation of the
 *   original (e.g. GPT-4o's without `\p{M}`, so combining marks split words). For these the table
 *   holds llama.cpp's regex, read with Unicode categories (same meaning as the collapsed text), with
 *   `anyLetterCase` where it names letter subcategories and `[0-9]` for its ASCII `\d`.
 * The regexes are Oniguruma syntax (HF tokenizers' Rust), which @huggingface/tokenizers translates.
 */

/** Contractions as the original tokenizer.json writes them (llama.cpp's hand-written splitters agree). */
const CONTRACTIONS = String.raw`(?i:'s|'t|'re|'ve|'m|'ll|'d)`;
/** llama.cpp's case-insensitive contractions for std::regex, which has no `(?i:)`. */
const CONTRACTIONS_CS = String.raw`(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`;

const GPT2_BODY = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`;
/**
 * GPT-2's split as a Split rather than ByteLevel's own (`use_regex`): @huggingface/tokenizers runs that
 * one as a JavaScript regex, whose `\s` takes U+FEFF for whitespace and U+0085 not (Oniguruma's and
 * llama.cpp's the opposite); a Split regex is translated to Unicode White_Space first.
 */
const GPT2_REGEX = `${GPT2_BODY}|\\s+`;
const LLAMA3_REGEX = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN2_REGEX = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const QWEN35_REGEX = String.raw`${CONTRACTIONS}|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

/** llama.cpp's std::regex reads every letter subcategory as "any letter" (see the header). */
const anyLetterCase = (regex: string): string => regex.replace(/\\p\{L[ultmo]\}/g, String.raw`\p{L}`);

/**
 * GPT-4o / Tekken as llama.cpp adapts them: an "upper" letter is any letter but a-z, a "lower" one
 * any letter but A-Z (so case only splits ASCII words), and combining marks are not letters.
 */
const NOT_LOWER = String.raw`((?=[\p{L}])([^a-z]))`;
const NOT_UPPER = String.raw`((?=[\p{L}])([^A-Z]))`;
const TEKKEN_REGEX = String.raw`[^\r\n\p{L}\p{N}]?${NOT_LOWER}*${NOT_UPPER}+|[^\r\n\p{L}\p{N}]?${NOT_LOWER}+${NOT_UPPER}*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
const GPT4O_REGEX = String.raw`[^\r\n\p{L}\p{N}]?${NOT_LOWER}*${NOT_UPPER}+${CONTRACTIONS_CS}?|[^\r\n\p{L}\p{N}]?${NOT_LOWER}+${NOT_UPPER}*${CONTRACTIONS_CS}?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
/** Granite embedding multilingual (97m): GPT-4o's with combining marks counted as letters. */
const MARK_NOT_LOWER = String.raw`((?=[\p{L}\p{M}])([^a-z]))`;
const MARK_NOT_UPPER = String.raw`((?=[\p{L}\p{M}])([^A-Z]))`;
const GRANITE_MULTI_REGEX = String.raw`[^\r\n\p{L}\p{N}]?${MARK_NOT_LOWER}*${MARK_NOT_UPPER}+${CONTRACTIONS_CS}?|[^\r\n\p{L}\p{N}]?${MARK_NOT_LOWER}+${MARK_NOT_UPPER}*${CONTRACTIONS_CS}?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`;
/** Cohere's Tiny Aya: the original GPT-4o-style regex, whose case classes llama.cpp reads as any letter. */
const TINY_AYA_REGEX = anyLetterCase(
  String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+${CONTRACTIONS_CS}?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*${CONTRACTIONS_CS}?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
);
const YOUTU_REGEXES = [
  "[가-힣ㄱ-ㆎ]+|[！…“”‘’—：；，、-〿︰-﹏]+|[ㄅ-ㄯ]+|[一-龥぀-ゟ゠-ヿ]+",
  anyLetterCase(
    String.raw`[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+${CONTRACTIONS_CS}?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*${CONTRACTIONS_CS}?|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
  ),
];

/**
 * Digit runs cut into groups of three from the right (1234567 -> 1 234 567), as llama.cpp's
 * hand-written AFMoE splitter does, which it also runs for Tiny Aya's `\d{1,3}(?=(?:\d{3})*\b)`. Any
 * `\p{N}` counts. That splitter keeps the text before a digit run in one piece with the run's first
 * group ("x  1234" -> "x  1", "234"), which changes what the later regexes see (two spaces before a
 * number split in two), so the regex does the same: a match starts at the text's start or right after
 * a digit (which also keeps it linear: no retry inside a run of non-digits).
 */
const DIGITS_BY_THREE_FROM_RIGHT = String.raw`(?:\A|(?<=\p{N}))\P{N}*\p{N}{1,3}(?=(?:\p{N}{3})*(?!\p{N}))`;

const DEEPSEEK3_REGEXES = [
  String.raw`\p{N}{1,3}`,
  "[一-龥぀-ゟ゠-ヿ]+",
  String.raw`[!"#$%&'()*+,\-./:;<=>?@\[\\\]^_` + "`" + String.raw`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`,
];
/**
 * Regexes without `\p{..}` run on llama.cpp's text with every non-ASCII space replaced by U+000B (so
 * that `\s` sees it), which a literal class holding such a space (U+3000 in DeepSeek's ranges) can then
 * never match: written here as the class less the spaces.
 */
const NOT_SPACE = String.raw`(?!\s)`;
const CJK_RUN = `(?:${NOT_SPACE}[一-龥ࠀ-一가-퟿])+`;

// Escaped: these classes hold canonical singletons (U+1FD3, U+2126, U+212A...) that an editor's
// Unicode normalization would silently turn into other characters.
const DEEPSEEK_LLM_REGEXES = [
  "[\\r\\n]",
  "\\s?[A-Za-z\u00B5\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u01BA\u01BC-\u01BF\u01C4-\u0293\u0295-\u02AF\u0370-\u0373\u0376\u0377\u037B-\u037D\u037F\u0386\u0388-\u038A\u038C\u038E-\u03A1\u03A3-\u03F5\u03F7-\u0481\u048A-\u052F\u0531-\u0556\u10A0-\u10C5\u13A0-\u13F5\u13F8-\u13FD\u1C90-\u1CBA\u1CBD-\u1CBF\u1D00-\u1D2B\u1D6B-\u1D77\u1D79-\u1D9A\u1E00-\u1F15\u1F18-\u1F1D\u1F20-\u1F45\u1F48-\u1F4D\u1F50-\u1F57\u1F59\u1F5B\u1F5D\u1F5F-\u1F7D\u1F80-\u1FB4\u1FB6-\u1FBC\u1FBE\u1FC2-\u1FC4\u1FC6-\u1FCC\u1FD0-\u1FD3\u1FD6-\u1FDB\u1FE0-\u1FEC\u1FF2-\u1FF4\u1FF6-\u1FFC\u2102\u2107\u210A-\u2113\u2115\u2119-\u211D\u2124\u2126\u2128\u212A-\u212D\u212F-\u2134\u2139\u213C-\u213F\u2145-\u2149\u214E\u2183\u2184\u2C00-\u2C7B\u2C7E-\u2CE4\u2CEB-\u2CEE\u2CF2\u2CF3\uA640-\uA66D\uA680-\uA69B\uA722-\uA76F\uA771-\uA787\uA78B-\uA78E\uAB70-\uABBF\uFB00-\uFB06\uFB13-\uFB17\uFF21-\uFF3A\uFF41-\uFF5A\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
  "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3001-\u3002]+", // llama.cpp's \u3000-\u3002, less the space (see NOT_SPACE)
  "\\s+$",
  `(?:${NOT_SPACE}[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF])+`,
  "\\p{N}+",
];
const DEEPSEEK_CODER_REGEXES = [String.raw`[\r\n]`, String.raw`\s?\p{L}+`, String.raw`\s?\p{P}+`, CJK_RUN, String.raw`\p{N}`];
const AFMOE_REGEXES = [
  DIGITS_BY_THREE_FROM_RIGHT,
  "[一-鿿㐀-䶿豈-﫿぀-ゟ゠-ヿ･-ﾟ⼀-⿟เ-๿຀-໿ក-៿က-႟ꩠ-ꩿꧠ-꧿가-힯ᄀ-ᇿ]+",
  DEEPSEEK3_REGEXES[2]!,
];

/** The code points llama.cpp's Kimi K2 splitter counts as Han (`unicode_cpt_is_han`: CJK blocks, not the Han script). */
const HAN_BLOCKS: readonly (readonly [number, number])[] = [
  [0x3400, 0x4dbf], [0x4e00, 0x9fff], [0xf900, 0xfaff], [0x20000, 0x2a6df], [0x2a700, 0x2b73f],
  [0x2b740, 0x2b81f], [0x2b820, 0x2ceaf], [0x2ceb0, 0x2ebef], [0x2f800, 0x2fa1f],
];
const HAN = `[${HAN_BLOCKS.map(([a, b]) => `${String.fromCodePoint(a)}-${String.fromCodePoint(b)}`).join("")}]`;
/**
 * Kimi K2's split as llama.cpp's hand-written splitter does it: Han runs; words of non-Han letters
 * (no case rule, no combining marks, unlike the model's tiktoken regex) with an optional leading
 * non-letter and a contraction; 1-3 digits; punctuation runs; whitespace as GPT-4o.
 */
const KIMI_K2_REGEX = String.raw`${HAN}+|[^\r\n\p{L}\p{N}]?(?:(?!${HAN})\p{L})+(?:'[sStTmMdD]|'[rR][eE]|'[vV][eE]|'[lL][lL])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`;

const BLOOM_REGEX = String.raw` ?[^(\s|.,!?…。，、।۔،)]+`;
const DIGITS_THEN_GPT2 = [String.raw`\p{N}`, GPT2_BODY];
/** Runs of newlines and of everything else (llama.cpp's hand-written splitter for this exact regex). */
const NEWLINE_RUNS = String.raw`[^\n]+|[\n]+`;

export interface PreTokenizerInfo {
  /** Split regexes, applied in order, each isolating its matches; then GPT-2's byte mapping (unless escapeWhitespaces). */
  readonly regexes: readonly string[];
  readonly ignoreMerges?: boolean;
  readonly cleanSpaces?: boolean;
  readonly addBos?: boolean;
  /** No default BOS id when the file names none (GLM-4; llama.cpp's BPE default is 11). */
  readonly noDefaultBos?: boolean;
  /**
   * SentencePiece-style BPE (Gemma 4): spaces become ▁ before splitting, pieces are raw UTF-8 with
   * <0xXX> byte tokens instead of GPT-2's byte mapping.
   */
  readonly escapeWhitespaces?: boolean;
  /** A run of newlines that is a token is taken whole, not merged (llama.cpp's Gemma 4 fix). */
  readonly newlineRunsWhole?: boolean;
  /** BOS is added whatever `add_bos_token` says (llama.cpp's Gemma 4 workaround). */
  readonly forceBos?: boolean;
}

const GPT2: PreTokenizerInfo = { regexes: [GPT2_REGEX] };
const GPT2_NO_CLEAN: PreTokenizerInfo = { regexes: [GPT2_REGEX], cleanSpaces: false };
const LLAMA3: PreTokenizerInfo = { regexes: [LLAMA3_REGEX], ignoreMerges: true, addBos: true };
const QWEN2: PreTokenizerInfo = { regexes: [QWEN2_REGEX], cleanSpaces: false };
const STARCODER: PreTokenizerInfo = { regexes: DIGITS_THEN_GPT2 };
const GPT4O: PreTokenizerInfo = { regexes: [GPT4O_REGEX], cleanSpaces: false };
const DEEPSEEK3: PreTokenizerInfo = { regexes: DEEPSEEK3_REGEXES, cleanSpaces: false };
const TINY_AYA: PreTokenizerInfo = { regexes: [DIGITS_BY_THREE_FROM_RIGHT, TINY_AYA_REGEX], cleanSpaces: false };
const BAILINGMOE: PreTokenizerInfo = {
  // llama.cpp turns the original's possessive `?+` / `++` into greedy ones; so does this.
  regexes: [String.raw`'(?:[sSdDmMtT]|[lL][lL]|[vV][eE]|[rR][eE])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+`],
  cleanSpaces: false,
};

/**
 * `tokenizer.ggml.pre` -> split regexes and the flags llama.cpp sets for it (llama-vocab.cpp), every
 * name of the pinned llama.cpp that has a Hugging Face equivalent. Names sharing a regex set share an
 * entry object; the flags (clean-up, BOS) are per name as llama.cpp sets them.
 */
export const PRE_TOKENIZERS: Record<string, PreTokenizerInfo> = {
  // llama.cpp's fallback when a converter did not recognise the tokenizer.
  default: { regexes: [String.raw`[\p{P}\$\+<=>\^~\|]+`, GPT2_BODY, String.raw`\p{N}+`, "[0-9][0-9][0-9]"] },
  "gpt-2": GPT2,
  "phi-2": GPT2,
  mpt: GPT2,
  olmo: GPT2,
  jais: GPT2,
  "roberta-bpe": GPT2,
  "jina-v1-en": GPT2,
  "jina-v2-code": GPT2,
  "jina-es": GPT2,
  "jina-de": GPT2,
  "jina-v2-es": GPT2,
  "jina-v2-de": GPT2,
  gigachat: GPT2,
  "a.x-4.0": GPT2,
  mellum: GPT2,
  "modern-bert": GPT2,
  exaone4: GPT2,
  trillion: GPT2_NO_CLEAN,
  "granite-docling": GPT2_NO_CLEAN,
  starcoder: STARCODER,
  refact: STARCODER,
  codeshell: STARCODER,
  exaone: STARCODER,
  "minerva-7b": STARCODER,
  mellum2: STARCODER,
  smollm: { regexes: DIGITS_THEN_GPT2, cleanSpaces: false },
  "command-r": { regexes: DIGITS_THEN_GPT2, cleanSpaces: false },
  falcon: { regexes: [String.raw`[\p{P}\$\+<=>\^~\|` + "`" + "]+", GPT2_BODY, "[0-9][0-9][0-9]"] },
  llama3: LLAMA3,
  "llama-v3": LLAMA3,
  "llama-bpe": LLAMA3,
  falcon3: LLAMA3,
  "falcon-h1": LLAMA3,
  pixtral: LLAMA3,
  "midm-2.0": LLAMA3,
  lfm2: LLAMA3,
  "jina-v5-nano": LLAMA3,
  dbrx: { regexes: [LLAMA3_REGEX] },
  "smaug-bpe": { regexes: [LLAMA3_REGEX] },
  glm4: { regexes: [LLAMA3_REGEX], noDefaultBos: true },
  "chatglm-bpe": { regexes: [LLAMA3_REGEX], noDefaultBos: true },
  "jais-2": {
    regexes: [String.raw`${CONTRACTIONS_CS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s{512}(?!\S)|\s{256}(?!\S)|\s{128}(?!\S)|\s{64}(?!\S)|\s{32}(?!\S)|\s{16}(?!\S)|\s{8}(?!\S)|\s{4}(?!\S)|\s{1,2}(?!\S)|\s{1}`],
  },
  minicpm5: {
    regexes: [String.raw`\p{N}{1,3}`, String.raw`${CONTRACTIONS_CS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}+| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`],
    ignoreMerges: true,
  },
  qwen2: QWEN2,
  "deepseek-r1-qwen": QWEN2,
  kormo: QWEN2,
  f2llmv2: QWEN2,
  hunyuan: QWEN2,
  "solar-open": QWEN2,
  "grok-2": QWEN2,
  megrez: { regexes: [QWEN2_REGEX] },
  stablelm2: { regexes: [QWEN2_REGEX] },
  laguna: { regexes: [NEWLINE_RUNS, QWEN2_REGEX], cleanSpaces: false },
  qwen35: { regexes: [QWEN35_REGEX], cleanSpaces: false },
  "seed-coder": {
    regexes: [String.raw`${CONTRACTIONS_CS}|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1}| ?[^\s\p{L}\p{N}\r\n]+|\s*[\r\n]+|\s+(?!\S)|\s+`],
    cleanSpaces: false,
  },
  "exaone-moe": {
    regexes: [String.raw`${CONTRACTIONS_CS}|[^\r\n\p{L}\p{N}]?(?:\p{L}\p{M}*(?: \p{L}\p{M}*)*)+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]?|\s*[\r\n]|\s+(?!\S)|\s+`],
  },
  bailingmoe: BAILINGMOE,
  bailingmoe2: BAILINGMOE,
  "llada-moe": BAILINGMOE,
  tekken: { regexes: [TEKKEN_REGEX], cleanSpaces: false, ignoreMerges: true, addBos: true },
  "gpt-4o": GPT4O,
  llama4: GPT4O,
  kanana2: GPT4O,
  talkie: GPT4O,
  "minimax-m2": GPT4O,
  "granite-embed-multi-97m": { regexes: [GRANITE_MULTI_REGEX], cleanSpaces: false, ignoreMerges: true },
  tiny_aya: TINY_AYA,
  cohere2moe: TINY_AYA,
  youtu: { regexes: YOUTU_REGEXES, cleanSpaces: false, ignoreMerges: true },
  "kimi-k2": { regexes: [KIMI_K2_REGEX], cleanSpaces: false },
  afmoe: { regexes: AFMOE_REGEXES, cleanSpaces: false },
  superbpe: { regexes: [String.raw`\p{N}+`, "(?=([0-9]{3})+(?![0-9]))"], cleanSpaces: false },
  chameleon: {
    regexes: ["<sentinel:[0-9]+>", "(IMGIMG)((A|B|C|D|E|F|G|H|I){1,4})Z", String.raw`([\t\n]|    |  )`, String.raw`\p{N}`, String.raw`[\p{P}!-/:-@\[-` + "`" + "{-~]", GPT2_BODY],
    addBos: true,
    cleanSpaces: false,
  },
  gemma4: { regexes: [NEWLINE_RUNS], escapeWhitespaces: true, newlineRunsWhole: true, forceBos: true },
  "granite-embed-multi-311m": { regexes: [NEWLINE_RUNS], escapeWhitespaces: true, newlineRunsWhole: true, forceBos: true },
  "sarvam-moe": { regexes: [NEWLINE_RUNS], escapeWhitespaces: true, cleanSpaces: false },
  "deepseek-llm": { regexes: DEEPSEEK_LLM_REGEXES, cleanSpaces: false },
  "deepseek-v3": DEEPSEEK3,
  "hunyuan-dense": DEEPSEEK3,
  "joyai-llm": DEEPSEEK3,
  "deepseek-coder": { regexes: DEEPSEEK_CODER_REGEXES, cleanSpaces: false },
  bloom: { regexes: [BLOOM_REGEX] },
  "gpt3-finnish": { regexes: [BLOOM_REGEX] },
  "poro-chat": { regexes: [BLOOM_REGEX], cleanSpaces: false },
  viking: { regexes: [BLOOM_REGEX, String.raw`\p{N}`], cleanSpaces: false },
};

/** Names of the pinned llama.cpp this module does not convert, and why (the reader's error says it). */
export const REFUSED_PRE_TOKENIZERS: Readonly<Record<string, string>> = {
  whitespace:
    'llama.cpp itself aborts on it with a "gpt2" model (GGML_ASSERT in find_bpe_rank on any two whitespace characters in a row); it belongs to the "whitespace" tokenizer model of jina-embeddings-v2-base-zh, which is not supported',
};

/** The `tokenizer.ggml.pre` values this module converts. */
export const SUPPORTED_BPE_PRE_TOKENIZERS: readonly string[] = Object.keys(PRE_TOKENIZERS);
