/**
 * Prompt sets for direction extraction: reading them, hashing them for provenance, and turning each
 * prompt into the tokens the model sees plus the row where its "post-instruction" tokens start.
 *
 * Files: `.jsonl` (one JSON string, or object with "prompt", "instruction" or "text", per line) or
 * anything else as text, one prompt per non-empty line (the layout of llama.cpp's
 * cvector-generator prompt files and of Arditi et al.'s instruction lists).
 *
 * Formats: `"text"` tokenizes the prompt as is (with BOS); `"chat"` renders it as one user message
 * with the model's chat template and the generation prompt, exactly as `generate({ messages })`
 * does. The post-instruction tokens (Arditi et al.: the template's tokens after the instruction,
 * e.g. `<|eot_id|><|start_header_id|>assistant<|end_header_id|>`) are found per prompt: the
 * rendered text up to the end of the user's content is tokenized alone, and every token after the
 * longest common prefix with the full prompt's tokens is post-instruction. A token merged across
 * that boundary therefore counts as post-instruction, never silently as instruction.
 */
import { createHash } from "node:crypto";
import { readRegularText } from "../formats/files.ts";
import type { Model } from "../core/backend.ts";
import { SteerkitError } from "../core/errors.ts";
import { promptTokens } from "../core/generate.ts";

export type PromptFormat = "text" | "chat";

/** Read a prompt set (see the module comment for the layouts). */
export function readPromptSet(path: string, label = path): string[] {
  // Through the shared reader: a FIFO or a device named as a prompt set fails at once instead of blocking.
  const raw = readRegularText(
    path,
    (reason) => {
      throw new SteerkitError("INVALID_REQUEST", `${label}: cannot read (${reason})`);
    },
    { expected: "a prompt set (text or JSONL)" },
  );
  if (!path.toLowerCase().endsWith(".jsonl")) return raw.split(/\r?\n/).filter((l) => l.trim() !== "");
  return raw.split(/\r?\n/).flatMap((line, i) => {
    if (line.trim() === "") return [];
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new SteerkitError("INVALID_REQUEST", `${label} line ${i + 1} is not JSON`);
    }
    if (typeof v === "string") return [v];
    if (typeof v === "object" && v !== null) {
      for (const key of ["prompt", "instruction", "text"]) {
        const s = (v as Record<string, unknown>)[key];
        if (typeof s === "string") return [s];
      }
    }
    throw new SteerkitError("INVALID_REQUEST", `${label} line ${i + 1} is neither a JSON string nor an object with a "prompt", "instruction" or "text" string`);
  });
}

/** sha256 (hex) of the JSON array of the prompts, UTF-8: the same prompts hash the same from any file layout. */
export function hashPromptSet(prompts: readonly string[]): string {
  return createHash("sha256").update(JSON.stringify(prompts), "utf8").digest("hex");
}

export interface PreparedPrompt {
  readonly tokens: number[];
  /** First row that is not BOS (the prompt's own first token). */
  readonly first: number;
  /** First post-instruction row (chat format only; null for text). */
  readonly postInstruction: number | null;
}

/** Tokens of one prompt and where its parts start. `at` names it in errors ("set A prompt 3"). */
export function preparePrompt(model: Model, prompt: string, format: PromptFormat, at: string): PreparedPrompt {
  const { bosToken } = model.info;
  const tokens = format === "chat" ? promptTokens(model, { messages: [{ role: "user", content: prompt }] }) : promptTokens(model, { prompt });
  const first = bosToken !== null && tokens[0] === bosToken ? 1 : 0;
  if (tokens.length <= first) throw new SteerkitError("INVALID_REQUEST", `${at} is empty: it has no tokens besides BOS`);
  if (format === "text") return { tokens, first, postInstruction: null };
  const full = model.applyChatTemplate([{ role: "user", content: prompt }], { addGenerationPrompt: true });
  const end = prompt === "" ? -1 : full.lastIndexOf(prompt);
  if (end < 0) throw new SteerkitError("INVALID_REQUEST", `${at}: the chat template's output does not contain the prompt, so its post-instruction tokens cannot be found`);
  const prefix = model.tokenize(full.slice(0, end + prompt.length), { addBos: bosToken !== null, special: true });
  let common = 0;
  while (common < prefix.length && common < tokens.length && prefix[common] === tokens[common]) common++;
  if (common >= tokens.length) throw new SteerkitError("INVALID_REQUEST", `${at}: the chat template puts no tokens after the user's message, so there are no post-instruction tokens`);
  return { tokens, first, postInstruction: common };
}
