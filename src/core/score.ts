/**
 * Scoring a continuation: the log-probability of each of its tokens after a prompt, with a steering
 * chain attached — what multiple-choice accuracy (the log-likelihood of each choice) and perplexity
 * need, on any backend.
 *
 * Why token by token: a backend's `prefill` resolves to the last row's logits only (the contract
 * every adapter implements), so the prompt is prefilled once and each continuation token is then fed
 * as a decode step, exactly as `generate` feeds back a token it sampled. This costs one forward pass
 * per continuation token, but it makes the score mean what a demanding user expects: the chain sees
 * the continuation's rows as "generated" rows (a recipe limited to `positions: "generated"` edits
 * them, one limited to `"prompt"` does not), llama.cpp's last layer sees the same rows as when it
 * generates, and `onLogits` hooks shape the distribution the token is scored under. The score of a
 * continuation is therefore the log-probability that `generate` at temperature 1 with no top-k/top-p
 * truncation would sample it under the same chain.
 *
 * The request and token middleware (`onRequest`, `onToken`) do not run: scoring delivers no tokens.
 *
 * Tokenization at the boundary follows lm-evaluation-harness: prompt and prompt + continuation are
 * tokenized, and the continuation's tokens are those after their longest common prefix (so "Once
 * upon" + " a time" scores the tokens of " a time" as they appear in the whole text, never a
 * separately tokenized piece with its own leading-space marker). Chat messages are rendered with
 * the model's template and generation prompt, as `generate({ messages })` renders them.
 */
import * as v from "valibot";
import type { Artifacts } from "./artifacts.ts";
import type { ChatMessage, Model } from "./backend.ts";
import { chatPromptTokens } from "./chat-tokens.ts";
import { compileChain, preparePlugins, type ChainPlugin } from "./chain.ts";
import { SteerkitError } from "./errors.ts";
import { promptTokens } from "./generate.ts";
import { validateSync } from "./schema.ts";

export interface ScoreOptions {
  /** Plain text prompt. Exactly one of prompt, messages, tokens. */
  readonly prompt?: string;
  /** Chat messages, rendered with the model's chat template and its generation prompt. */
  readonly messages?: readonly ChatMessage[];
  /** Prompt token ids, used as they are. */
  readonly tokens?: readonly number[];
  /** Prepend BOS to a text or chat prompt (default: true where the model has a BOS token). */
  readonly addBos?: boolean;
  /** The continuation as text. Exactly one of continuation, continuationTokens. */
  readonly continuation?: string;
  /** The continuation's token ids, used as they are. */
  readonly continuationTokens?: readonly number[];
  /** The steering chain, as for `generate`. */
  readonly plugins?: readonly ChainPlugin[];
  readonly artifacts?: Artifacts;
  /** Let backends apply affine edits natively (default true). */
  readonly fastPath?: boolean;
  readonly signal?: AbortSignal;
}

export interface ScoreResult {
  /** The prompt's tokens (those the first continuation token is predicted from). */
  readonly promptTokens: number[];
  /** The continuation's tokens, in order. */
  readonly tokens: number[];
  /** Natural-log probability of each continuation token given everything before it. */
  readonly logprobs: number[];
  /** Sum of `logprobs`: the continuation's log-likelihood. */
  readonly logprob: number;
  /** Whether every continuation token was the most likely one (greedy decoding would produce it). */
  readonly greedy: boolean;
}

const Int0 = v.pipe(v.number(), v.integer(), v.minValue(0));
const ScoreSchema = v.object({
  prompt: v.optional(v.string()),
  messages: v.optional(v.pipe(v.array(v.object({ role: v.string(), content: v.string() })), v.minLength(1))),
  tokens: v.optional(v.pipe(v.array(Int0), v.minLength(1))),
  addBos: v.optional(v.boolean()),
  continuation: v.optional(v.string()),
  continuationTokens: v.optional(v.array(Int0)),
  fastPath: v.optional(v.boolean()),
});

/**
 * The log-probability of a continuation after a prompt, token by token, with a steering chain.
 * @example
 * ```ts
 * const model = await openModel("models/stories260K.gguf");
 * const plain = await score(model, { prompt: "Once upon a time", continuation: " there was a dog" });
 * const steered = await score(model, { prompt: "Once upon a time", continuation: " there was a dog",
 *   plugins: [addVector({ points: ["resid_post.2"], vector: "dog", scale: 4 })], artifacts });
 * console.log(plain.logprob, steered.logprob, steered.logprobs);
 * ```
 */
