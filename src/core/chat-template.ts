/**
 * Chat templates: the model's own Jinja template rendered with @huggingface/jinja (the renderer
 * transformers.js uses, so templates behave as they do in the Hugging Face stack), and one documented
 * fallback for models without a template.
 *
 * Fallback (plain completion): each message on its own line as `Role: content`, a blank line between
 * messages, and with `addGenerationPrompt` a final `Assistant:` line. Base models (like the embedded
 * stories260K) continue such a transcript as text; nothing here pretends they were chat-tuned.
 */
import { Template } from "@huggingface/jinja";
import type { ChatMessage } from "./backend.ts";
import { SteerkitError } from "./errors.ts";

export interface RenderChatOptions {
  readonly addGenerationPrompt?: boolean;
  readonly bosToken?: string;
  readonly eosToken?: string;
}

const compiled = new Map<string, Template>();

export class ChatTemplateError extends SteerkitError {
  override name = "ChatTemplateError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("CHAT_TEMPLATE_FAILED", message, options);
  }
}

export function renderChat(template: string | null, messages: readonly ChatMessage[], options: RenderChatOptions = {}): string {
  if (!Array.isArray(messages) || messages.length === 0) throw new ChatTemplateError("chat: messages must be a non-empty array");
  messages.forEach((m, i) => {
    if (typeof m?.role !== "string" || typeof m?.content !== "string") {
      throw new ChatTemplateError(`chat: messages[${i}] must be { role: string, content: string }`);
    }
  });
  const addGenerationPrompt = options.addGenerationPrompt ?? true;
  if (template === null) return plainTranscript(messages, addGenerationPrompt);
  let t = compiled.get(template);
  if (!t) {
    try {
      t = new Template(template);
    } catch (e) {
      throw new ChatTemplateError(`chat template does not parse: ${(e as Error).message}`);
    }
    compiled.set(template, t);
  }
  try {
    return t.render({
      messages: messages.map((m) => ({ role: m.role, content: m.content })),
      add_generation_prompt: addGenerationPrompt,
      bos_token: options.bosToken ?? "",
      eos_token: options.eosToken ?? "",
    });
  } catch (e) {
    throw new ChatTemplateError(`chat template failed to render: ${(e as Error).message}`);
  }
}

function plainTranscript(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string {
  const title = (role: string) => role.charAt(0).toUpperCase() + role.slice(1);
  const body = messages.map((m) => `${title(m.role)}: ${m.content}`).join("\n\n");
  return addGenerationPrompt ? `${body}\n\nAssistant:` : body;
}
