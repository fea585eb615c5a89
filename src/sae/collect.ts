/**
 * Residuals for SAE training, collected through the SDK itself: each text runs through `generate`
 * (prompt only, greedy, one sampled token that is thrown away) with a read-only plugin at the
 * chosen point, so collection works on every backend, sees exactly what steering plugins see, and
 * costs a backend no write-back. Rows come back in text order, one `[dModel]` row per token:
 * deterministic for a given model, backend and text list.
 *
 * A model can also write its own corpus (`generateCorpus`): stories260K writes children's stories,
 * which is the distribution its residual stream is used on.
 */
import * as v from "valibot";
import type { Model } from "../core/backend.ts";
import { SteerkitError } from "../core/errors.ts";
import { generate } from "../core/generate.ts";
import { definePlugin } from "../core/plugin.ts";
import { canonicalPoint, parsePoint, pointName, type HookPoint } from "../core/sites.ts";

export interface CollectOptions {
  /** Keep the BOS row (position 0, the BOS token): default false, as SAELens and sparsify drop it (its norm is an outlier). */
  readonly keepBos?: boolean;
  /** At most this many tokens of each text (BOS included); default: the model's context minus one. */
  readonly maxTokensPerText?: number;
  /** Stop after this many rows in total (default: no limit). */
  readonly maxRows?: number;
  /** Called after each text with (texts done, rows so far). */
  readonly onProgress?: (textsDone: number, rows: number) => void;
  readonly signal?: AbortSignal;
}

export interface Residuals {
  /** `[rows, dModel]`, row-major. */
  readonly data: Float32Array;
  readonly rows: number;
  readonly dModel: number;
  /** The canonical point the rows were read at. */
  readonly point: HookPoint;
  /** Rows per text, in text order (a text may contribute 0 rows: empty, or only BOS). */
  readonly rowsPerText: number[];
}

/** Hands the rows of the prompt's forward pass to a callback. Internal: never in a recipe. */
const residualTap = definePlugin({
  name: "steerkit-residual-tap",
  options: v.object({
    point: v.string(),
    onRows: v.custom<(data: Float32Array, rows: number, positions: ArrayLike<number>, tokens: ArrayLike<number>) => void>((f) => typeof f === "function"),
  }),
  needs: ["residual:read"],
  trustedOptions: ["onRows"],
  create(o, { model }) {
    const point = canonicalPoint(parsePoint(o.point), model.nLayers);
    return {
      points: [point],
      writes: [],
      onResidual(x, ctx) {
        if (ctx.phase === "prefill") o.onRows(x.data, x.data.length / model.dModel, ctx.positions, ctx.tokens);
      },
    };
  },
});

/**
 * Run `texts` through `model` and return the residual rows at `point` (`"resid_post.2"` or a
 * HookPoint). Each text is tokenized with BOS (when the model has one) and cut to
 * `maxTokensPerText`.
 */
export async function collectResiduals(model: Model, texts: readonly string[], point: string | HookPoint, options: CollectOptions = {}): Promise<Residuals> {
  const { dModel, nLayers, contextLength, bosToken } = model.info;
  let p: HookPoint;
  try {
    p = canonicalPoint(typeof point === "string" ? parsePoint(point) : point, nLayers);
  } catch (e) {
    throw new SteerkitError("INVALID_REQUEST", `collectResiduals: ${(e as Error).message}`);
  }
  const limit = Math.min(options.maxTokensPerText ?? Infinity, contextLength - 1);
  if (!(limit >= 1)) throw new SteerkitError("INVALID_REQUEST", `collectResiduals: maxTokensPerText must be >= 1, got ${options.maxTokensPerText}`);
  const maxRows = options.maxRows ?? Infinity;
  const chunks: Float32Array[] = [];
  const rowsPerText: number[] = [];
  let total = 0;
  for (let t = 0; t < texts.length && total < maxRows; t++) {
    options.signal?.throwIfAborted();
    const tokens = model.tokenize(texts[t]!, { addBos: true }).slice(0, limit);
    const wanted = tokens.length - (!options.keepBos && bosToken !== null && tokens[0] === bosToken ? 1 : 0);
    if (wanted <= 0) {
      rowsPerText.push(0);
      continue;
    }
    const got = new Float32Array(tokens.length * dModel);
    const seen = new Uint8Array(tokens.length);
    const onRows = (data: Float32Array, rows: number, positions: ArrayLike<number>) => {
      for (let r = 0; r < rows; r++) {
        const pos = positions[r]!;
        if (pos < 0 || pos >= tokens.length) continue;
        got.set(data.subarray(r * dModel, (r + 1) * dModel), pos * dModel);
        seen[pos] = 1;
      }
    };
    await generate(model, { tokens, maxTokens: 1, temperature: 0, ignoreEos: true, plugins: [residualTap({ point: pointName(p), onRows })], signal: options.signal });
    const first = tokens.length - wanted;
    for (let pos = first; pos < tokens.length; pos++) {
      if (!seen[pos]) {
        throw new SteerkitError(
          "BACKEND_FAILED",
          `collectResiduals: the ${model.info.backend} backend passed no row for position ${pos} at ${pointName(p)}` +
            (p.layer === nLayers - 1 ? " (llama.cpp computes only the last row at the last layer: collect at an earlier layer, or on another backend)" : ""),
        );
      }
    }
    const take = Math.min(wanted, maxRows - total);
    chunks.push(got.subarray(first * dModel, (first + take) * dModel));
    rowsPerText.push(take);
    total += take;
    options.onProgress?.(t + 1, total);
  }
  const data = new Float32Array(total * dModel);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return { data, rows: total, dModel, point: p, rowsPerText };
}

export interface CorpusOptions {
  /** Story openings, used in turn (default: a few children's-story openings). */
  readonly prompts?: readonly string[];
  /** How many texts to write. */
  readonly n: number;
  /** Text i is sampled with seed `seed + i` (mod 2^32): the corpus is reproducible. */
  readonly seed: number;
  /** Tokens to generate per text (default 256). */
  readonly maxTokens?: number;
  /** Sampling temperature (default 0.8; top-k 40, top-p 0.95, min-p 0.05 as `generate`). */
  readonly temperature?: number;
  readonly onProgress?: (textsDone: number) => void;
  readonly signal?: AbortSignal;
}

/** Openings in the style of TinyStories, the data stories260K was trained on. */
export const STORY_PROMPTS: readonly string[] = [
  "Once upon a time",
  "One day,",
  "Lily and Ben",
  "There was a little dog",
  "It was a rainy day",
  "Tom was sad because",
  "The sun was shining",
  "Once upon a time, there was a big",
];

/** Let the model write `n` texts (prompt + continuation each). Deterministic for a seed on one backend. */
export async function generateCorpus(model: Model, options: CorpusOptions): Promise<string[]> {
  const prompts = options.prompts ?? STORY_PROMPTS;
  if (prompts.length === 0) throw new SteerkitError("INVALID_REQUEST", "generateCorpus: give at least one prompt");
  if (!Number.isInteger(options.n) || options.n < 0) throw new SteerkitError("INVALID_REQUEST", `generateCorpus: n must be an integer >= 0, got ${options.n}`);
  const out: string[] = [];
  for (let i = 0; i < options.n; i++) {
    const prompt = prompts[i % prompts.length]!;
    const r = await generate(model, {
      prompt,
      maxTokens: options.maxTokens ?? 256,
      temperature: options.temperature ?? 0.8,
      seed: (options.seed + i) >>> 0,
      signal: options.signal,
    });
    out.push(prompt + r.text);
    options.onProgress?.(i + 1);
  }
  return out;
}