export async function score(model: Model, options: ScoreOptions): Promise<ScoreResult> {
  validateSync(ScoreSchema, pick(options), "score");
  const { prompt, tokens: continuation } = scoreTokens(model, options);
  const { contextLength, vocabSize } = model.info;
  const bad = continuation.findIndex((t) => t >= vocabSize);
  if (bad >= 0) throw new SteerkitError("INVALID_REQUEST", `score: continuationTokens[${bad}] = ${continuation[bad]} is not a token id of this model (0..${vocabSize - 1})`);
  if (prompt.length + continuation.length - 1 > contextLength) {
    throw new SteerkitError("CONTEXT_OVERFLOW", `score: the prompt (${prompt.length} tokens) and continuation (${continuation.length}) need ${prompt.length + continuation.length - 1} positions; the context holds ${contextLength}`);
  }
  options.signal?.throwIfAborted();
  const fed: number[] = [];
  const chainOptions = { fastPath: options.fastPath ?? true, promptTokens: prompt, generatedTokens: fed, artifacts: options.artifacts };
  const chain = compileChain(await preparePlugins(model, options.plugins ?? [], chainOptions), model, chainOptions);
  const sequence = model.createSequence({ hooks: chain.residual });
  const logprobs: number[] = [];
  let greedy = true;
  try {
    chain.setStep("prefill", 0);
    let logits = await sequence.prefill(prompt);
    for (let i = 0; ; i++) {
      if (chain.residual.error) throw chain.residual.error;
      if (chain.hasLogitsHooks) logits = chain.logits(logits, prompt.length + i - 1);
      const token = continuation[i]!;
      const { logprob, isMax } = tokenLogprob(logits, token);
      logprobs.push(logprob);
      greedy &&= isMax;
      if (i === continuation.length - 1) break;
      options.signal?.throwIfAborted();
      fed.push(token);
      chain.setStep("decode", i + 1);
      logits = await sequence.decode(token);
    }
  } finally {
    sequence.free();
  }
  return { promptTokens: prompt, tokens: continuation, logprobs, logprob: logprobs.reduce((a, b) => a + b, 0), greedy };
}

/**
 * The prompt and continuation tokens `score` uses (see the module comment for the boundary rule).
 * @example
 * ```ts
 * const { prompt, tokens } = scoreTokens(model, { prompt: "Once upon", continuation: " a time" });
 * model.detokenize(tokens); // "a time" (SentencePiece drops the leading space when detokenizing alone)
 * ```
 */
export function scoreTokens(model: Model, options: ScoreOptions): { prompt: number[]; tokens: number[] } {
  if ((options.continuation === undefined) === (options.continuationTokens === undefined)) {
    throw new SteerkitError("INVALID_REQUEST", "score: give exactly one of continuation or continuationTokens");
  }
  const forms = [options.prompt, options.messages, options.tokens].filter((x) => x !== undefined).length;
  if (forms !== 1) throw new SteerkitError("INVALID_REQUEST", `score: give exactly one of prompt, messages or tokens (got ${forms})`);
  const addBos = options.addBos ?? model.info.bosToken !== null;
  let prompt: number[];
  let tokens: number[];
  if (options.continuationTokens !== undefined) {
    prompt = promptTokens(model, { ...pickPrompt(options), addBos });
    tokens = [...options.continuationTokens];
  } else if (options.tokens !== undefined) {
    // No text to continue: the continuation is tokenized on its own (give continuationTokens for exact control).
    prompt = promptTokens(model, { tokens: options.tokens });
    tokens = model.tokenize(options.continuation!, { addBos: false });
  } else if (options.messages !== undefined) {
    prompt = chatPromptTokens(model, options.messages, addBos);
    // The boundary as the template's text continues: tokenize the rendering with and without it.
    const rendered = model.applyChatTemplate(options.messages, { addGenerationPrompt: true });
    tokens = afterCommonPrefix(model.tokenize(rendered + options.continuation!, { addBos, special: true }), model.tokenize(rendered, { addBos, special: true }));
  } else {
    const whole = model.tokenize(options.prompt! + options.continuation!, { addBos });
    const alone = model.tokenize(options.prompt!, { addBos });
    const common = commonPrefix(whole, alone);
    prompt = whole.slice(0, common);
    tokens = whole.slice(common);
  }
  if (prompt.length === 0) throw new SteerkitError("INVALID_REQUEST", "score: the prompt has no tokens, so nothing predicts the continuation's first token (give a prompt, or let BOS be added)");
  if (tokens.length === 0) throw new SteerkitError("INVALID_REQUEST", "score: the continuation has no tokens");
  return { prompt, tokens };
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

function afterCommonPrefix(whole: readonly number[], prefix: readonly number[]): number[] {
  return whole.slice(commonPrefix(whole, prefix));
}

/** log softmax(logits)[token], in float64, and whether the token is an argmax. */
function tokenLogprob(logits: Float32Array, token: number): { logprob: number; isMax: boolean } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! - max);
  const x = logits[token]!;
  return { logprob: x - max - Math.log(z), isMax: x === max };
}

function pickPrompt(o: ScoreOptions) {
  return o.prompt !== undefined ? { prompt: o.prompt } : o.messages !== undefined ? { messages: o.messages } : { tokens: o.tokens };
}

function pick(o: ScoreOptions) {
  const { prompt, messages, tokens, addBos, continuation, continuationTokens, fastPath } = o;
  return Object.fromEntries(Object.entries({ prompt, messages, tokens, addBos, continuation, continuationTokens, fastPath }).filter(([, x]) => x !== undefined));
}
