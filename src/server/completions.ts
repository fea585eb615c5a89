/**
 * One completion request, from a validated body to tokens: steering resolved (a preset, or the
 * request's own recipe, untrusted) and prepared, the prompt bounded and tokenized, a sequence
 * slot held for exactly as long as the generation runs. Everything a request can get wrong fails
 * here, before a slot is taken or a token computed, as an error naming the field.
 *
 * Cost bounds, each checked before the work it bounds: the body size (Hono's body limit, before
 * parsing), the prompt's bytes (before tokenizing: a 50 MB prompt is refused without being
 * tokenized), the recipe's length (core's untrusted cap), `max_tokens` (the server's cap), and the
 * slots and queue (before a sequence is allocated).
 */
import { Buffer } from "node:buffer";
import { preparePlugins, type ChainPlugin } from "../core/chain.ts";
import { SteerkitError } from "../core/errors.ts";
import { promptTokens, stream, type GenerationEvent, type GenerationResult } from "../core/generate.ts";
import type { ChatMessage } from "../core/backend.ts";
import { ApiError, atField } from "./errors.ts";
import type { SamplingFields } from "./schemas.ts";
import type { ServerState } from "./state.ts";
import { tracePlugin, type TraceValue } from "./trace.ts";

export interface CompletionInput {
  readonly sampling: SamplingFields;
  /** Chat messages (contents already joined), or a text prompt. */
  readonly messages?: readonly ChatMessage[];
  readonly prompt?: string;
}

/** What a completion streams: the generation's events, trace values when asked for, or how it failed (always last). */
export type CompletionEvent = GenerationEvent | ({ readonly type: "trace" } & TraceValue) | { readonly type: "error"; readonly error: unknown };

export interface RunningCompletion {
  /** The generation's events, a failure as the last; cancelling stops it, and its slot is released once its sequence is freed. */
  readonly events: ReadableStream<CompletionEvent>;
  readonly promptTokens: number;
}

/**
 * Validate, prepare and start one completion.
 * @example
 * ```ts
 * const run = await startCompletion(state, { sampling: body, prompt: body.prompt }, c.req.raw.signal);
 * for await (const ev of run.events) if (ev.type === "done") return c.json(ev.result);
 * ```
 */
export async function startCompletion(state: ServerState, input: CompletionInput, clientSignal: AbortSignal): Promise<RunningCompletion> {
  const { model, limits } = state;
  const s = input.sampling;
  const started = performance.now();
  const maxField = s.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = s.max_completion_tokens ?? s.max_tokens ?? limits.defaultMaxTokens;
  if (maxTokens > limits.maxTokens) throw new ApiError(400, "invalid_request_error", "INVALID_REQUEST", `${maxField} is ${maxTokens}; this server generates at most ${limits.maxTokens} tokens per request`, maxField);

  const steering = await atField("steering", () => resolveSteering(state, s.steering));
  // Last in the chain: the trace reads the steered residual.
  // Values recorded before the event stream below exists (none with today's recorders: they record
  // generated rows only) wait here rather than being lost.
  const early: TraceValue[] = [];
  let onTrace: (r: TraceValue) => void = (r) => void early.push(r);
  const traced = s.trace ? await atField("trace", () => preparePlugins(model, [tracePlugin(s.trace!, (r) => onTrace(r))], { artifacts: state.artifacts })) : [];
  const plugins = [...steering, ...traced];

  const promptField = input.messages ? "messages" : "prompt";
  const tokens = await atField(promptField, () => {
    const text = input.messages ? input.messages.map((m) => m.content).join("") : input.prompt!;
    const maxBytes = model.info.contextLength * limits.maxPromptBytesPerToken;
    // A string of n UTF-16 units has at least n UTF-8 bytes... and at most 3n: the length alone
    // refuses a huge prompt without touching its bytes.
    if (text.length > maxBytes || Buffer.byteLength(text, "utf8") > maxBytes) {
      throw new SteerkitError("CONTEXT_OVERFLOW", `the ${promptField === "messages" ? "messages hold" : "prompt has"} ${Buffer.byteLength(text, "utf8")} bytes; for a context of ${model.info.contextLength} tokens this server reads at most ${maxBytes}`);
    }
    const ids = promptTokens(model, input.messages ? { messages: input.messages } : { prompt: input.prompt! });
    if (ids.length >= model.info.contextLength) {
      throw new SteerkitError("CONTEXT_OVERFLOW", `the prompt has ${ids.length} tokens; the context holds ${model.info.contextLength} (leave room for at least one generated token)`);
    }
    return ids;
  });

  const deadline = AbortSignal.timeout(limits.requestTimeoutMs);
  const generation = new AbortController();
  const signal = AbortSignal.any([clientSignal, deadline, state.closing, generation.signal]);
  const slot = await state.slots.acquire(signal).catch((e) => {
    throw timeoutAware(e, signal);
  });
  let finished = false;
  const release = () => {
    finished = true;
    slot();
  };
  // Bun aborts a request's signal when its client disconnects (and may after a complete answer).
  clientSignal.addEventListener("abort", () => finished || state.metrics.disconnected++, { once: true });
  let events: ReadableStream<GenerationEvent>;
  try {
    events = stream(model, {
      tokens,
      maxTokens,
      ...(s.temperature != null && { temperature: s.temperature }),
      ...(s.top_p != null && { topP: s.top_p }),
      ...(s.top_k != null && { topK: s.top_k }),
      ...(s.min_p != null && { minP: s.min_p }),
      ...(s.repetition_penalty != null && { repetitionPenalty: s.repetition_penalty }),
      ...(s.seed != null && { seed: s.seed }),
      ...(s.stop != null && { stop: typeof s.stop === "string" ? [s.stop] : s.stop }),
      ...(s.ignore_eos != null && { ignoreEos: s.ignore_eos }),
      plugins,
      artifacts: state.artifacts,
      signal,
    });
  } catch (e) {
    release();
    throw e;
  }
  const observed = observe(state, events, tokens.length, started, signal, release, (reason) => generation.abort(reason));
  onTrace = (r) => observed.push({ type: "trace", ...r });
  for (const r of early) onTrace(r);
  return { events: observed.events, promptTokens: tokens.length };
}

