/**
 * Capability scoring with a chain attached, through core's `score` (one forward pass per scored
 * token, the chain's edits applied as in generation):
 * - multiple choice: the log-likelihood of each choice as the continuation of the question (with one
 *   space between them where neither has one: `joinChoice`); the
 *   prediction is the most likely choice (ties: the first), and optionally the most likely after
 *   dividing by the choice's length in characters (lm-evaluation-harness's `acc_norm`) or tokens;
 * - perplexity: the log-likelihood of every token of the text after BOS; a set's perplexity is
 *   exp(-total log-likelihood / total tokens), token-weighted over the set.
 */
import type { Artifacts } from "../core/artifacts.ts";
import type { Model } from "../core/backend.ts";
import type { ChainPlugin } from "../core/chain.ts";
import { score } from "../core/score.ts";
import type { ChoiceItem, TextItem } from "./sets.ts";

export interface ScoringContext {
  readonly plugins: readonly ChainPlugin[];
  readonly artifacts?: Artifacts;
  /** Ask the question as a user message with the model's chat template. */
  readonly chat: boolean;
  readonly signal?: AbortSignal;
}

export interface ChoiceScore {
  /** Log-likelihood of each choice. */
  readonly logprobs: number[];
  /** Tokens of each choice. */
  readonly tokens: number[];
  /** Index of the most likely choice. */
  readonly predicted: number;
  /** Index of the most likely choice per character and per token. */
  readonly predictedPerChar: number;
  readonly predictedPerToken: number;
}

/**
 * Score every choice of a multiple-choice item.
 * @example
 * ```ts
 * const s = await scoreChoices(model, { id: "c1", question: "The cat sat on the", choices: [" mat", " sky"], answer: 0, extra: {} }, { plugins: [], chat: false });
 * s.predicted === 0; // the model prefers " mat"
 * ```
 */
export async function scoreChoices(model: Model, item: ChoiceItem, ctx: ScoringContext): Promise<ChoiceScore> {
  const logprobs: number[] = [];
  const tokens: number[] = [];
  for (const choice of item.choices) {
    const prompt = ctx.chat ? { messages: [{ role: "user", content: item.question }] } : { prompt: item.question };
    const continuation = ctx.chat ? choice : joinChoice(item.question, choice);
    const r = await score(model, { ...prompt, continuation, plugins: ctx.plugins, artifacts: ctx.artifacts, signal: ctx.signal });
    logprobs.push(r.logprob);
    tokens.push(r.tokens.length);
  }
  return {
    logprobs,
    tokens,
    predicted: argmax(logprobs),
    predictedPerChar: argmax(logprobs.map((l, i) => l / item.choices[i]!.length)),
    predictedPerToken: argmax(logprobs.map((l, i) => l / tokens[i]!)),
  };
}

export interface TextScore {
  /** Log-likelihood of the text's tokens after BOS. */
  readonly logprob: number;
  readonly tokens: number;
}

/**
 * Score a text for perplexity.
 * @example
 * ```ts
 * const s = await scoreText(model, { id: "s1", text: "Once upon a time there was a dog.", extra: {} }, { plugins: [], chat: false });
 * Math.exp(-s.logprob / s.tokens); // this text's perplexity
 * ```
 */
export async function scoreText(model: Model, item: TextItem, ctx: ScoringContext): Promise<TextScore> {
  const r = await score(model, { prompt: "", continuation: item.text, plugins: ctx.plugins, artifacts: ctx.artifacts, signal: ctx.signal });
  return { logprob: r.logprob, tokens: r.tokens.length };
}

/**
 * The continuation scored for a choice after a plain-text question: the choice, preceded by one
 * space when neither side has whitespace at the seam (lm-evaluation-harness's `target_delimiter`,
 * " " by default), so `"a glass of"` + `"water"` scores " water", and a set written with the space
 * in its choices (`" water"`) or at the end of its questions is scored the same.
 * @example
 * ```ts
 * joinChoice("a glass of", "water"); // " water"
 * joinChoice("a glass of", " water"); // " water"
 * joinChoice("Answer: ", "B"); // "B"
 * ```
 */
export function joinChoice(question: string, choice: string): string {
  return /\s$/.test(question) || /^\s/.test(choice) || question === "" ? choice : ` ${choice}`;
}

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i]! > xs[best]!) best = i;
  return best;
}
