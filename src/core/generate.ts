/**
 * Generation: prefill, decode, logits hooks, sampling, stop conditions, streaming and abort, on any
 * backend. One loop serves `generate` (a promise of the result) and `stream` (a ReadableStream of
 * token events); the request and token middleware of the chain wrap it.
 */
import * as v from "valibot";
import type { Artifacts } from "./artifacts.ts";
import type { ChatMessage, Model } from "./backend.ts";
import { chatPromptTokens } from "./chat-tokens.ts";
import { compileChain, preparePlugins, preparePluginsSync, type Chain, type ChainPlugin } from "./chain.ts";
import { SteerkitError } from "./errors.ts";
import type { RequestContext, TokenContext } from "./plugin.ts";
import { createSampler } from "./sampling.ts";
import { validateSync } from "./schema.ts";
import { IncrementalDetokenizer, StopStringMatcher } from "./text-stream.ts";

const Message = v.object({ role: v.string(), content: v.string() });
const Int = (min: number) => v.pipe(v.number(), v.integer(), v.minValue(min));
const Num = (min: number, max = Infinity) => v.pipe(v.number(), v.minValue(min), v.maxValue(max));

/** The sampling and stopping options, validated (the same shape the CLI and the server accept). */
export const SamplingSchema = v.object({
  maxTokens: v.optional(Int(1), 128),
  stop: v.optional(v.array(v.pipe(v.string(), v.minLength(1))), []),
  ignoreEos: v.optional(v.boolean(), false),
  temperature: v.optional(Num(0, 100), 0.8),
  topK: v.optional(Int(0), 40),
  topP: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1)), 0.95),
  minP: v.optional(Num(0, 1), 0.05),
  repetitionPenalty: v.optional(v.pipe(v.number(), v.gtValue(0)), 1),
  repetitionWindow: v.optional(Int(0), 64),
  seed: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(0xffffffff))),
  fastPath: v.optional(v.boolean(), true),
});

const InputSchema = v.object({
  prompt: v.optional(v.string()),
  messages: v.optional(v.pipe(v.array(Message), v.minLength(1))),
  tokens: v.optional(v.pipe(v.array(Int(0)), v.minLength(1))),
  addBos: v.optional(v.boolean()),
});

export type SamplingInput = v.InferInput<typeof SamplingSchema>;

export interface GenerateOptions extends SamplingInput {
  /** Plain text prompt (completion). Exactly one of prompt, messages, tokens. */
  readonly prompt?: string;
  /** Chat messages, rendered with the model's chat template. */
  readonly messages?: readonly ChatMessage[];
  /** Prompt token ids, used as they are. */
  readonly tokens?: readonly number[];
  /** Prepend BOS to a text prompt (default: true where the model has a BOS token). */
  readonly addBos?: boolean;
  /** The steering chain, in order (see `enforce` for pre/post): configured plugins, or ones `preparePlugins` prepared. */
  readonly plugins?: readonly ChainPlugin[];
  /** Named artifacts the plugins may load (SAEs, directions). */
  readonly artifacts?: Artifacts;
  readonly signal?: AbortSignal;
}

export type FinishReason = "length" | "eos" | "stop" | "context" | "plugin" | "respond";

export interface GenerationResult {
  readonly text: string;
  readonly promptTokens: number[];
  readonly tokens: number[];
  readonly finishReason: FinishReason;
  /** The seed used (the one given, or the one drawn) so the run can be repeated. */
  readonly seed: number;
  readonly timings: { readonly prefillMs: number; readonly decodeMs: number; readonly tokensPerSecond: number };
}

export type GenerationEvent =
  | { readonly type: "token"; readonly token: number; readonly text: string; readonly step: number }
  /** Text held back until the end (a tail that might have begun a stop string, an incomplete character). */
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "done"; readonly result: GenerationResult };

/**
 * Generate to the end and resolve with the result. Rejects with `signal.reason` when aborted.
 * @example
 * ```ts
 * const model = await openModel("models/stories260K.gguf");
 * const result = await generate(model, {
 *   prompt: "Once upon a time",
 *   maxTokens: 32,
 *   seed: 1,
 *   plugins: [addVector({ points: ["resid_post.2"], vector, scale: 4 })],
 * });
 * console.log(result.text, result.finishReason);
 * ```
 */