/** A preset by name (trusted, resolved at startup) or the request's recipe (untrusted), prepared. */
async function resolveSteering(state: ServerState, steering: string | unknown[] | null | undefined): Promise<ChainPlugin[]> {
  if (steering == null) return [];
  let plugins;
  if (typeof steering === "string") {
    plugins = state.presets.get(steering)?.plugins;
    if (!plugins) {
      const known = [...state.presets.keys()];
      throw new ApiError(400, "invalid_request_error", "UNKNOWN_PRESET", `no preset named "${steering}"; presets: ${known.join(", ") || "(none)"}`, "steering");
    }
  } else {
    plugins = await state.registry.resolve(steering, { trust: "untrusted", importPackages: false });
  }
  return preparePlugins(state.model, plugins, { artifacts: state.artifacts });
}

/**
 * Read the generation's events eagerly into a stream of our own, recording metrics, and release
 * the slot when the generation has really ended (its sequence freed). Eagerly, and with a failure
 * delivered as an `error` event rather than by erroring the stream: an errored stream drops the
 * tokens still queued in it, and the client must see every token that was generated before it.
 */
function observe(
  state: ServerState,
  events: ReadableStream<GenerationEvent>,
  prompt: number,
  started: number,
  signal: AbortSignal,
  release: () => void,
  abort: (reason: unknown) => void,
): { events: ReadableStream<CompletionEvent>; push: (ev: CompletionEvent) => void } {
  let out!: ReadableStreamDefaultController<CompletionEvent>;
  let open = true;
  const push = (ev: CompletionEvent) => open && out.enqueue(ev);
  void (async () => {
    const reader = events.getReader();
    let result: GenerationResult | null = null;
    let first = true;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (first && value.type === "token") {
          first = false;
          state.metrics.firstToken((performance.now() - started) / 1000);
        }
        if (value.type === "done") result = value.result;
        push(value);
      }
    } catch (e) {
      push({ type: "error", error: timeoutAware(e, signal) });
    }
    release();
    if (result) state.metrics.generation(prompt, result.tokens.length, (result.timings.prefillMs + result.timings.decodeMs) / 1000, result.timings.tokensPerSecond);
    else if (signal.aborted) state.metrics.cancelled++;
    if (open) out.close();
  })();
  const stream = new ReadableStream<CompletionEvent>({
    start(controller) {
      out = controller;
    },
    cancel(reason) {
      // Stop the generation; the pump above sees it end (sequence freed) and gives the slot back.
      open = false;
      abort(reason ?? new DOMException("the client went away", "AbortError"));
    },
  });
  return { events: stream, push };
}

/** An abort as what it means to the client: its deadline passed, or it was cancelled (it left, or the server is closing). */
function timeoutAware(e: unknown, signal: AbortSignal): unknown {
  if (!signal.aborted) return e;
  if (signal.reason instanceof DOMException && signal.reason.name === "TimeoutError") {
    return new ApiError(504, "timeout_error", "TIMEOUT", "the request took longer than this server allows and was stopped");
  }
  return new ApiError(503, "server_error", "CANCELLED", "the request was cancelled: the client left or the server is shutting down");
}
