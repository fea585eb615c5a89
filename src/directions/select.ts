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
 *
 * A judge is optional (`judge`, off by default: the table is then exactly the one above). With one,
 * the bypass and induce runs (and the unsteered ones) do not stop at the next token: they generate
 * `judgeTokens` tokens greedily through `generate`, the SDK's normal path, and a judge of
 * `steerkit eval` (select-judge.ts) reads each generation. The score still comes from the first
 * step's logits, so it does not change. Per candidate: the bypass rate (fraction of A still judged
 * refused with the direction ablated: lower is better) and the induce rate (fraction of B judged
 * refused with it added), and the unsteered rates once. The rule then judges by the text, as the
 * paper's evaluation does, and keeps the score where the text cannot tell candidates apart:
 * - kept when induce > baseline (score), induce rate > B's baseline rate (or = 1, when B is
 *   already all refused; or >= `minInduceRate` when given) and kl < `maxKl`;
 * - ranked by bypass rate, then bypass score, then point order.
 * A judge that throws stops the run with a `SelectionError` naming the judge and the prompt; its
 * `partial` holds the table of every candidate finished before it.
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
import type { JudgeInput } from "../eval/judges.ts";
import { preparePrompt, type PromptFormat } from "./prompts.ts";
import { selectionJudge, type SelectJudge, type SelectionJudge } from "./select-judge.ts";

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
  /**
   * Also generate and judge (see the module comment): "refusal-substring", `{ type: "regex", pattern }`,
   * `{ type: "module", path }` as in an eval config, or a judge function. Default: no judge.
   */
  readonly judge?: SelectJudge;
  /** Tokens generated greedily per prompt for the judge (default 24). */
  readonly judgeTokens?: number;
  /** With a judge: keep candidates whose induce rate is at least this (0-1) instead of above B's baseline rate. */
  readonly minInduceRate?: number;
  /** With a judge: called with every generation and its verdict, in run order (an audit trail; the CLI's `--generations`). */
  readonly onGeneration?: (record: JudgedGeneration) => void;
  /** Forward passes done and to do (a prefill or one generated token; without a judge, one per run). */
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
}

/** One judged generation of a selection run (`onGeneration`). */
export interface JudgedGeneration {
  /** "A" or "B", and the prompt's id in its set ("A3": the third prompt of A). */
  readonly set: "A" | "B";
  readonly id: string;
  readonly prompt: string;
  /** "none" (the unsteered baseline), "ablated" (A, the candidate ablated everywhere) or "added" (B, added at its point). */
  readonly steering: "none" | "ablated" | "added";
  /** The candidate's point and position (null for the baseline). */
  readonly point: string | null;
  readonly position: string | null;
  readonly output: string;
  readonly refused: boolean;
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
  /** With a judge: the fraction of A judged refused with the direction ablated everywhere (lower is better). */
  readonly bypassRate?: number | null;
  /** Mean score on B with the direction added at its point. */
  readonly induce: number | null;
  /** With a judge: the fraction of B judged refused with the direction added at its point. */
  readonly induceRate?: number | null;
  /** Mean KL(original || ablated) on B's next-token distributions (nats). */
  readonly kl: number | null;
  /**
   * Why the candidate is not ranked: "last 20% of layers", "induce <= baseline", "kl >= 0.1"; with a
   * judge also "induce rate <= baseline" (or "induce rate < x"), and in a partial table "not scored".
   */
  readonly filtered: string | null;
}

/** The judge's part of a selection (present only when a judge was given). */
export interface SelectionJudging {
  /** The judge, as `steerkit eval` names it. */
  readonly name: string;
  /** Tokens generated greedily per prompt. */
  readonly tokens: number;
  /** Prompts in A and B (the rates' denominators). */
  readonly prompts: { readonly a: number; readonly b: number };
  /** Fraction judged refused without steering, on A and on B. */
  readonly baseline: { readonly a: number; readonly b: number };
  /** The induce-rate threshold given, or null: above B's baseline rate (or 1). */
  readonly minInduceRate: number | null;
}

export interface Selection {
  /** Mean score without steering on A and on B. */
  readonly baseline: { readonly a: number; readonly b: number };
  /** With a judge: its name, budget and unsteered rates. */
  readonly judge?: SelectionJudging;
  /** Ranked candidates first, then filtered ones, then skipped ones (each in point order). */
  readonly rows: readonly SelectRow[];
  /** Only in a `SelectionError`'s partial table: why the run stopped. */
  readonly incomplete?: string;
}

