/**
 * Feature discovery: which SAE latents a concept moves, and what a latent reads, so a person can
 * pick and label the latent to steer with `sae-clamp`.
 *
 * - {@link contrastLatents}: latents whose mean activation per token differs most between two
 *   prompt sets (e.g. prompts about dogs vs. others; or the same prompts with and without a
 *   steering chain: each set may carry plugins).
 * - {@link topContexts}: the token windows where one latent fires hardest over a text set.
 * - {@link activeLatents}: the strongest latents at each token of one text (`steerkit sae features`).
 *
 * Residuals are collected through the SDK: each text is one `generate` call (greedy, one token, so
 * the prompt's prefill is the pass read) with a read-only plugin at the SAE's point that encodes
 * the rows where the backend hands them over (no copies kept). At the last block llama.cpp hands
 * over only the last row (README, "Rows"), so discovery there sees one token per text.
 *
 * Deterministic: the same model, SAE and texts give the same result (greedy, fixed order, ties
 * broken by index). Progress goes to an optional callback; library code never prints.
 */
import * as v from "valibot";
import type { Artifacts } from "../core/artifacts.ts";
import type { Model } from "../core/backend.ts";
import type { ChainPlugin } from "../core/chain.ts";
import { SteerkitError } from "../core/errors.ts";
import { generate } from "../core/generate.ts";
import { definePlugin } from "../core/plugin.ts";
import { parsePoint, pointName, type HookPoint } from "../core/sites.ts";
import { latentPlan, latentReader, type LatentReader, type TopKMode } from "./latents.ts";
import { pickSaePoint } from "./point.ts";
import { newRowScale, type Sae } from "./sae.ts";

/** Texts, optionally run under a steering chain. */
export interface PromptSet {
  readonly texts: readonly string[];
  readonly plugins?: readonly ChainPlugin[];
}

export interface DiscoverOptions {
  /** TopK SAEs: "exact" (default) or "approximate" (see latents.ts). */
  readonly topk?: TopKMode;
  /** Leave out the BOS row (its residual is an outlier that dominates means); default true. */
  readonly skipBos?: boolean;
  /**
   * "text" (default): each text is the prompt as it is. "chat": each text is one user turn, rendered
   * with the model's chat template and its generation prompt, as the model sees a request.
   */
  readonly format?: "text" | "chat";
  /** Artifacts the sets' plugins load. */
  readonly artifacts?: Artifacts;
  /** Called after each text with (texts done, texts in all). */
  readonly onProgress?: (done: number, total: number) => void;
}

export interface LatentContrast {
  readonly latent: number;
  readonly meanA: number;
  readonly meanB: number;
  /** meanA − meanB. */
  readonly diff: number;
  /** Tokens where the latent was active (> 0), per set. */
  readonly activeA: number;
  readonly activeB: number;
}

export interface ContrastResult {
  readonly point: string;
  /** Tokens read per set (BOS rows left out by default). */
  readonly tokensA: number;
  readonly tokensB: number;
  /** Ranked: largest |diff| first (or largest diff toward `higherIn`), ties by latent index. */
  readonly latents: LatentContrast[];
}

export interface ActivatingContext {
  /** Index of the text in the input. */
  readonly text: number;
  readonly position: number;
  readonly activation: number;
  readonly token: number;
  readonly tokenText: string;
  /** Text of the tokens just before and after (the window). */
  readonly before: string;
  readonly after: string;
}

export interface TopContextsResult {
  readonly point: string;
  readonly latent: number;
  readonly tokens: number;
  /** Tokens where the latent was active (> 0). */
  readonly active: number;
  /** Strongest first; ties by text index, then position. */
  readonly contexts: ActivatingContext[];
}

export interface TokenLatents {
  readonly position: number;
  readonly token: number;
  readonly text: string;
  /** Active latents, strongest first (ties by index). */
  readonly latents: { readonly latent: number; readonly activation: number }[];
}

/** Reads the rows of one point during the prompt's prefill; `onRows` runs inside the hook. */
const capture = definePlugin({
  name: "steerkit-sae-capture",
  enforce: "post", // after the set's own steering: it reads what the steered model computes
  options: v.object({
    point: v.string(),
    onRows: v.custom<(data: Float32Array, positions: ArrayLike<number>, tokens: ArrayLike<number>) => void>((f) => typeof f === "function"),
  }),
  needs: ["residual:read"],
  create: (o) => ({
    points: [parsePoint(o.point)],
    onResidual(x, ctx) {
      if (ctx.step === 0) o.onRows(x.data, ctx.positions, ctx.tokens);
    },
  }),
});

