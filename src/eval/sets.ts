/**
 * The data sets of `steerkit eval`, one JSON object per line (JSONL):
 *
 * - prompt sets: `{"id": string, "prompt": string}` or `{"id": string, "messages": [{"role":
 *   "user"|"assistant"|"system", "content": string}, ...]}` — a multi-turn conversation ending with
 *   the user turn the model answers;
 * - multiple choice: `{"id": string, "question": string, "choices": string[], "answer": number}`
 *   (`answer` indexes `choices`), scored by each choice's log-likelihood after the question;
 * - perplexity: `{"id": string, "text": string}`.
 *
 * Other fields on a line are kept in the item (`extra`, e.g. a category) and ignored otherwise.
 * Blank lines are skipped. A malformed line is an error naming the file and line, or, with
 * `onInvalidLine: "skip"`, a reported skip. Ids key the results (resuming, the audit file), so they
 * must be unique in a file; a set with no items is an error.
 */
import { createHash } from "node:crypto";
import * as v from "valibot";
import type { ChatMessage } from "../core/backend.ts";
import { readRegularText } from "../formats/files.ts";
import { EvalError } from "./errors.ts";

const Id = v.pipe(v.string(), v.minLength(1), v.maxLength(256));
const Message = v.object({ role: v.picklist(["user", "assistant", "system"], 'role: "user", "assistant" or "system"'), content: v.string() });

const SinglePromptLine = v.looseObject({ id: Id, prompt: v.string() });
const ConversationLine = v.looseObject({
  id: Id,
  messages: v.pipe(
    v.array(Message),
    v.minLength(1),
    v.check((m) => m[m.length - 1]!.role === "user", "the last message must be the user turn the model answers (role \"user\")"),
  ),
});
const ChoiceLine = v.pipe(
  v.looseObject({
    id: Id,
    question: v.string(),
    choices: v.pipe(v.array(v.pipe(v.string(), v.minLength(1, "a choice must not be empty"))), v.minLength(2, "at least two choices")),
    answer: v.pipe(v.number(), v.integer(), v.minValue(0)),
  }),
  v.check((x) => x.answer < x.choices.length, "answer must index choices (0-based)"),
);
const TextLine = v.looseObject({ id: Id, text: v.pipe(v.string(), v.minLength(1, "text must not be empty")) });

export interface PromptItem {
  readonly id: string;
  /** A single prompt, or null when the item is a conversation. */
  readonly prompt: string | null;
  readonly messages: readonly ChatMessage[] | null;
  readonly extra: Readonly<Record<string, unknown>>;
}
export interface ChoiceItem {
  readonly id: string;
  readonly question: string;
  readonly choices: readonly string[];
  readonly answer: number;
  readonly extra: Readonly<Record<string, unknown>>;
}
export interface TextItem {
  readonly id: string;
  readonly text: string;
  readonly extra: Readonly<Record<string, unknown>>;
}

/** A skipped line (with `onInvalidLine: "skip"`). */
export interface SkippedLine {
  readonly file: string;
  readonly line: number;
  readonly reason: string;
}

export interface ReadOptions {
  readonly onInvalidLine?: "stop" | "skip";
  /** Keep only the first n items. */
  readonly limit?: number;
  /** Called for each skipped line. */
  readonly onSkip?: (skip: SkippedLine) => void;
}

export interface DataSet<T> {
  readonly file: string;
  readonly items: readonly T[];
  readonly skipped: readonly SkippedLine[];
  /** sha256 of each item's JSON, by id: a changed item is not a finished one. */
  readonly hashes: ReadonlyMap<string, string>;
}

type Kind = "prompt" | "multiple-choice" | "perplexity";
/** A prompt line is a conversation when it has "messages" (so its errors are about messages), else a single prompt. */
const schemaFor = (kind: Kind, json: unknown) =>
  kind === "multiple-choice" ? ChoiceLine : kind === "perplexity" ? TextLine : typeof json === "object" && json !== null && "messages" in json ? ConversationLine : SinglePromptLine;
const KNOWN = { prompt: ["id", "prompt", "messages"], "multiple-choice": ["id", "question", "choices", "answer"], perplexity: ["id", "text"] };

