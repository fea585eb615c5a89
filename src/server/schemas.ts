/**
 * Request bodies of the OpenAI-compatible routes, as valibot schemas for Hono's validator. Fields
 * OpenAI defines are accepted with its names and ranges; fields Steerkit cannot honour (n > 1,
 * logprobs, presence/frequency penalties) are refused naming the field rather than ignored, so a
 * client never believes it got what it asked for. Extensions: `steering` (a preset name or a
 * recipe), `trace` (per-token values of an SAE latent or a direction, see trace.ts), `top_k`, `min_p`, `repetition_penalty`, `ignore_eos`. Unknown fields (`user`, ...) are
 * dropped, as OpenAI-compatible servers do.
 */
import * as v from "valibot";
import { Trace } from "./trace.ts";

const Int = (min: number) => v.pipe(v.number(), v.integer(), v.minValue(min));
const unsupported = (what: string) => v.optional(v.nullable(v.never(`${what} is not supported by this server`)));

/** A preset's name, or a recipe (its entries are checked by the plugin registry, untrusted). */
export const Steering = v.union(
  [v.pipe(v.string(), v.minLength(1), v.maxLength(128)), v.array(v.unknown())],
  "steering must be a preset name or a recipe (an array of { plugin, options })",
);

const Sampling = {
  model: v.optional(v.nullable(v.string())),
  max_tokens: v.optional(v.nullable(Int(1))),
  max_completion_tokens: v.optional(v.nullable(Int(1))),
  temperature: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(2)))),
  top_p: v.optional(v.nullable(v.pipe(v.number(), v.gtValue(0), v.maxValue(1)))),
  top_k: v.optional(v.nullable(Int(0))),
  min_p: v.optional(v.nullable(v.pipe(v.number(), v.minValue(0), v.maxValue(1)))),
  repetition_penalty: v.optional(v.nullable(v.pipe(v.number(), v.gtValue(0), v.maxValue(10)))),
  seed: v.optional(v.nullable(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff)))),
  stop: v.optional(v.nullable(v.union([v.pipe(v.string(), v.minLength(1)), v.pipe(v.array(v.pipe(v.string(), v.minLength(1), v.maxLength(256))), v.maxLength(16))]))),
  ignore_eos: v.optional(v.nullable(v.boolean())),
  stream: v.optional(v.nullable(v.boolean())),
  stream_options: v.optional(v.nullable(v.object({ include_usage: v.optional(v.nullable(v.boolean())) }))),
  n: v.optional(v.nullable(v.literal(1, "only n = 1 is supported"))),
  logprobs: v.optional(v.nullable(v.literal(false, "logprobs are not supported by this server"))),
  presence_penalty: v.optional(v.nullable(v.literal(0, "presence_penalty is not supported; use repetition_penalty"))),
  frequency_penalty: v.optional(v.nullable(v.literal(0, "frequency_penalty is not supported; use repetition_penalty"))),
  steering: v.optional(v.nullable(Steering)),
  trace: v.optional(v.nullable(Trace)),
};

const TextPart = v.object({ type: v.literal("text", 'only content parts of type "text" are supported'), text: v.string() });

/** A chat message; content parts of type text are joined. */
export const Message = v.object({
  role: v.picklist(["system", "developer", "user", "assistant"], 'role must be "system", "developer", "user" or "assistant"'),
  content: v.union([v.string(), v.pipe(v.array(TextPart), v.minLength(1))], "content must be a string or an array of text parts"),
});

export const ChatBody = v.object({
  ...Sampling,
  messages: v.pipe(v.array(Message), v.minLength(1, "messages must not be empty"), v.maxLength(1024)),
  prompt: v.optional(v.never("give messages or prompt, not both: /v1/chat/completions takes messages (prompt is for /v1/completions)")),
});

export const CompletionBody = v.object({
  ...Sampling,
  prompt: v.union([v.string(), v.tuple([v.string()])], "prompt must be a string (or an array of one string)"),
  messages: v.optional(v.never("give messages or prompt, not both: /v1/completions takes prompt (messages are for /v1/chat/completions)")),
  echo: unsupported("echo"),
  suffix: unsupported("suffix"),
  best_of: v.optional(v.nullable(v.literal(1, "only best_of = 1 is supported"))),
});

export type ChatBody = v.InferOutput<typeof ChatBody>;
export type CompletionBody = v.InferOutput<typeof CompletionBody>;
export type SamplingFields = Pick<ChatBody, keyof typeof Sampling>;
