/**
 * Direction selection as Arditi et al. (2024, section 2.4 / appendix C) select: every candidate
 * direction (one per point of a direction file) is scored on the model, through the SDK, by
 * - bypass: the mean score on set A (harmful) with the direction ablated at every point
 *   (`ablate-direction`, `points: "all"`): lower is better;
 * - induce: the mean score on set B (harmless) with the direction added at its own point
 *   (`add-vector`, every position, the raw vector): higher is better;
 * - kl: the mean KL(original || ablated) of B's next-token distributions: the ablation should
 *   leave harmless prompts alone.
 * Candidates are (position, point) pairs: pass one direction file per token position (as
 * `extractPerPosition` writes them, Arditi et al.'s post-instruction positions i = -1, -2, ...) and
 * every point of every file competes; a row names its position from the file's `positions` header.
 * Candidates in the last 20% of layers are skipped (their layer >= 0.8 n_layers), as in the paper;
 * the rest are kept when induce > baseline and kl < `maxKl` (paper: 0.1), and ranked by bypass,
 * then by point order so the ranking is deterministic. Filtered candidates follow, with the reason.
 *
 * The score is pluggable: a function of the next-token logits after each prompt. Default: the
 * log-probability mass of given tokens (`log Σ_t p(t)`), the paper's refusal-opening tokens ("I",
 * "As") for refusal, or a concept's own tokens (" dog") for a concept model such as stories260K.
 * One prefill per prompt and run, greedy, so the table is deterministic on a backend.
 */
import * as v from "valibot";
import type { Direction } from "./artifact.ts";
import type { Model } from "../core/backend.ts";
import { SteerkitError } from "../core/errors.ts";
import { generate } from "../core/generate.ts";
import type { ChainPlugin } from "../core/chain.ts";
import { definePlugin } from "../core/plugin.ts";
import { parsePoint } from "../core/sites.ts";
import { addVector, ablateDirection } from "../plugins/steering.ts";
import { preparePrompt, type PromptFormat } from "./prompts.ts";

/** A score of one prompt's next-token logits (higher = more of the behaviour, e.g. refusal). */
export type SelectScore = (logits: Float32Array) => number;

