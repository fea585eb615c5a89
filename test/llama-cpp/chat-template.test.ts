import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_PATH, loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { withChatTemplate } from "../helpers/chat-template-gguf.ts";

const TEMPLATE =
  "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}\n{% endfor %}" +
  "{% if add_generation_prompt %}<|assistant|>{% endif %}";

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
