/**
 * The bytes llama.cpp's tools print for tokens (`common_token_to_piece` with special = false), read
 * from a GGUF's vocabulary: comparing them with llama-completion's stdout checks token choices
 * against llama.cpp's own tool without a tokenizer in between.
 *
 * SentencePiece ("llama"): U+2581 is a space, `<0xXX>` byte tokens are that byte. Byte-level BPE
 * ("gpt2"): each character stands for a byte (GPT-2's bytes_to_unicode). Control and unknown tokens
 * print nothing in both (llama_vocab::impl::token_to_piece without `special`).
 */
import type { GgufFile } from "../../src/formats/gguf.ts";

const UNKNOWN = 2, CONTROL = 3, BYTE = 6;

export function tokenBytes(file: GgufFile): (tokens: readonly number[]) => Uint8Array {
  const model = file.metadata.get("tokenizer.ggml.model");
  const texts = file.metadata.get("tokenizer.ggml.tokens") as string[];
  const types = file.metadata.get("tokenizer.ggml.token_type") as number[];
  const enc = new TextEncoder();
  let piece: (id: number) => Uint8Array;
  if (model === "llama") {
    piece = (id) => {
      const t = texts[id]!, type = types[id]!;
      if (type === CONTROL || type === UNKNOWN) return new Uint8Array(0);
      if (type === BYTE) return Uint8Array.of(parseInt(t.slice(3, 5), 16));
      return enc.encode(t.replaceAll("\u2581", " "));
    };
  } else if (model === "gpt2") {
    const byteOf = new Map<number, number>();
    let next = 256;
    for (let b = 0; b < 256; b++) {
      const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      byteOf.set(printable ? b : next++, b);
    }
    piece = (id) => {
      if (types[id] === CONTROL || types[id] === UNKNOWN) return new Uint8Array(0);
      return Uint8Array.from([...texts[id]!].map((ch) => {
        const b = byteOf.get(ch.codePointAt(0)!);
        if (b === undefined) throw new Error(`token ${id} ${JSON.stringify(texts[id])}: character ${ch} is not a GPT-2 byte character`);
        return b;
      }));
    };
  } else {
    throw new Error(`tokenizer model ${String(model)}: no piece rule`);
  }
  return (tokens) => {
    const parts = tokens.map(piece);
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
}
