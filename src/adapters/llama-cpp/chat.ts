/**
 * Chat templates for GGUF models: the file's own Jinja template (`tokenizer.chat_template`)
 * rendered with @huggingface/jinja, the same engine transformers.js uses, so templates behave as
 * they do on the Hub rather than through llama.cpp's built-in list of recognised templates.
 */
import { Template } from "@huggingface/jinja";
import type { ChatMessage } from "../../core/backend.ts";

export interface TemplateTokens {
  readonly bosToken: string;
  readonly eosToken: string;
}

export class ChatTemplateError extends Error {
  override readonly name = "ChatTemplateError";
}

/** Compiles a template once and renders it per call. */
export function compileChatTemplate(source: string, modelName: string): (messages: readonly ChatMessage[], addGenerationPrompt: boolean, tokens: TemplateTokens) => string {
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new ChatTemplateError(`the chat template of ${modelName} does not parse: ${(e as Error).message}`);
  }
  return (messages, addGenerationPrompt, tokens) => {
    try {
      return template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: addGenerationPrompt,
        bos_token: tokens.bosToken,
        eos_token: tokens.eosToken,
      });
    } catch (e) {
      throw new ChatTemplateError(`rendering the chat template of ${modelName} failed: ${(e as Error).message}`);
    }
  };
}

/**
 * The fallback for models without a chat template (base models such as stories260K): plain
 * completion. The messages' contents are joined with a blank line, with no role markers and nothing
 * added for the generation prompt, so `[{ role: "user", content: "Once upon a time" }]` renders as
 * exactly "Once upon a time" and the model simply continues the text. Roles are dropped on purpose:
 * a base model has never seen any role syntax, and made-up markers would only leak into its output.
 */
export function plainCompletion(messages: readonly ChatMessage[]): string {
  return messages.map((m) => m.content).join("\n\n");
}
