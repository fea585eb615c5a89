/**
 * Direction extraction through the SDK: two prompt sets run through the model (one `generate`
 * prefill each, greedy, with a read-only plugin at every chosen point, as `collectResiduals` in
 * src/sae/collect.ts does: every backend, the rows steering plugins see, no write-back), one
 * summary row per prompt and point, then per point either
 * - `"mean-diff"`: difference of means, `mean(A) - mean(B)` (Arditi et al. 2024), raw length; or
 * - `"pca-diff"`: repeng's first principal component of the paired differences, unit length, sign
 *   so that A projects above B in most pairs (math.ts).
 *
 * The row a prompt contributes (`positions`): `"last"` (the last prompt token: with the chat
 * format, the last token of the generation prompt), `"mean"` (the mean over the prompt's rows, BOS
 * left out), `"post-instruction"` (the mean over the chat template's tokens after the user
 * message; needs the chat format; prompts.ts), or `"-k"` (the k-th token from the end: "-1" is
 * "last").
 *
 * Arditi et al. do not average the post-instruction tokens: each of them (counted from the end,
 * i = -1, -2, ...) gives its own candidate per layer, and selection picks the best (position,
 * layer) pair. `extractPerPosition` does that in one prefill per prompt: one extraction per
 * post-instruction offset, for the offsets every prompt has (the template's suffix has the same
 * length for every prompt unless a token merges across the user message's end).
 *
 * Also recorded, per point: the mean L2 norm of the residual rows used (for norm-relative
 * `add-vector`), the direction's norm, its cosine with the previous chosen point's direction, and
 * how far apart the two sets' projections lie (math.ts `separation`).
 */
import * as v from "valibot";
import type { Model } from "../core/backend.ts";
import { SteerkitError } from "../core/errors.ts";
import { generate } from "../core/generate.ts";
import { definePlugin } from "../core/plugin.ts";
import { resolvePoints, type PointsSpec } from "../core/points.ts";
import { pointIndex, pointName, type HookPoint } from "../core/sites.ts";
import type { Direction } from "./artifact.ts";
import { writeDirectionFile } from "./file.ts";
import { cosine, differenceOfMeans, norm, pcaOfDifferences, separation, type Separation } from "./math.ts";
import { hashPromptSet, preparePrompt, type PreparedPrompt, type PromptFormat } from "./prompts.ts";

export type ExtractMethod = "mean-diff" | "pca-diff";
/** A token counted from the end of the prompt: "-1" is the last one. */
export type TokenFromEnd = `-${number}`;
export type ExtractPositions = "last" | "mean" | "post-instruction" | TokenFromEnd;
export const EXTRACT_METHODS: readonly ExtractMethod[] = ["mean-diff", "pca-diff"];
export const EXTRACT_POSITIONS: readonly ExtractPositions[] = ["last", "mean", "post-instruction"];

/** True for "last", "mean", "post-instruction" and "-k" (k >= 1). */
export function isExtractPositions(p: string): p is ExtractPositions {
  return (EXTRACT_POSITIONS as readonly string[]).includes(p) || /^-[1-9]\d{0,5}$/.test(p);
}

