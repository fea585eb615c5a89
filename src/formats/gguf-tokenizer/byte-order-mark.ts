/**
 * A workaround for @huggingface/tokenizers 0.2's `ByteFallback` decoder, which turns `<0xXX>` byte
 * tokens into text with `new TextDecoder()`: the Encoding Standard's default drops a leading U+FEFF,
 * so a byte order mark spelled as `<0xEF><0xBB><0xBF>` (SentencePiece vocabularies rarely have the
 * character itself) vanishes on decode, where llama.cpp and the Rust tokenizers keep it. The
 * byte-level decoder of the same library already passes `ignoreBOM: true`; this gives every
 * decoder of a built tokenizer the same setting. It reaches into the library's objects because the
 * decoder offers no option for it; the shape it expects is checked, and anything else is left alone.
 */
import type { Tokenizer } from "@huggingface/tokenizers";

/**
 * Make every decoder of `tokenizer` keep a decoded U+FEFF (in place); returns the tokenizer.
 *
 * @example
 * const tokenizer = keepByteOrderMarks(new Tokenizer(tokenizerJson, tokenizerConfig));
 * tokenizer.decode(tokenizer.encode("\ufeffHello").ids); // "\ufeffHello", not "Hello"
 */
export function keepByteOrderMarks<T extends Tokenizer>(tokenizer: T): T {
  const seen = new Set<object>();
  const visit = (decoder: unknown): void => {
    // The library's decoders are callable objects (functions), a plain object in tests.
    if (decoder === null || (typeof decoder !== "object" && typeof decoder !== "function") || seen.has(decoder)) return;
    seen.add(decoder);
    const d = decoder as { text_decoder?: unknown; decoders?: unknown };
    if (d.text_decoder instanceof TextDecoder && d.text_decoder.encoding === "utf-8" && !d.text_decoder.ignoreBOM) {
      d.text_decoder = new TextDecoder("utf-8", { fatal: d.text_decoder.fatal, ignoreBOM: true });
    }
    if (Array.isArray(d.decoders)) d.decoders.forEach(visit);
  };
  visit((tokenizer as unknown as { decoder?: unknown }).decoder);
  return tokenizer;
}
