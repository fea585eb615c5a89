/**
 * Tokenizer and chat template of an export: `tokenizer.json` through @huggingface/tokenizers and
 * the `chat_template` of `tokenizer_config.json` through core's renderer (@huggingface/jinja), the
 * libraries transformers.js uses, so text behaves as in the Hugging Face stack.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import type { ChatMessage, TokenizeOptions } from "../../core/backend.ts";
import { renderChat } from "../../core/chat-template.ts";
import { readRegularText } from "../../formats/files.ts";
import { keepByteOrderMarks } from "../../formats/gguf-tokenizer/byte-order-mark.ts";
import { OnnxExportError, type ExportConfig } from "./export-dir.ts";

/** tokenizer.json files of 250k-token vocabularies are ~20 MB; anything far larger is not one. */
const MAX_TOKENIZER_JSON_BYTES = 512 * 1024 * 1024;

type TokenizerJson = { model?: unknown; added_tokens?: { special?: boolean }[] };

/** Read and shape-check tokenizer.json; every failure names the file (a broken one used to surface as a bare SyntaxError). */
export function readTokenizerJson(file: string): TokenizerJson {
  const fail = (reason: string): never => {
    throw new OnnxExportError(`${file}: ${reason}`);
  };
  const text = readRegularText(file, fail, { expected: "a tokenizer.json file", maxBytes: MAX_TOKENIZER_JSON_BYTES });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`not valid JSON (${(e as Error).message})`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) return fail("top level is not a JSON object");
  const t = json as TokenizerJson;
  if (t.model === null || typeof t.model !== "object" || Array.isArray(t.model)) fail(`has no "model" object: not a tokenizers tokenizer.json`);
  if (t.added_tokens !== undefined && (!Array.isArray(t.added_tokens) || t.added_tokens.some((a) => a === null || typeof a !== "object"))) {
    fail(`"added_tokens" must be an array of objects`);
  }
  return t;
}

export interface TextCodec {
  readonly bosToken: number | null;
  readonly eosTokens: readonly number[];
  readonly chatTemplate: string | null;
  tokenize(text: string, options?: TokenizeOptions): number[];
  detokenize(tokens: ArrayLike<number>): string;
  applyChatTemplate(messages: readonly ChatMessage[], addGenerationPrompt: boolean): string;
}

function tokenText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") return (v as { content: string }).content;
  return null;
}

export function loadTextCodec(cfg: ExportConfig): TextCodec {
  const tc = cfg.tokenizerConfig ?? {};
  const rawTemplate = tc.chat_template;
  const chatTemplate =
    typeof rawTemplate === "string"
      ? rawTemplate
      : Array.isArray(rawTemplate)
        ? ((rawTemplate.find((t) => t?.name === "default") ?? rawTemplate[0])?.template ?? null)
        : null;
  if (cfg.tokenizerFile === null) return noTokenizer(cfg, chatTemplate);

  const json = readTokenizerJson(cfg.tokenizerFile);
  const file = cfg.tokenizerFile;
  // @huggingface/tokenizers trusts the JSON's shape and fails on a damaged one with a bare TypeError,
  // at construction or at the first encode: both are tried here, so the error names the file.
  const build = (j: TokenizerJson): Tokenizer => {
    try {
      const t = keepByteOrderMarks(new Tokenizer(j, tc));
      t.encode("a \u00e9\u2603", { add_special_tokens: true });
      return t;
    } catch (e) {
      throw new OnnxExportError(`${file}: not a tokenizer the tokenizers library can use (${(e as Error)?.message ?? String(e)})`);
    }
  };
  const tokenizer = build(json);
  // tokenizers.js always turns special-token text (`<|im_start|>`) into the special token. For
  // `special: false` (user text must not inject control tokens; llama.cpp's default too) a second
  // instance is built without the special added tokens, on first use.
  let plain: Tokenizer | null = null;
  const plainTokenizer = (): Tokenizer => {
    if (plain) return plain;
    const added = json.added_tokens ?? [];
    plain = added.some((t) => t.special) ? build({ ...json, added_tokens: added.filter((t) => !t.special) }) : tokenizer;
    return plain;
  };
  const bosText = tokenText(tc.bos_token);
  const eosText = tokenText(tc.eos_token);
  const bosToken = cfg.bosToken ?? (bosText !== null ? (tokenizer.token_to_id(bosText) ?? null) : null);
  const eosTokens = cfg.eosTokens.length ? cfg.eosTokens : eosText !== null && tokenizer.token_to_id(eosText) !== undefined ? [tokenizer.token_to_id(eosText)!] : [];
  // Whether this model starts sequences with BOS: the config says so, or its post-processor adds it.
  const usesBos =
    bosToken !== null &&
    (typeof tc.add_bos_token === "boolean" ? tc.add_bos_token : tokenizer.encode("a", { add_special_tokens: true }).ids[0] === bosToken);
  return {
    bosToken,
    eosTokens,
    chatTemplate,
    tokenize(text, options = {}) {
      const ids = (options.special ? tokenizer : plainTokenizer()).encode(text, { add_special_tokens: false }).ids;
      return usesBos && options.addBos !== false ? [bosToken!, ...ids] : ids;
    },
    detokenize(tokens) {
      return tokenizer.decode(Array.from(tokens), { skip_special_tokens: true });
    },
    applyChatTemplate(messages, addGenerationPrompt) {
      // bos_token renders empty, as in the llama.cpp adapter: tokenization adds BOS, never twice.
      return renderChat(chatTemplate, messages, { addGenerationPrompt, bosToken: "", eosToken: eosText ?? "" });
    },
  };
}

function noTokenizer(cfg: ExportConfig, chatTemplate: string | null): TextCodec {
  const why = `${cfg.dir}: this ONNX export has no tokenizer.json, so it cannot turn text into tokens; pass token ids instead`;
  return {
    bosToken: cfg.bosToken,
    eosTokens: cfg.eosTokens,
    chatTemplate,
    tokenize() {
      throw new Error(why);
    },
    // Without a vocabulary the honest rendering of a token is its id.
    detokenize(tokens) {
      return Array.from(tokens, (t) => `<${t}>`).join("");
    },
    applyChatTemplate(messages, addGenerationPrompt) {
      return renderChat(chatTemplate, messages, { addGenerationPrompt });
    },
  };
}