/**
 * Read a prompt set.
 * @example
 * ```ts
 * const set = readPromptSet("unsafe.jsonl", { onInvalidLine: "skip" });
 * for (const s of set.skipped) console.error(`${s.file}:${s.line}: ${s.reason}`);
 * set.items[0]; // { id: "u1", prompt: "Tell me a story about ...", messages: null, extra: {} }
 * ```
 */
export function readPromptSet(file: string, options: ReadOptions = {}): DataSet<PromptItem> {
  return readSet(file, "prompt", options, (x, extra) => ({
    id: x.id as string,
    prompt: typeof x.prompt === "string" ? x.prompt : null,
    messages: Array.isArray(x.messages) ? (x.messages as ChatMessage[]).map((m) => ({ role: m.role, content: m.content })) : null,
    extra,
  }));
}

/**
 * Read a multiple-choice set.
 * @example
 * ```ts
 * const set = readChoiceSet("cloze.jsonl");
 * set.items[0]; // { id: "c1", question: "Lily saw a", choices: [" dog", " car"], answer: 0, extra: {} }
 * ```
 */
export function readChoiceSet(file: string, options: ReadOptions = {}): DataSet<ChoiceItem> {
  return readSet(file, "multiple-choice", options, (x, extra) => ({
    id: x.id as string,
    question: x.question as string,
    choices: x.choices as string[],
    answer: x.answer as number,
    extra,
  }));
}

/**
 * Read a perplexity set.
 * @example
 * ```ts
 * const set = readTextSet("stories.jsonl", { limit: 50 });
 * set.items.length; // at most 50
 * ```
 */
export function readTextSet(file: string, options: ReadOptions = {}): DataSet<TextItem> {
  return readSet(file, "perplexity", options, (x, extra) => ({ id: x.id as string, text: x.text as string, extra }));
}

function readSet<T extends { id: string }>(file: string, kind: Kind, options: ReadOptions, make: (x: Record<string, unknown>, extra: Record<string, unknown>) => T): DataSet<T> {
  const raw = readRegularText(file, (reason) => {
    throw new EvalError(`${file}: cannot read the ${kind} set (${reason})`);
  }, { expected: `a ${kind} set (JSONL)` });
  const items: T[] = [];
  const skipped: SkippedLine[] = [];
  const hashes = new Map<string, string>();
  const firstLine = new Map<string, number>();
  const lines = raw.split("\n");
  for (let i = 0; i < lines.length; i++) {
    if (options.limit !== undefined && items.length >= options.limit) break;
    const line = lines[i]!.replace(/\r$/, "");
    if (line.trim() === "") continue;
    const fail = (reason: string) => {
      if (options.onInvalidLine !== "skip") throw new EvalError(`${file}:${i + 1}: ${reason}`);
      const skip = { file, line: i + 1, reason };
      skipped.push(skip);
      options.onSkip?.(skip);
    };
    let json: unknown;
    try {
      json = JSON.parse(line);
    } catch (e) {
      fail(`not valid JSON (${(e as Error).message})`);
      continue;
    }
    if (kind === "prompt" && typeof json === "object" && json !== null && "prompt" in json && "messages" in json) {
      fail('give either "prompt" or "messages", not both');
      continue;
    }
    const result = v.safeParse(schemaFor(kind, json), json);
    if (!result.success) {
      fail(result.issues.map((issue) => `${v.getDotPath(issue) ?? "line"}: ${issue.message}`).join("; "));
      continue;
    }
    const x = result.output as Record<string, unknown>;
    const id = x.id as string;
    const earlier = firstLine.get(id);
    if (earlier !== undefined) {
      fail(`id "${id}" was already used on line ${earlier} (ids key the results: make them unique)`);
      continue;
    }
    firstLine.set(id, i + 1);
    const extra = Object.fromEntries(Object.entries(x).filter(([k]) => !KNOWN[kind].includes(k)));
    const item = make(x, extra);
    hashes.set(id, createHash("sha256").update(JSON.stringify({ ...item, extra: undefined })).digest("hex").slice(0, 16));
    items.push(item);
  }
  if (items.length === 0) {
    const why = skipped.length ? ` (all ${skipped.length} non-blank lines were skipped as invalid)` : "";
    throw new EvalError(`${file}: the ${kind} set has no items${why}`);
  }
  return { file, items, skipped, hashes };
}
