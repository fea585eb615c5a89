import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_PATH, loadModel } from "../../src/adapters/llama-cpp/index.ts";

const TEMPLATE =
  "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

/**
 * stories260K with a `tokenizer.chat_template` added. The new key/value goes right after the
 * header counts, padded (inside a Jinja comment) to a multiple of the 32-byte alignment, so the
 * data section moves by exactly that much and every tensor offset (relative to it) stays valid.
 */
function withChatTemplate(template: string): Uint8Array {
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

describe("a GGUF with its own chat template", () => {
  const dir = mkdtempSync(join(tmpdir(), "steerkit-llama-chat-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "stories-chat.gguf");
  writeFileSync(path, withChatTemplate(TEMPLATE));
  const model = loadModel(path, { contextLength: 128 });
  afterAll(() => model.dispose());

  test("the template is read from tokenizer.chat_template and rendered with Jinja", () => {
    expect(model.info.chatTemplate).toStartWith(TEMPLATE);
    const messages = [
      { role: "system", content: "Tell a story." },
      { role: "user", content: "Once upon a time" },
    ];
    expect(model.applyChatTemplate(messages)).toBe("<|system|>Tell a story.</s>\n<|user|>Once upon a time</s>\n<|assistant|>");
    expect(model.applyChatTemplate(messages, { addGenerationPrompt: false })).toBe(
      "<|system|>Tell a story.</s>\n<|user|>Once upon a time</s>\n",
    );
  });

  test("the edited file is still the same model to llama.cpp", async () => {
    const seq = model.createSequence();
    const logits = Float32Array.from(await seq.prefill([1, 403, 407, 261, 378]));
    seq.free();
    const plain = loadModel(DEFAULT_MODEL_PATH, { contextLength: 128 });
    const ref = plain.createSequence();
    const expected = await ref.prefill([1, 403, 407, 261, 378]);
    expect(Array.from(logits)).toEqual(Array.from(expected));
    plain.dispose();
  });
});
