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
 *
 * This file is the public entry point; the pieces live in ./gguf-tokenizer/:
 * - spec.ts            the {@link GgufTokenizerSpec} shape every other piece reads
 * - pre-tokenizers.ts  the `tokenizer.ggml.pre` -> split regexes / flags table
 * - special-tokens.ts  llama.cpp's text-based EOT/EOM/FIM/EOG detection
 * - read-spec.ts       GGUF metadata -> spec, with llama.cpp's defaults
 * - spm-merges.ts      SentencePiece scores -> BPE merges
 * - tokenizer-json.ts  spec -> tokenizer.json / tokenizer_config.json (and writing them)
 * - tokenizer.ts       {@link GgufTokenizer}, the runtime encode/decode
 * - byte-order-mark.ts a workaround for @huggingface/tokenizers dropping a decoded U+FEFF
 */
export { SUPPORTED_BPE_PRE_TOKENIZERS } from "./gguf-tokenizer/pre-tokenizers.ts";
export { keepByteOrderMarks } from "./gguf-tokenizer/byte-order-mark.ts";
export { readTokenizerSpec } from "./gguf-tokenizer/read-spec.ts";
export { TokenType, type GgufTokenizerSpec, type HfTokenizerFiles, type TokenizerKind } from "./gguf-tokenizer/spec.ts";
export { spmMerges } from "./gguf-tokenizer/spm-merges.ts";
export { ggufToHfTokenizer, writeHfTokenizer } from "./gguf-tokenizer/tokenizer-json.ts";
export { GgufTokenizer, type EncodeOptions } from "./gguf-tokenizer/tokenizer.ts";