/**
 * A judge threw (or answered something that is not a verdict): the message names the judge, the set,
 * the prompt and the steering; `partial` is the table of every candidate finished before it (the
 * others "not scored"), or null when the unsteered runs had not finished.
 */
export class SelectionError extends SteerkitError {
  override name = "SelectionError";
  constructor(
    message: string,
    readonly partial: Selection | null,
    options?: { cause?: unknown },
  ) {
    super("INVALID_REQUEST", message, options);
  }
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

/**
 * How many forward passes `selectDirections` runs (for a progress bar): one per run without a judge;
 * with `judgeTokens`, that many for each judged run (the unsteered, bypass and induce runs).
 * @example
 * const bar = progressBar(selectRunCount(direction, setA.length, setB.length, model.info.nLayers, 0.8, 24), "passes");
 */
export function selectRunCount(directions: Direction | readonly Direction[], nA: number, nB: number, nLayers: number, skipFrom = 0.8, judgeTokens = 0): number {
  const list: readonly Direction[] = Array.isArray(directions) ? directions : [directions as Direction];
  const kept = list.reduce((sum, d) => sum + [...d.byPoint.keys()].filter((name) => parsePoint(name).layer < skipFrom * nLayers).length, 0);
  const judged = Math.max(1, judgeTokens);
  return (nA + nB) * judged + kept * ((nA + nB) * judged + nB);
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
  const judgeTokens = options.judgeTokens ?? 24;
  if (!Number.isSafeInteger(judgeTokens) || judgeTokens < 1) fail(`judgeTokens must be a whole number of tokens, at least 1 (got ${judgeTokens})`);
  const { minInduceRate } = options;
  if (minInduceRate !== undefined && !(minInduceRate >= 0 && minInduceRate <= 1)) fail(`minInduceRate is a fraction of prompts, 0 to 1 (got ${minInduceRate})`);
  if (options.judge === undefined && (options.judgeTokens !== undefined || minInduceRate !== undefined || options.onGeneration !== undefined)) fail("judgeTokens, minInduceRate and onGeneration need a judge");
  const format = options.format ?? "text";
  const prompts = (set: readonly string[], side: string) => set.map((p, k) => preparePrompt(model, p, format, `set ${side} prompt ${k + 1}`).tokens);
  const tokensA = prompts(setA, "A");
  const tokensB = prompts(setB, "B");
  // Before any model work: a module judge that cannot be imported fails now.
  const judge: SelectionJudge | null = options.judge === undefined ? null : await selectionJudge(options.judge);

  const candidates = candidatesOf(list);
  const kept = candidates.filter((c) => c.layer < skipFrom * nLayers);
  const total = selectRunCount(list, tokensA.length, tokensB.length, nLayers, skipFrom, judge ? judgeTokens : 0);
  let done = 0;
  /** One prompt's run: its next-token logits, and with a judge whether the greedy generation is judged refused. */
  const run = async (tokens: readonly number[], plugins: ChainPlugin[], judged: Omit<JudgeInput, "output" | "messages"> | null): Promise<{ logits: Float32Array; refused: boolean }> => {
    options.signal?.throwIfAborted();
    let out: Float32Array | null = null;
    const generating = judge !== null && judged !== null;
    const r = await generate(model, {
      tokens: [...tokens], temperature: 0, plugins: [...plugins, logitsTap({ onLogits: (l) => (out = l) })], signal: options.signal,
      // Without a judge only the next token's logits matter; with one the generation stops where the model stops.
      ...(generating ? { maxTokens: judgeTokens } : { maxTokens: 1, ignoreEos: true }),
    });
    done += generating ? judgeTokens : 1;
    options.onProgress?.(done, total);
    if (!out) throw new SteerkitError("BACKEND_FAILED", "select directions: the backend passed no logits for the prompt");
    if (!generating) return { logits: out, refused: false };
    const input: JudgeInput = { ...judged, output: r.text, messages: [{ role: "user", content: judged.prompt ?? "" }] };
    let refused: boolean;
    try {
      refused = (await judge.judge(input)).refused;
    } catch (e) {
      const steering = input.extra.steering === "none" ? "unsteered" : `${input.extra.position !== null ? `position ${input.extra.position}, ` : ""}${input.extra.point} ${input.extra.steering}`;
      const prompt = judged.prompt!.length > 80 ? `${judged.prompt!.slice(0, 77)}...` : judged.prompt;
      const message = `judge ${judge.source} failed on set ${judged.set} prompt ${judged.id.slice(1)} (${JSON.stringify(prompt)}, ${steering}): ${(e as Error).message ?? String(e)}`;
      throw new SelectionError(`select directions: ${message}`, partial(message), { cause: e });
    }
    const extra = input.extra as { steering: JudgedGeneration["steering"]; point: string | null; position: string | null };
    options.onGeneration?.({ set: judged.set as "A" | "B", id: judged.id, prompt: judged.prompt ?? "", steering: extra.steering, point: extra.point, position: extra.position, output: r.text, refused });
    return { logits: out, refused };
  };
  const mean = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rate = (xs: readonly boolean[]) => xs.filter(Boolean).length / xs.length;
  const judgedAs = (side: "A" | "B", k: number, steering: "none" | "ablated" | "added", c: Candidate | null): Omit<JudgeInput, "output" | "messages"> => ({
    prompt: (side === "A" ? setA : setB)[k]!, id: `${side}${k + 1}`, set: side, expect: side === "A" ? "refuse" : "comply",
    extra: { steering, point: c?.name ?? null, position: c?.position ?? null, format },
  });

  let baseline: Selection["baseline"] | null = null;
  let judging: SelectionJudging | undefined;
  const scored: SelectRow[] = [];
  /** The table of the candidates scored so far (all of them at the end); the rest "not scored". */
  const assemble = (incomplete?: string): Selection => {
    const byRate = (x: SelectRow, y: SelectRow) => (judging ? x.bypassRate! - y.bypassRate! : 0);
    const ranked = scored.filter((r) => r.filtered === null).sort((x, y) => byRate(x, y) || x.bypass! - y.bypass! || order(x.point, y.point) || (x.position ?? "").localeCompare(y.position ?? ""));
    const empty = (c: Candidate, filtered: string): SelectRow => ({ point: c.name, position: c.position, layer: c.layer, rank: null, bypass: null, ...(judging ? { bypassRate: null } : {}), induce: null, ...(judging ? { induceRate: null } : {}), kl: null, filtered });
    const rows: SelectRow[] = [
      ...ranked.map((r, i) => ({ ...r, rank: i + 1 })),
      ...scored.filter((r) => r.filtered !== null),
      ...kept.slice(scored.length).map((c) => empty(c, "not scored")),
      ...candidates.filter((c) => !kept.includes(c)).map((c) => empty(c, `last ${Math.round((1 - skipFrom) * 100)}% of layers`)),
    ];
    return { baseline: baseline!, ...(judging ? { judge: judging } : {}), rows, ...(incomplete !== undefined ? { incomplete } : {}) };
  };
  const partial = (why: string): Selection | null => (judging ? assemble(why) : null);

  const baseA: { logits: Float32Array; refused: boolean }[] = [];
  for (const [k, t] of tokensA.entries()) baseA.push(await run(t, [], judgedAs("A", k, "none", null)));
  const baseB: { logits: Float32Array; refused: boolean }[] = [];
  for (const [k, t] of tokensB.entries()) baseB.push(await run(t, [], judgedAs("B", k, "none", null)));
  baseline = { a: mean(baseA.map((r) => score(r.logits))), b: mean(baseB.map((r) => score(r.logits))) };
  if (judge) {
    judging = {
      name: judge.name, tokens: judgeTokens, prompts: { a: tokensA.length, b: tokensB.length },
      baseline: { a: rate(baseA.map((r) => r.refused)), b: rate(baseB.map((r) => r.refused)) }, minInduceRate: minInduceRate ?? null,
    };
  }

  for (const c of kept) {
    const ablate = ablateDirection({ direction: Array.from(c.vec), points: "all" });
    const add = addVector({ vector: Array.from(c.vec), points: [c.name] });
    const bypass: number[] = [];
    const bypassRefused: boolean[] = [];
    for (const [k, t] of tokensA.entries()) {
      const r = await run(t, [ablate], judgedAs("A", k, "ablated", c));
      bypass.push(score(r.logits));
      bypassRefused.push(r.refused);
    }
    const induce: number[] = [];
    const induceRefused: boolean[] = [];
    const kl: number[] = [];
    for (const [k, t] of tokensB.entries()) {
      const r = await run(t, [add], judgedAs("B", k, "added", c));
      induce.push(score(r.logits));
      induceRefused.push(r.refused);
      kl.push(klDivergence(baseB[k]!.logits, (await run(t, [ablate], null)).logits));
    }
    const row = { point: c.name, position: c.position, layer: c.layer, bypass: mean(bypass), induce: mean(induce), kl: mean(kl) };
    if (!judging) {
      const filtered = !(row.induce > baseline.b) ? "induce <= baseline" : !(row.kl < maxKl) ? `kl >= ${maxKl}` : null;
      scored.push({ ...row, rank: null, filtered });
      continue;
    }
    const bypassRate = rate(bypassRefused);
    const induceRate = rate(induceRefused);
    const rateFails = minInduceRate !== undefined ? induceRate < minInduceRate : !(induceRate > judging.baseline.b || induceRate === 1);
    const filtered =
      !(row.induce > baseline.b) ? "induce <= baseline"
      : rateFails ? (minInduceRate !== undefined ? `induce rate < ${minInduceRate}` : "induce rate <= baseline")
      : !(row.kl < maxKl) ? `kl >= ${maxKl}`
      : null;
    scored.push({ point: row.point, position: row.position, layer: row.layer, bypass: row.bypass, bypassRate, induce: row.induce, induceRate, kl: row.kl, rank: null, filtered });
  }
  return assemble();
}

/** Forward order: resid_pre.L, resid_mid.L, resid_post.L, then L+1. */
function order(a: string, b: string): number {
  const key = (s: string) => {
    const p = parsePoint(s);
    return p.layer * 3 + (p.site === "resid_pre" ? 0 : p.site === "resid_mid" ? 1 : 2);
  };
  return key(a) - key(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** The table as Markdown (numbers to 4 significant digits; with a judge, its rates as counts). */
export function selectionMarkdown(s: Selection): string {
  const f = (x: number | null) => (x === null ? "" : Number(x.toPrecision(4)).toString());
  // The position column only when candidates come from more than one position.
  const positioned = new Set(s.rows.map((r) => r.position)).size > 1;
  const pos = (r: SelectRow) => (positioned ? ` ${r.position ?? ""} |` : "");
  const j = s.judge;
  const count = (x: number | null | undefined, n: number) => (x === null || x === undefined ? "" : `${Math.round(x * n)}/${n}`);
  const judged = (x: number | null | undefined, n: number) => (j ? ` ${count(x, n)} |` : "");
  const lines = [
    ...(s.incomplete !== undefined ? [`**Incomplete**: ${s.incomplete}`, ""] : []),
    `Baseline score: A ${f(s.baseline.a)}, B ${f(s.baseline.b)}`,
    ...(j
      ? [
          `Judge: ${j.name} on ${j.tokens} greedy tokens per prompt; rate without steering (judged refused): A ${count(j.baseline.a, j.prompts.a)}, B ${count(j.baseline.b, j.prompts.b)}`,
          `Kept: induce > baseline, ${j.minInduceRate === null ? "induce rate > B's baseline rate (or 1)" : `induce rate >= ${j.minInduceRate}`}, KL below the bound; ranked by bypass rate, then bypass score.`,
        ]
      : []),
    "",
    `| rank |${positioned ? " position |" : ""} point | bypass (A, ablated) |${j ? " bypass rate (A, ablated) |" : ""} induce (B, added) |${j ? " induce rate (B, added) |" : ""} KL (B, ablated) | filtered |`,
    `|---:|${positioned ? "---|" : ""}---|---:|${j ? "---:|" : ""}---:|${j ? "---:|" : ""}---:|---|`,
    ...s.rows.map((r) => `| ${r.rank ?? ""} |${pos(r)} ${r.point} | ${f(r.bypass)} |${judged(r.bypassRate, j?.prompts.a ?? 0)} ${f(r.induce)} |${judged(r.induceRate, j?.prompts.b ?? 0)} ${f(r.kl)} | ${r.filtered ?? ""} |`),
  ];
  return lines.join("\n") + "\n";
}