export interface SelectOptions {
  /** Set A: ablation should lower its score (refusal: harmful instructions). */
  readonly setA: readonly string[];
  /** Set B: addition should raise its score, ablation should barely move it (harmless). */
  readonly setB: readonly string[];
  /** The score; default `logProbMass(tokenIds)`, which needs `tokenIds`. */
  readonly score?: SelectScore;
  /** Token ids whose probability mass is the default score. */
  readonly tokenIds?: readonly number[];
  /** Keep candidates whose mean KL on B is below this (default 0.1, as the paper). */
  readonly maxKl?: number;
  /** Skip candidates at layers >= this fraction of n_layers (default 0.8). */
  readonly skipFrom?: number;
  readonly format?: PromptFormat;
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

export interface SelectRow {
  readonly point: string;
  /** The candidate's token position (its file's `positions` header, e.g. "-2"), or null when unknown. */
  readonly position: string | null;
  readonly layer: number;
  /** 1-based among kept candidates; null when filtered or skipped. */
  readonly rank: number | null;
  /** Mean score on A with the direction ablated everywhere. */
  readonly bypass: number | null;
  /** Mean score on B with the direction added at its point. */
  readonly induce: number | null;
  /** Mean KL(original || ablated) on B's next-token distributions (nats). */
  readonly kl: number | null;
  /** Why the candidate is not ranked: "last 20% of layers", "induce <= baseline", "kl >= 0.1". */
  readonly filtered: string | null;
}

export interface Selection {
  /** Mean score without steering on A and on B. */
  readonly baseline: { readonly a: number; readonly b: number };
  /** Ranked candidates first, then filtered ones, then skipped ones (each in point order). */
  readonly rows: readonly SelectRow[];
}

/** `log Σ_t p(t)` over `tokenIds` under softmax(logits). */
export function logProbMass(tokenIds: readonly number[]): SelectScore {
  if (tokenIds.length === 0) throw new SteerkitError("INVALID_REQUEST", "select directions: the score needs at least one token");
  return (logits) => {
    const ls = logSoftmax(logits);
    let m = -Infinity;
    for (const t of tokenIds) m = Math.max(m, ls[t]!);
    let s = 0;
    for (const t of tokenIds) s += Math.exp(ls[t]! - m);
    return m + Math.log(s);
  };
}

function logSoftmax(logits: Float32Array): Float64Array {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let z = 0;
  for (const x of logits) z += Math.exp(x - max);
  const lz = max + Math.log(z);
  return Float64Array.from(logits, (x) => x - lz);
}

/** KL(p || q) from logits. */
export function klDivergence(p: Float32Array, q: Float32Array): number {
  const lp = logSoftmax(p);
  const lq = logSoftmax(q);
  let kl = 0;
  for (let i = 0; i < lp.length; i++) kl += Math.exp(lp[i]!) * (lp[i]! - lq[i]!);
  return Math.max(0, kl);
}

/** Copies the logits of the first forward pass (the prompt's next token). Internal. */
const logitsTap = definePlugin({
  name: "steerkit-select-logits",
  options: v.object({ onLogits: v.custom<(l: Float32Array) => void>((f) => typeof f === "function") }),
  needs: ["logits:read"],
  trustedOptions: ["onLogits"],
  create: (o) => ({
    points: [],
    onLogits(l, ctx) {
      if (ctx.step === 0) o.onLogits(new Float32Array(l));
    },
  }),
});

/** How many prefills `selectDirections` runs (for a progress bar). */
export function selectRunCount(directions: Direction | readonly Direction[], nA: number, nB: number, nLayers: number, skipFrom = 0.8): number {
  const list: readonly Direction[] = Array.isArray(directions) ? directions : [directions as Direction];
  const kept = list.reduce((sum, d) => sum + [...d.byPoint.keys()].filter((name) => parsePoint(name).layer < skipFrom * nLayers).length, 0);
  return nA + nB + kept * (nA + 2 * nB);
}

interface Candidate {
  readonly name: string;
  readonly position: string | null;
  readonly vec: Float32Array;
  readonly layer: number;
}

/** Every (position, point) candidate; positions from the files' headers, made unique when two files share one. */
function candidatesOf(list: readonly Direction[]): Candidate[] {
  const seen = new Map<string, number>();
  return list.flatMap((d, i) => {
    let position = d.metadata?.positions ?? (list.length > 1 ? `file ${i + 1}` : null);
    if (position !== null) {
      const count = (seen.get(position) ?? 0) + 1;
      seen.set(position, count);
      if (count > 1) position = `${position} (file ${i + 1})`;
    }
    return [...d.byPoint].map(([name, vec]) => ({ name, position, vec, layer: parsePoint(name).layer }));
  });
}

/**
 * Score every candidate of `directions` (one per point of each) on `model`; see the header for the method.
 *
 * @example
 * const candidates = await extractPerPosition(model, harmful, harmless, { points: "all", format: "chat" });
 * const table = await selectDirections(model, candidates.map((c) => extractionDirection(c.extraction)), { setA: harmful, setB: harmless, tokenIds: [refusalToken], format: "chat" });
 * console.log(selectionMarkdown(table));
 */
export async function selectDirections(model: Model, directions: Direction | readonly Direction[], options: SelectOptions): Promise<Selection> {
  const fail = (msg: string): never => {
    throw new SteerkitError("INVALID_REQUEST", `select directions: ${msg}`);
  };
  const { nLayers, dModel } = model.info;
  const { setA, setB } = options;
  if (setA.length === 0 || setB.length === 0) fail(`both prompt sets need at least one prompt (A has ${setA.length}, B has ${setB.length})`);
  const list: readonly Direction[] = Array.isArray(directions) ? directions : [directions as Direction];
  if (list.length === 0) fail("give at least one direction to select from");
  list.forEach((direction, i) => {
    const which = list.length > 1 ? `direction ${i + 1}` : "the direction";
    if (direction.width !== dModel) fail(`${which} has ${direction.width} values; the model's residual has ${dModel}`);
    if (direction.byPoint.size === 0) fail(`${which} has no per-point vectors to choose among (one vector for every point leaves nothing to select)`);
  });
  const maxKl = options.maxKl ?? 0.1;
  const skipFrom = options.skipFrom ?? 0.8;
  for (const id of options.tokenIds ?? []) if (!Number.isInteger(id) || id < 0 || id >= model.info.vocabSize) fail(`token id ${id} is outside the vocabulary (${model.info.vocabSize} tokens)`);
  const score = options.score ?? (options.tokenIds ? logProbMass(options.tokenIds) : fail("give a score function or the token ids whose probability mass is the score"));
  const format = options.format ?? "text";
  const prompts = (set: readonly string[], side: string) => set.map((p, k) => preparePrompt(model, p, format, `set ${side} prompt ${k + 1}`).tokens);
  const tokensA = prompts(setA, "A");
  const tokensB = prompts(setB, "B");

  const candidates = candidatesOf(list);
  const kept = candidates.filter((c) => c.layer < skipFrom * nLayers);
  const total = selectRunCount(list, tokensA.length, tokensB.length, nLayers, skipFrom);
  let done = 0;
  const run = async (tokens: readonly number[], plugins: ChainPlugin[]): Promise<Float32Array> => {
    options.signal?.throwIfAborted();
    let out: Float32Array | null = null;
    await generate(model, { tokens: [...tokens], maxTokens: 1, temperature: 0, ignoreEos: true, plugins: [...plugins, logitsTap({ onLogits: (l) => (out = l) })], signal: options.signal });
    options.onProgress?.(++done, total);
    if (!out) throw new SteerkitError("BACKEND_FAILED", "select directions: the backend passed no logits for the prompt");
    return out;
  };
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

  const baseA: number[] = [];
  for (const t of tokensA) baseA.push(score(await run(t, [])));
  const baseLogitsB: Float32Array[] = [];
  for (const t of tokensB) baseLogitsB.push(await run(t, []));
  const baseline = { a: mean(baseA), b: mean(baseLogitsB.map(score)) };

  const scored: SelectRow[] = [];
  for (const c of kept) {
    const ablate = ablateDirection({ direction: Array.from(c.vec), points: "all" });
    const add = addVector({ vector: Array.from(c.vec), points: [c.name] });
    const bypass: number[] = [];
    for (const t of tokensA) bypass.push(score(await run(t, [ablate])));
    const induce: number[] = [];
    const kl: number[] = [];
    for (let k = 0; k < tokensB.length; k++) {
      induce.push(score(await run(tokensB[k]!, [add])));
      kl.push(klDivergence(baseLogitsB[k]!, await run(tokensB[k]!, [ablate])));
    }
    const row = { point: c.name, position: c.position, layer: c.layer, bypass: mean(bypass), induce: mean(induce), kl: mean(kl) };
    const filtered = !(row.induce > baseline.b) ? "induce <= baseline" : !(row.kl < maxKl) ? `kl >= ${maxKl}` : null;
    scored.push({ ...row, rank: null, filtered });
  }
  const ranked = scored.filter((r) => r.filtered === null).sort((x, y) => x.bypass! - y.bypass! || order(x.point, y.point) || (x.position ?? "").localeCompare(y.position ?? ""));
  const rows: SelectRow[] = [
    ...ranked.map((r, i) => ({ ...r, rank: i + 1 })),
    ...scored.filter((r) => r.filtered !== null),
    ...candidates.filter((c) => !kept.includes(c)).map((c) => ({ point: c.name, position: c.position, layer: c.layer, rank: null, bypass: null, induce: null, kl: null, filtered: `last ${Math.round((1 - skipFrom) * 100)}% of layers` })),
  ];
  return { baseline, rows };
}

/** Forward order: resid_pre.L, resid_mid.L, resid_post.L, then L+1. */
function order(a: string, b: string): number {
  const key = (s: string) => {
    const p = parsePoint(s);
    return p.layer * 3 + (p.site === "resid_pre" ? 0 : p.site === "resid_mid" ? 1 : 2);
  };
  return key(a) - key(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** The table as Markdown (numbers to 4 significant digits). */
export function selectionMarkdown(s: Selection): string {
  const f = (x: number | null) => (x === null ? "" : Number(x.toPrecision(4)).toString());
  // The position column only when candidates come from more than one position.
  const positioned = new Set(s.rows.map((r) => r.position)).size > 1;
  const pos = (r: SelectRow) => (positioned ? ` ${r.position ?? ""} |` : "");
  const lines = [
    `Baseline score: A ${f(s.baseline.a)}, B ${f(s.baseline.b)}`,
    "",
    `| rank |${positioned ? " position |" : ""} point | bypass (A, ablated) | induce (B, added) | KL (B, ablated) | filtered |`,
    `|---:|${positioned ? "---|" : ""}---|---:|---:|---:|---|`,
    ...s.rows.map((r) => `| ${r.rank ?? ""} |${pos(r)} ${r.point} | ${f(r.bypass)} | ${f(r.induce)} | ${f(r.kl)} | ${r.filtered ?? ""} |`),
  ];
  return lines.join("\n") + "\n";
}
