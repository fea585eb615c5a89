/**
 * Chat messages to prompt tokens without letting message text become control tokens.
 *
 * Why: a chat template's own markers (`<|im_start|>`, `</s>`) must be parsed as special tokens, but
 * the same text inside a message is the user's text. Tokenizing the rendered prompt with special
 * tokens on (what llama.cpp's server and `apply_chat_template` do) turns a message saying `</s>` into
 * the real end-of-sequence token: a request could end or forge turns.
 *
 * How: the template is rendered once more with each message's content replaced by an unforgeable
 * marker, which splits the prompt into template parts (trusted) and contents (untrusted). Special
 * tokens are looked for in template parts only; everything between two special tokens is one raw
 * fragment, tokenized with special parsing off. llama.cpp tokenizes with special parsing exactly
 * so (it splits at special tokens, then tokenizes each raw fragment alone), so a prompt whose
 * messages hold no special-token text gets the same tokens as before.
 */
import type { ChatMessage, Model } from "./backend.ts";
import { ChatTemplateError } from "./chat-template.ts";

type Tokenizer = Pick<Model, "tokenize" | "applyChatTemplate">;

/**
 * The prompt tokens of `messages` rendered with the model's chat template (generation prompt
 * added), where message contents can never become special tokens.
 * @example
 * ```ts
 * const tokens = chatPromptTokens(model, [{ role: "user", content: "what does </s> mean?" }]);
 * tokens.includes(model.info.eosTokens[0]!); // false: the user's "</s>" is text
 * ```
 */
export function chatPromptTokens(model: Tokenizer, messages: readonly ChatMessage[], addBos: boolean): number[] {
  const rendered = model.applyChatTemplate(messages, { addGenerationPrompt: true });
  const parts = splitByContent(model, messages);
  const bos = addBos ? model.tokenize("", { addBos: true }) : [];
  if (parts && joinParts(parts, messages) === rendered) return [...bos, ...tokenizeParts(model, parts, messages)];
  // The template changes contents as it renders them (trims them, say): the split above is not the
  // prompt the template means. Its rendering is safe to tokenize as a whole when no content holds
  // special-token text; otherwise the split (contents verbatim) is the safe choice.
  if (!messages.some((m) => hasSpecial(model, m.content))) return [...bos, ...model.tokenize(rendered, { addBos: false, special: true })];
  if (parts) return [...bos, ...tokenizeParts(model, parts, messages)];
  throw new ChatTemplateError("the chat template transforms message contents, and a message holds special-token text that could not be kept apart from the template's own");
}

/** Template text between contents: parts[i] comes before message i's content, the last after all. */
function splitByContent(model: Tokenizer, messages: readonly ChatMessage[]): string[] | null {
  const nonce = Array.from(crypto.getRandomValues(new Uint32Array(2)), (n) => n.toString(36)).join("");
  const marker = (i: number) => `\u{F8FF}steerkit-${nonce}-${i}\u{F8FF}`;
  const marked = model.applyChatTemplate(messages.map((m, i) => ({ ...m, content: marker(i) })), { addGenerationPrompt: true });
  const parts: string[] = [];
  let from = 0;
  for (let i = 0; i < messages.length; i++) {
    const at = marked.indexOf(marker(i), from);
    if (at < 0 || marked.indexOf(marker(i), at + 1) >= 0) return null; // dropped, transformed or repeated
    parts.push(marked.slice(from, at));
    from = at + marker(i).length;
  }
  parts.push(marked.slice(from));
  return parts;
}

function joinParts(parts: readonly string[], messages: readonly ChatMessage[]): string {
  return parts.map((p, i) => p + (messages[i]?.content ?? "")).join("");
}

function tokenizeParts(model: Tokenizer, parts: readonly string[], messages: readonly ChatMessage[]): number[] {
  const out: number[] = [];
  let raw = "";
  const flush = () => {
    if (raw) out.push(...model.tokenize(raw, { addBos: false, special: false }));
    raw = "";
  };
  parts.forEach((part, i) => {
    let pos = 0;
    for (const [s, e] of specialSpans(model, part)) {
      raw += part.slice(pos, s);
      flush();
      out.push(...model.tokenize(part.slice(s, e), { addBos: false, special: true }));
      pos = e;
    }
    raw += part.slice(pos) + (messages[i]?.content ?? "");
  });
  flush();
  return out;
}

/** True when `text` holds special-token text (tokenizing it with special parsing on differs). */
function hasSpecial(model: Tokenizer, text: string): boolean {
  if (text.length === 0) return false;
  const a = model.tokenize(text, { addBos: false, special: true });
  const b = model.tokenize(text, { addBos: false, special: false });
  return a.length !== b.length || a.some((t, i) => t !== b[i]);
}

/**
 * `[start, end)` of each special token in a template part, left to right. "A prefix holds a
 * special token" only grows with the prefix, so each end (and then each start) is a binary search:
 * O(log n) tokenizations of template text per special token.
 */
function specialSpans(model: Tokenizer, text: string): [number, number][] {
  const spans: [number, number][] = [];
  let from = 0;
  while (from < text.length && hasSpecial(model, text.slice(from))) {
    let lo = from + 1;
    let hi = text.length; // text.slice(from, hi) holds one
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (hasSpecial(model, text.slice(from, mid))) hi = mid;
      else lo = mid + 1;
    }
    const end = hi;
    let a = from;
    let b = end - 1; // text.slice(a, end) holds one; find the largest such a
    while (a < b) {
      const mid = (a + b + 1) >> 1;
      if (hasSpecial(model, text.slice(mid, end))) a = mid;
      else b = mid - 1;
    }
    spans.push([a, end]);
    from = end;
  }
  return spans;
}