/** Check the SAE against the model and pick the point; errors are INVALID_REQUEST naming what to fix. */
export function discoveryPoint(model: Model, sae: Sae, point: HookPoint | string | undefined, overridePoint = false): HookPoint {
  const { dModel, nLayers } = model.info;
  if (sae.info.dIn !== dModel) throw new SteerkitError("INVALID_REQUEST", `the SAE reads vectors of ${sae.info.dIn} values (d_in); the model's residual has ${dModel}`);
  const given = point === undefined ? undefined : typeof point === "string" ? point : pointName(point);
  const picked = pickSaePoint(sae.info, "the SAE", given, overridePoint, nLayers);
  if ("error" in picked) throw new SteerkitError("INVALID_REQUEST", `point: ${picked.error}`);
  return picked.point;
}

/**
 * Run `text` (prefill only) and call `onRow` for every row at `point`, with the row's activations
 * from `reader`. Returns the prompt's tokens.
 */
async function readText(
  model: Model,
  point: HookPoint,
  text: string,
  plugins: readonly ChainPlugin[],
  options: DiscoverOptions,
  reader: LatentReader,
  acts: Float64Array,
  onRow: (position: number, token: number) => void,
): Promise<number[]> {
  const skipBos = options.skipBos ?? true;
  const bos = model.info.bosToken;
  const row = newRowScale();
  const d = model.info.dModel;
  const onRows = (data: Float32Array, positions: ArrayLike<number>, tokens: ArrayLike<number>) => {
    for (let r = 0, off = 0; off < data.length; r++, off += d) {
      const position = positions[r]!;
      const token = tokens[r]!;
      if (skipBos && position === 0 && token === bos) continue;
      reader.read(data, off, acts, row);
      onRow(position, token);
    }
  };
  const result = await generate(model, {
    ...(options.format === "chat" ? { messages: [{ role: "user" as const, content: text }] } : { prompt: text }),
    maxTokens: 1,
    temperature: 0,
    seed: 0,
    artifacts: options.artifacts,
    plugins: [...plugins, capture({ point: pointName(point), onRows })],
  });
  return result.promptTokens;
}

const asSet = (s: PromptSet | readonly string[]): PromptSet => (Array.isArray(s) ? { texts: s as readonly string[] } : (s as PromptSet));

/**
 * Latents whose mean activation per token differs most between set A and set B.
 * @example
 * ```ts
 * const r = await contrastLatents(model, sae, "resid_post.2", dogPrompts, otherPrompts, { top: 10, higherIn: "a" });
 * console.log(r.latents[0]); // { latent: 17, meanA: 1.9, meanB: 0.1, diff: 1.8, activeA: 40, activeB: 3 }
 * ```
 */
export async function contrastLatents(
  model: Model,
  sae: Sae,
  point: HookPoint | string | undefined,
  setA: PromptSet | readonly string[],
  setB: PromptSet | readonly string[],
  options: DiscoverOptions & {
    readonly top?: number;
    readonly higherIn?: "a" | "b";
    readonly overridePoint?: boolean;
    /**
     * "all" (default): every prompt token counts. "last": only each prompt's last token, where a
     * chat model decides how to answer (with `format: "chat"`, the end of the generation prompt).
     */
    readonly positions?: "all" | "last";
  } = {},
): Promise<ContrastResult> {
  const at = discoveryPoint(model, sae, point, options.overridePoint);
  const n = sae.info.dSae;
  const plan = latentPlan(sae, Array.from({ length: n }, (_, i) => i), options.topk);
  const reader = latentReader(plan);
  const acts = new Float64Array(n);
  const a = asSet(setA), b = asSet(setB);
  const total = a.texts.length + b.texts.length;
  let done = 0;
  const lastOnly = options.positions === "last";
  const last = new Float64Array(n);
  const side = async (set: PromptSet) => {
    const sum = new Float64Array(n);
    const active = new Uint32Array(n);
    let tokens = 0;
    const add = (row: Float64Array) => {
      tokens++;
      for (let i = 0; i < n; i++) {
        const f = row[i]!;
        if (f !== 0) {
          sum[i] = sum[i]! + f;
          if (f > 0) active[i]!++;
        }
      }
    };
    for (const text of set.texts) {
      let lastPosition = -1;
      const prompt = await readText(model, at, text, set.plugins ?? [], options, reader, acts, (position) => {
        if (!lastOnly) return add(acts);
        if (position > lastPosition) {
          lastPosition = position;
          last.set(acts);
        }
      });
      if (lastOnly) {
        if (lastPosition !== prompt.length - 1) {
          throw new SteerkitError("INVALID_REQUEST", `positions "last": the backend handed over no row for the last token of ${JSON.stringify(text)} at ${pointName(at)}`);
        }
        add(last);
      }
      options.onProgress?.(++done, total);
    }
    return { sum, active, tokens };
  };
  const A = await side(a);
  const B = await side(b);
  const all: LatentContrast[] = [];
  for (let i = 0; i < n; i++) {
    const meanA = A.tokens ? A.sum[i]! / A.tokens : 0;
    const meanB = B.tokens ? B.sum[i]! / B.tokens : 0;
    all.push({ latent: i, meanA, meanB, diff: meanA - meanB, activeA: A.active[i]!, activeB: B.active[i]! });
  }
  const score = (c: LatentContrast) => (options.higherIn === "a" ? c.diff : options.higherIn === "b" ? -c.diff : Math.abs(c.diff));
  const ranked = all.filter((c) => score(c) > 0).sort((x, y) => score(y) - score(x) || x.latent - y.latent);
  return { point: pointName(at), tokensA: A.tokens, tokensB: B.tokens, latents: ranked.slice(0, options.top ?? 20) };
}