export function generate(model: Model, options: GenerateOptions): Promise<GenerationResult> {
  try {
    return prepare(model, options)(() => {});
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Generate as a stream of events (`token`s, then one `done`). Invalid input (options, prompt,
 * plugins) throws here at once, so a server can answer it before streaming — except what a
 * plugin's async `prepare` finds (an unknown artifact, a file of the wrong width): prepare such
 * plugins first with `preparePlugins`, or it errors the stream before any token. Errors during
 * generation error the stream. Cancelling the stream aborts the generation and frees its sequence.
 * @example
 * ```ts
 * for await (const ev of stream(model, { messages: [{ role: "user", content: "Hi" }], signal: AbortSignal.timeout(5000) })) {
 *   if (ev.type === "token") process.stdout.write(ev.text);
 * }
 * ```
 */
export function stream(model: Model, options: GenerateOptions): ReadableStream<GenerationEvent> {
  const cancel = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, cancel.signal]) : cancel.signal;
  const execute = prepare(model, { ...options, signal });
  return new ReadableStream<GenerationEvent>({
    start(controller) {
      execute((ev) => controller.enqueue(ev)).then(
        (result) => {
          controller.enqueue({ type: "done", result });
          controller.close();
        },
        (error) => {
          if (!cancel.signal.aborted) controller.error(error);
        },
      );
    },
    cancel(reason) {
      cancel.abort(reason ?? new DOMException("stream cancelled", "AbortError"));
    },
  });
}

/** Tokens of the prompt as `generate` would build them. */
export function promptTokens(model: Model, input: Pick<GenerateOptions, "prompt" | "messages" | "tokens" | "addBos">): number[] {
  const given = [input.prompt, input.messages, input.tokens].filter((x) => x !== undefined).length;
  if (given !== 1) {
    throw new SteerkitError("INVALID_REQUEST", `give exactly one of prompt, messages or tokens (got ${given})`);
  }
  const addBos = input.addBos ?? model.info.bosToken !== null;
  if (input.tokens) {
    const bad = input.tokens.findIndex((t) => !Number.isInteger(t) || t < 0 || t >= model.info.vocabSize);
    if (bad >= 0) throw new SteerkitError("INVALID_REQUEST", `tokens[${bad}] = ${input.tokens[bad]} is not a token id of this model (0..${model.info.vocabSize - 1})`);
    return [...input.tokens];
  }
  if (input.messages) {
    // The template gets an empty bos_token: BOS is added by tokenisation, never twice. Message
    // contents are tokenized as text: a message saying "</s>" never becomes the EOS token.
    return chatPromptTokens(model, input.messages, addBos);
  }
  return model.tokenize(input.prompt!, { addBos });
}

const nextTick = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Settle with `work`, or reject with the signal's reason as soon as it aborts, whichever comes
 * first. Plugin middleware is awaited through this: an async `onRequest`/`onToken` that never
 * resolves must not keep a cancelled request (its sequence, its server slot) alive. The abandoned
 * promise is left to settle on its own, its outcome ignored.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) {
    work.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => {});
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}

type Execute = (emit: (ev: GenerationEvent) => void) => Promise<GenerationResult>;

/**
 * Everything that can fail because of the input — options, prompt, recipe, plugin creation — fails
 * here, synchronously, before a sequence exists; what is returned runs the generation.
 */
