/** The embedded model with a chat template written into its GGUF, for tests of chat prompts. */
import { readFileSync } from "node:fs";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";

/**
 * stories260K with a `tokenizer.chat_template` added. The new key/value goes right after the
 * header counts, padded (inside a Jinja comment) to a multiple of the 32-byte alignment, so the
 * data section moves by exactly that much and every tensor offset (relative to it) stays valid.
 */
export function withChatTemplate(template: string): Uint8Array {
  const src = Buffer.from(readFileSync(DEFAULT_MODEL_PATH));
  const kv = (value: string) => {
    const key = Buffer.from("tokenizer.chat_template");
    const val = Buffer.from(value);
    const b = Buffer.alloc(8 + key.length + 4 + 8 + val.length);
    let o = b.writeBigUInt64LE(BigInt(key.length), 0);
    o += key.copy(b, o);
    o = b.writeUInt32LE(8, o); // GGUF string
    o = b.writeBigUInt64LE(BigInt(val.length), o);
    val.copy(b, o);
    return b;
  };
  let padded = template + "{##}";
  while (kv(padded).length % 32 !== 0) padded = padded.slice(0, -2) + " #}";
  const inserted = kv(padded);
  const out = Buffer.concat([src.subarray(0, 24), inserted, src.subarray(24)]);
  out.writeBigUInt64LE(src.readBigUInt64LE(16) + 1n, 16); // kv_count
  return out;
}