/**
 * The token windows where `latent` fires hardest over `texts`.
 * @example
 * ```ts
 * const { contexts } = await topContexts(model, sae, "resid_post.2", 17, corpus, { top: 5 });
 * for (const c of contexts) console.log(c.activation.toFixed(2), `${c.before}[${c.tokenText}]${c.after}`);
 * ```
 */
export async function topContexts(
  model: Model,
  sae: Sae,
  point: HookPoint | string | undefined,
  latent: number,
  texts: PromptSet | readonly string[],
  options: DiscoverOptions & { readonly top?: number; readonly before?: number; readonly after?: number; readonly overridePoint?: boolean } = {},
): Promise<TopContextsResult> {
  const at = discoveryPoint(model, sae, point, options.overridePoint);
  if (!(Number.isInteger(latent) && latent >= 0 && latent < sae.info.dSae)) {
    throw new SteerkitError("INVALID_REQUEST", `latent ${latent} is out of range: the SAE has ${sae.info.dSae} latents (0..${sae.info.dSae - 1})`);
  }
  const reader = latentReader(latentPlan(sae, [latent], options.topk));
  const acts = new Float64Array(1);
  const set = asSet(texts);
  const top = options.top ?? 10;
  const kept: { text: number; position: number; activation: number; tokens: number[] | null }[] = [];
  let tokens = 0, active = 0;
  for (let t = 0; t < set.texts.length; t++) {
    const mine: typeof kept = [];
    const prompt = await readText(model, at, set.texts[t]!, set.plugins ?? [], options, reader, acts, (position) => {
      tokens++;
      const f = acts[0]!;
      if (!(f > 0)) return;
      active++;
      mine.push({ text: t, position, activation: f, tokens: null });
    });
    for (const c of mine) {
      c.tokens = prompt;
      // Keep the best `top`: strongest first, ties by text then position (insertion keeps it sorted).
      let i = kept.length;
      while (i > 0 && kept[i - 1]!.activation < c.activation) i--;
      if (i < top) kept.splice(i, 0, c);
      if (kept.length > top) kept.pop();
    }
    options.onProgress?.(t + 1, set.texts.length);
  }
  const before = options.before ?? 8, after = options.after ?? 3;
  const contexts = kept.map((c) => {
    const toks = c.tokens!;
    const token = toks[c.position]!;
    // Detokenize the window as one piece and cut it, so word-initial spaces survive (a token
    // detokenized alone loses its leading space in SentencePiece vocabularies).
    const from = Math.max(0, c.position - before);
    const prefix = model.detokenize(toks.slice(from, c.position));
    const through = model.detokenize(toks.slice(from, c.position + 1));
    const whole = model.detokenize(toks.slice(from, c.position + 1 + after));
    const cut = through.startsWith(prefix) && whole.startsWith(through);
    return {
      text: c.text,
      position: c.position,
      activation: c.activation,
      token,
      tokenText: cut ? through.slice(prefix.length) : model.detokenize([token]),
      before: prefix,
      after: cut ? whole.slice(through.length) : model.detokenize(toks.slice(c.position + 1, c.position + 1 + after)),
    };
  });
  return { point: pointName(at), latent, tokens, active, contexts };
}

/** The `top` strongest active latents at every token of `text` (BOS row included unless skipped). */
export async function activeLatents(
  model: Model,
  sae: Sae,
  point: HookPoint | string | undefined,
  text: string,
  options: DiscoverOptions & { readonly top?: number; readonly overridePoint?: boolean } = {},
): Promise<{ point: string; tokens: TokenLatents[] }> {
  const at = discoveryPoint(model, sae, point, options.overridePoint);
  const n = sae.info.dSae;
  const reader = latentReader(latentPlan(sae, Array.from({ length: n }, (_, i) => i), options.topk));
  const acts = new Float64Array(n);
  const top = options.top ?? 10;
  const rows: TokenLatents[] = [];
  await readText(model, at, text, [], { skipBos: false, ...options }, reader, acts, (position, token) => {
    const latents: { latent: number; activation: number }[] = [];
    for (let i = 0; i < n; i++) if (acts[i]! > 0) latents.push({ latent: i, activation: acts[i]! });
    latents.sort((x, y) => y.activation - x.activation || x.latent - y.latent);
    rows.push({ position, token, text: model.detokenize([token]), latents: latents.slice(0, top) });
  });
  options.onProgress?.(1, 1);
  return { point: pointName(at), tokens: rows };
}