function prepare(model: Model, options: GenerateOptions): Execute {
  const { plugins = [], signal } = options;
  validateSync(InputSchema, pickInput(options), "generate");
  const o = validateSync(SamplingSchema, pickSampling(options), "generate");
  const seed = o.seed ?? (crypto.getRandomValues(new Uint32Array(1))[0]! >>> 0);
  signal?.throwIfAborted();

  const prompt = promptTokens(model, options);
  const { contextLength, eosTokens, vocabSize } = model.info;
  if (prompt.length === 0) throw new SteerkitError("INVALID_REQUEST", "the prompt is empty (no tokens)");
  if (prompt.length >= contextLength) {
    throw new SteerkitError("CONTEXT_OVERFLOW", `the prompt has ${prompt.length} tokens; the context holds ${contextLength} (leave room for at least one generated token)`);
  }
  const generated: number[] = [];
  const chainOptions = { fastPath: o.fastPath, promptTokens: prompt, generatedTokens: generated, artifacts: options.artifacts };
  // Plugins whose preparation is synchronous or cached compile now, so their bad input throws
  // here; an async preparation (loading an artifact) runs when generation starts.
  const ready = preparePluginsSync(model, plugins, chainOptions);
  let compiled: Chain | null = ready ? compileChain(ready, model, chainOptions) : null;
  const sampler = createSampler(vocabSize, { ...o, seed });
  const eos = new Set(eosTokens);

  return async (emit) => {
    const chain = compiled ?? compileChain(await preparePlugins(model, plugins, chainOptions), model, chainOptions);
    compiled = null; // one execution per prepare
    const history = [...prompt];
    let text = "";
    let finishReason: FinishReason = "length";
    let responded: string | null = null;
    let prefillMs = 0;
    let decodeMs = 0;

    const request: RequestContext = {
      model: model.info,
      promptTokens: prompt,
      state: new Map(),
      get text() {
        return text;
      },
      generatedTokens: generated,
      respond(t: string) {
        responded = t;
      },
    };

    let ran = false;
    // Set when the request has ended (returned, failed or was cancelled): a token middleware that
    // was abandoned while hung and calls `next` later must find nothing to run.
    let ended = false;
    // Settles once the sequence is freed. A cancel ends the wait below at once (a hung middleware must
    // not hold the request), but the sequence may still be in a forward pass (batched: until the pass
    // ends): the request is over only when its sequence is freed, so a server that hands the
    // request's slot to the next one finds the sequence gone.
    let freed: Promise<void> = Promise.resolve();
    const loop = async () => {
      signal?.throwIfAborted(); // an onRequest abandoned while hung that calls next() late starts nothing

      ran = true;
      const sequence = model.createSequence({ hooks: chain.residual });
      let markFreed!: () => void;
      freed = new Promise<void>((resolve) => (markFreed = resolve));
      try {
        const detok = new IncrementalDetokenizer((t) => model.detokenize(t), prompt);
        const stops = new StopStringMatcher(o.stop);
        chain.setStep("prefill", 0);
        let t0 = performance.now();
        let logits = await sequence.prefill(prompt);
        prefillMs = performance.now() - t0;
        throwHookError();
        for (let step = 1; ; step++) {
          signal?.throwIfAborted();
          if (chain.hasLogitsHooks) logits = chain.logits(logits, history.length - 1);
          const token = sampler.sample(logits, history);
          if (eos.has(token) && !o.ignoreEos) {
            finishReason = "eos";
            break;
          }
          const shown = stops.push(detok.push(token));
          let accepted = false;
          const tokenCtx: TokenContext = { request, token, text: shown, step };
          const onToken = chain.token(tokenCtx, async () => {
            if (ended) return; // abandoned by a cancel while its middleware hung
            accepted = true;
            generated.push(token);
            history.push(token);
            text += shown;
            if (shown.length > 0 || !stops.stopped) emit({ type: "token", token, text: shown, step });
          });
          await untilAborted(onToken, signal);
          if (!accepted) {
            finishReason = "plugin";
            break;
          }
          if (stops.stopped) {
            finishReason = "stop";
            break;
          }
          if (step >= o.maxTokens) break;
          if (history.length >= contextLength) {
            finishReason = "context";
            break;
          }
          await nextTick(); // let other requests, stream readers and abort signals run between tokens
          signal?.throwIfAborted();
          chain.setStep("decode", step);
          t0 = performance.now();
          logits = await sequence.decode(token);
          decodeMs += performance.now() - t0;
          throwHookError();
        }
        const tail = stops.push(detok.flush()) + stops.flush();
        if (tail) {
          text += tail;
          emit({ type: "text", text: tail });
        }
      } finally {
        ended = true;
        try {
          sequence.free();
        } finally {
          markFreed(); // never leave the request waiting on a free that threw
        }
      }
    };

    function throwHookError(): void {
      if (chain.residual.error) throw chain.residual.error;
    }

    try {
      await untilAborted(chain.request(request, loop), signal);
    } finally {
      ended = true;
      await freed;
    }
    if (responded !== null) {
      text = responded;
      finishReason = "respond";
    } else if (!ran) {
      finishReason = "plugin";
    }
    const decoded = Math.max(0, generated.length - 1);
    return {
      text,
      promptTokens: prompt,
      tokens: generated,
      finishReason,
      seed,
      timings: { prefillMs, decodeMs, tokensPerSecond: decodeMs > 0 ? (decoded * 1000) / decodeMs : 0 },
    };
  };
}

function pickInput(o: GenerateOptions) {
  return { prompt: o.prompt, messages: o.messages, tokens: o.tokens, addBos: o.addBos };
}

function pickSampling(o: GenerateOptions): SamplingInput {
  const keys = Object.keys(SamplingSchema.entries) as (keyof SamplingInput)[];
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as SamplingInput;
}