export interface ExtractOptions {
  /** Where to read, as the shared `points` option: "all", ["resid_post.*"], ["resid_post.1-3"], ... */
  readonly points: PointsSpec;
  /** Default "last". */
  readonly positions?: ExtractPositions;
  /** Default "mean-diff". */
  readonly method?: ExtractMethod;
  /** "text" (default) or "chat" (each prompt as a user message with the model's chat template). */
  readonly format?: PromptFormat;
  /** The `model` header (default: the model's own name, e.g. GGUF general.name). */
  readonly modelName?: string;
  /** Called after each prompt with (prompts done, total prompts). */
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

export interface PointSummary {
  readonly point: string;
  /** L2 norm of the direction (1 for pca-diff). */
  readonly norm: number;
  /** Mean L2 norm of the residual rows the direction came from (both sets). */
  readonly meanResidualNorm: number;
  /** Cosine with the previous chosen point's direction (null for the first). */
  readonly cosinePrevious: number | null;
  /** The two sets' summary rows projected on the unit direction. */
  readonly separation: Separation;
  /** pca-diff only: share of the centred differences' variance the component explains. */
  readonly explainedVariance?: number;
}

export interface Extraction {
  /** Per canonical point name, in forward order. */
  readonly vectors: Map<string, Float32Array>;
  readonly meanNorms: Map<string, number>;
  readonly summary: readonly PointSummary[];
  /** The direction file's header: provenance (see file.ts). */
  readonly metadata: Record<string, string>;
}

/** Reads every row of the prompt's forward pass at the chosen points. Internal: never in a recipe. */
const directionTap = definePlugin({
  name: "steerkit-direction-tap",
  options: v.object({
    points: v.array(v.string()),
    onRows: v.custom<(point: HookPoint, data: Float32Array, positions: ArrayLike<number>) => void>((f) => typeof f === "function"),
  }),
  needs: ["residual:read"],
  trustedOptions: ["onRows"],
  prepare: (o, { model }) => resolvePoints(o.points, model),
  create(o, { prepared }) {
    return {
      points: prepared,
      writes: [],
      onResidual(x, ctx) {
        if (ctx.phase === "prefill") o.onRows(ctx.point, x.data, ctx.positions);
      },
    };
  },
});

/** Extract one direction per chosen point from prompt sets A and B (A is the side the direction points to). */
export async function extractDirections(model: Model, setA: readonly string[], setB: readonly string[], options: ExtractOptions): Promise<Extraction> {
  const positions = options.positions ?? "last";
  const [extraction] = await extractAt(model, setA, setB, options, [positions], (prompt) => [rowRange(prompt, positions)]);
  return extraction!;
}

/** One extraction per post-instruction token, counted from the end of the prompt. */
export interface PositionedExtraction {
  /** "-1" (the last token), "-2", ... */
  readonly position: TokenFromEnd;
  readonly extraction: Extraction;
}

/**
 * Arditi et al.'s candidates: one extraction per post-instruction token position (chat format),
 * from one prefill per prompt. The offsets are those every prompt has: -1 down to -(the shortest
 * post-instruction suffix).
 *
 * @example
 * const candidates = await extractPerPosition(model, harmful, harmless, { points: "all", format: "chat" });
 * for (const c of candidates) saveExtraction(`refusal.pos${c.position}.safetensors`, c.extraction);
 */
export async function extractPerPosition(model: Model, setA: readonly string[], setB: readonly string[], options: Omit<ExtractOptions, "positions">): Promise<PositionedExtraction[]> {
  if ((options.format ?? "text") !== "chat") throw new SteerkitError("INVALID_REQUEST", "extract directions: per-position candidates are the chat template's post-instruction tokens: they need the chat format");
  let shortest = Infinity;
  for (const [side, set] of [["A", setA], ["B", setB]] as const) {
    set.forEach((p, k) => {
      const prepared = preparePrompt(model, p, "chat", `set ${side} prompt ${k + 1}`);
      shortest = Math.min(shortest, prepared.tokens.length - prepared.postInstruction!);
    });
  }
  if (!Number.isFinite(shortest)) shortest = 1; // an empty set: extractAt reports it
  const labels = Array.from({ length: shortest }, (_, i) => `-${i + 1}` as TokenFromEnd);
  const extractions = await extractAt(model, setA, setB, options, labels, (prompt) => labels.map((l) => rowRange(prompt, l)));
  return labels.map((position, i) => ({ position, extraction: extractions[i]! }));
}

interface SummaryRows {
  /** Per prompt of each set, the mean of its chosen rows (n x dModel). */
  readonly a: Float32Array;
  readonly b: Float32Array;
  normSum: number;
  normCount: number;
}

/**
 * The shared pass: every prompt prefilled once, its rows at the chosen points averaged over each
 * of `ranges(prompt)` (one row range per label), then one direction per (label, point).
 */
async function extractAt(
  model: Model,
  setA: readonly string[],
  setB: readonly string[],
  options: ExtractOptions,
  labels: readonly ExtractPositions[],
  ranges: (prompt: PreparedPrompt) => [number, number][],
): Promise<Extraction[]> {
  const { dModel, nLayers } = model.info;
  const method = options.method ?? "mean-diff";
  const format = options.format ?? "text";
  const fail = (msg: string): never => {
    throw new SteerkitError("INVALID_REQUEST", `extract directions: ${msg}`);
  };
  if (!EXTRACT_METHODS.includes(method)) fail(`method must be one of ${EXTRACT_METHODS.join(", ")}, got "${method}"`);
  for (const positions of labels) if (!isExtractPositions(positions)) fail(`positions must be one of ${EXTRACT_POSITIONS.join(", ")} or "-k" (the k-th token from the end), got "${positions}"`);
  if (format !== "text" && format !== "chat") fail(`format must be "text" or "chat", got "${format}"`);
  if (labels.includes("post-instruction") && format !== "chat") fail(`positions "post-instruction" needs the chat format (the tokens a chat template puts after the user message)`);
  if (setA.length === 0 || setB.length === 0) fail(`both prompt sets need at least one prompt (A has ${setA.length}, B has ${setB.length})`);
  if (setA.length !== setB.length) fail(`the prompt sets must have the same size (A has ${setA.length}, B has ${setB.length}): pairs are compared, and the means weigh both sides equally`);
  if (method === "pca-diff" && setA.length < 2) fail("pca-diff needs at least 2 pairs of prompts");
  let points: HookPoint[];
  try {
    points = resolvePoints(options.points, model.info);
  } catch (e) {
    return fail(`points: ${(e as Error).message}`);
  }
  const names = points.map(pointName);
  const slot = new Map(points.map((p, i) => [pointIndex(p, nLayers), i]));

  const n = setA.length;
  const rows: SummaryRows[][] = labels.map(() => points.map(() => ({ a: new Float32Array(n * dModel), b: new Float32Array(n * dModel), normSum: 0, normCount: 0 })));
  const total = 2 * n;
  let done = 0;
  for (const [side, set] of [["A", setA], ["B", setB]] as const) {
    for (let k = 0; k < n; k++) {
      options.signal?.throwIfAborted();
      const at = `set ${side} prompt ${k + 1}`;
      const prompt = preparePrompt(model, set[k]!, format, at);
      if (prompt.tokens.length >= model.info.contextLength) fail(`${at} has ${prompt.tokens.length} tokens; the context holds ${model.info.contextLength}`);
      const spans = ranges(prompt);
      spans.forEach(([from, to], r) => {
        if (from < 0 || to <= from) fail(`${at} has ${prompt.tokens.length} tokens: none at positions "${labels[r]}"`);
      });
      const sums = spans.map(() => points.map(() => new Float64Array(dModel)));
      const seen = spans.map(() => points.map(() => 0));
      const onRows = (point: HookPoint, data: Float32Array, pos: ArrayLike<number>) => {
        const i = slot.get(pointIndex(point, nLayers));
        if (i === undefined) return;
        for (let row = 0; row < pos.length; row++) {
          const p = pos[row]!;
          for (let r = 0; r < spans.length; r++) {
            const [from, to] = spans[r]!;
            if (p < from || p >= to) continue;
            const acc = sums[r]![i]!;
            let ss = 0;
            for (let j = 0; j < dModel; j++) {
              const x = data[row * dModel + j]!;
              acc[j]! += x;
              ss += x * x;
            }
            rows[r]![i]!.normSum += Math.sqrt(ss);
            rows[r]![i]!.normCount++;
            seen[r]![i]!++;
          }
        }
      };
      await generate(model, { tokens: prompt.tokens, maxTokens: 1, temperature: 0, ignoreEos: true, plugins: [directionTap({ points: names, onRows })], signal: options.signal });
      spans.forEach(([from, to], r) => {
        for (let i = 0; i < points.length; i++) {
          if (seen[r]![i] !== to - from) {
            throw new SteerkitError(
              "BACKEND_FAILED",
              `extract directions: the ${model.info.backend} backend passed ${seen[r]![i]} of ${to - from} rows at ${names[i]}` +
                (points[i]!.layer === nLayers - 1 && points[i]!.site === "resid_post" ? ' (llama.cpp computes only the last row at the last layer: use positions "last" there, or an earlier layer)' : ""),
            );
          }
          const dest = side === "A" ? rows[r]![i]!.a : rows[r]![i]!.b;
          for (let j = 0; j < dModel; j++) dest[k * dModel + j] = sums[r]![i]![j]! / (to - from);
        }
      });
      options.onProgress?.(++done, total);
    }
  }
  return labels.map((positions, r) => finishExtraction(model, setA, setB, options, positions, names, rows[r]!, fail));
}

/** Directions, summaries and the file header from one label's summary rows. */
function finishExtraction(
  model: Model,
  setA: readonly string[],
  setB: readonly string[],
  options: ExtractOptions,
  positions: ExtractPositions,
  names: readonly string[],
  rows: readonly SummaryRows[],
  fail: (msg: string) => never,
): Extraction {
  const { dModel, nLayers } = model.info;
  const method = options.method ?? "mean-diff";
  const n = setA.length;
  const where = (name: string) => (positions.startsWith("-") ? `${name} (position ${positions})` : name);
  const vectors = new Map<string, Float32Array>();
  const meanNorms = new Map<string, number>();
  const summary: PointSummary[] = [];
  let previous: Float32Array | null = null;
  for (let i = 0; i < names.length; i++) {
    const { a, b, normSum, normCount } = rows[i]!;
    let vec: Float32Array;
    let explainedVariance: number | undefined;
    if (method === "mean-diff") vec = differenceOfMeans(a, b, n, dModel);
    else {
      try {
        const pca = pcaOfDifferences(a, b, n, dModel);
        vec = pca.direction;
        explainedVariance = pca.explainedVariance;
      } catch (e) {
        return fail(`at ${where(names[i]!)}: ${(e as Error).message}`);
      }
    }
    const size = norm(vec);
    if (!Number.isFinite(size)) fail(`the direction at ${where(names[i]!)} is not finite (norm ${size}): the model's residuals overflow there`);
    if (!(size > 0)) fail(`the direction at ${where(names[i]!)} is the zero vector: both sets give the same residuals there (at resid_pre.0 only the tokens matter); leave this point out`);
    vectors.set(names[i]!, vec);
    meanNorms.set(names[i]!, normSum / normCount);
    summary.push({
      point: names[i]!,
      norm: size,
      meanResidualNorm: normSum / normCount,
      cosinePrevious: previous ? cosine(previous, vec) : null,
      separation: separation(vec, a, b, dModel),
      ...(explainedVariance !== undefined ? { explainedVariance } : {}),
    });
    previous = vec;
  }
  const metadata: Record<string, string> = {
    model: options.modelName ?? model.info.name,
    architecture: model.info.architecture,
    backend: model.info.backend,
    d_model: String(dModel),
    n_layers: String(nLayers),
    method,
    positions,
    prompt_format: options.format ?? "text",
    prompt_set_a_sha256: hashPromptSet(setA),
    prompt_set_b_sha256: hashPromptSet(setB),
    prompt_set_a_size: String(setA.length),
    prompt_set_b_size: String(setB.length),
  };
  return { vectors, meanNorms, summary, metadata };
}

/** Positions [from, to) a prompt contributes. */
function rowRange(prompt: PreparedPrompt, positions: ExtractPositions): [number, number] {
  const end = prompt.tokens.length;
  if (positions === "last") return [end - 1, end];
  if (positions === "mean") return [prompt.first, end];
  if (positions === "post-instruction") return [prompt.postInstruction!, end];
  const k = Number(positions.slice(1));
  return [end - k, end - k + 1];
}

/**
 * An extraction as the `direction` artifact's value (what reading its saved file gives), for
 * `selectDirections` or a plugin without a round trip through a file.
 *
 * @example
 * const table = await selectDirections(model, candidates.map((c) => extractionDirection(c.extraction)), options);
 */
export function extractionDirection(extraction: Extraction): Direction {
  const first = extraction.vectors.values().next().value;
  return { vector: null, byPoint: extraction.vectors, width: first?.length ?? 0, meanNorms: extraction.meanNorms, metadata: extraction.metadata };
}

/** Write an extraction as a direction file (file.ts). */
export function saveExtraction(path: string, extraction: Extraction): void {
  writeDirectionFile(path, { vectors: extraction.vectors, meanNorms: extraction.meanNorms, metadata: extraction.metadata });
}
