/**
 * The results table, from the stored records: per run (condition and swept value), the refusal rate
 * of each prompt set and the score of each capability set, each with a 95% interval (stats.ts says
 * which method), as JSON (everything), Markdown (one row per run, for reading) and CSV (long
 * format, one row per run and set, for plotting elsewhere). Items whose generation, judge or
 * scoring failed are counted as errors and left out of the rates, never silently as compliance.
 */
import type { Run } from "./config.ts";
import { bootstrap, sum, wilson, type Interval } from "./stats.ts";

export interface GenerationRecord {
  readonly type: "generation";
  readonly key: string;
  readonly hash: string;
  readonly run: string;
  readonly set: string;
  readonly id: string;
  readonly seed: number;
  readonly verdict: "refuse" | "comply" | "error";
  readonly error?: string;
}
export interface ChoiceRecord {
  readonly type: "multiple-choice";
  readonly key: string;
  readonly hash: string;
  readonly run: string;
  readonly set: string;
  readonly id: string;
  readonly answer: number;
  readonly predicted?: number;
  readonly predictedPerChar?: number;
  readonly predictedPerToken?: number;
  readonly error?: string;
}
export interface TextRecord {
  readonly type: "perplexity";
  readonly key: string;
  readonly hash: string;
  readonly run: string;
  readonly set: string;
  readonly id: string;
  readonly logprob?: number;
  readonly tokens?: number;
  readonly error?: string;
}
export type ResultRecord = GenerationRecord | ChoiceRecord | TextRecord;

export interface BehaviourCell {
  readonly set: string;
  readonly expect: "refuse" | "comply";
  /** Judged generations (errors excluded). */
  readonly n: number;
  readonly refused: number;
  readonly errors: number;
  /** Refusal rate in [0, 1] (NaN when nothing was judged). */
  readonly rate: number;
  readonly ci: Interval;
}
export interface CapabilityCell {
  readonly set: string;
  readonly metric: "accuracy" | "perplexity";
  readonly n: number;
  readonly errors: number;
  readonly value: number;
  readonly ci: Interval;
  /** Multiple choice with `normalize`: accuracy with length-normalised log-likelihoods. */
  readonly normalized?: { readonly by: "chars" | "tokens"; readonly value: number; readonly ci: Interval };
}
export interface ReportRow {
  readonly run: string;
  readonly condition: string;
  readonly value: number | boolean | string | null;
  readonly sweepPath: string | null;
  readonly behaviour: readonly BehaviourCell[];
  readonly capability: readonly CapabilityCell[];
}
export interface EvalReport {
  readonly model: { readonly path: string; readonly backend: string; readonly name: string };
  readonly seeds: readonly number[];
  readonly rows: readonly ReportRow[];
  /** Lines skipped as invalid, per set. */
  readonly skippedLines: Readonly<Record<string, number>>;
}

export interface ReportInput {
  readonly model: EvalReport["model"];
  readonly seeds: readonly number[];
  readonly runs: readonly Run[];
  readonly prompts: readonly { readonly name: string; readonly expect: "refuse" | "comply" }[];
  readonly capabilities: readonly { readonly name: string; readonly kind: "multiple-choice" | "perplexity"; readonly normalize?: "none" | "chars" | "tokens" }[];
  /** The current record of every unit, in any order. */
  readonly records: readonly ResultRecord[];
  readonly skippedLines?: Readonly<Record<string, number>>;
}

/**
 * Aggregate records into the table.
 * @example
 * ```ts
 * const report = buildReport({ model, seeds: [0], runs: config.runs, prompts: config.prompts, capabilities: config.capabilities, records });
 * console.log(reportMarkdown(report));
 * ```
 */
export function buildReport(input: ReportInput): EvalReport {
  const byCell = new Map<string, ResultRecord[]>();
  for (const r of input.records) {
    const k = `${r.run}|${r.set}`;
    let list = byCell.get(k);
    if (!list) byCell.set(k, (list = []));
    list.push(r);
  }
  const multiSeed = input.seeds.length > 1;
  const rows = input.runs.map((run): ReportRow => ({
    run: run.id,
    condition: run.condition,
    value: run.value,
    sweepPath: run.sweepPath,
    behaviour: input.prompts.map((set) => {
      const records = (byCell.get(`${run.id}|${set.name}`) ?? []) as GenerationRecord[];
      const judged = records.filter((r) => r.verdict !== "error");
      const refused = judged.filter((r) => r.verdict === "refuse").length;
      return {
        set: set.name,
        expect: set.expect,
        n: judged.length,
        refused,
        errors: records.length - judged.length,
        rate: judged.length ? refused / judged.length : NaN,
        ci: multiSeed ? itemBootstrap(judged) : wilson(refused, judged.length),
      };
    }),
    capability: input.capabilities.map((set): CapabilityCell => {
      const records = byCell.get(`${run.id}|${set.name}`) ?? [];
      const ok = records.filter((r) => r.error === undefined);
      const errors = records.length - ok.length;
      if (set.kind === "perplexity") {
        const texts = (ok as TextRecord[]).map((r) => ({ logprob: r.logprob!, tokens: r.tokens! }));
        const ppl = (xs: readonly { logprob: number; tokens: number }[]) => Math.exp(-sum(xs, "logprob") / sum(xs, "tokens"));
        return { set: set.name, metric: "perplexity", n: texts.length, errors, value: texts.length ? ppl(texts) : NaN, ci: bootstrap(texts, ppl) };
      }
      const choices = ok as ChoiceRecord[];
      const right = choices.filter((r) => r.predicted === r.answer).length;
      const cell: CapabilityCell = { set: set.name, metric: "accuracy", n: choices.length, errors, value: choices.length ? right / choices.length : NaN, ci: wilson(right, choices.length) };
      if (set.normalize === "chars" || set.normalize === "tokens") {
        const field = set.normalize === "chars" ? "predictedPerChar" : "predictedPerToken";
        const k = choices.filter((r) => r[field] === r.answer).length;
        return { ...cell, normalized: { by: set.normalize, value: choices.length ? k / choices.length : NaN, ci: wilson(k, choices.length) } };
      }
      return cell;
    }),
  }));
  return { model: input.model, seeds: input.seeds, rows, skippedLines: input.skippedLines ?? {} };
}

/** Several seeds per prompt: resample prompts (each with all its seeds), not generations. */
function itemBootstrap(records: readonly GenerationRecord[]): Interval {
  const byItem = new Map<string, { refused: number; n: number }>();
  for (const r of records) {
    const x = byItem.get(r.id) ?? { refused: 0, n: 0 };
    x.n++;
    if (r.verdict === "refuse") x.refused++;
    byItem.set(r.id, x);
  }
  return bootstrap([...byItem.values()], (xs) => sum(xs, "refused") / sum(xs, "n"));
}

const pct = (x: number) => (Number.isFinite(x) ? `${(100 * x).toFixed(1)}%` : "—");
const num = (x: number) => (Number.isFinite(x) ? (Math.abs(x) >= 100 ? x.toFixed(1) : x.toPrecision(4)) : "—");
const range = (ci: Interval, f: (x: number) => string) => (Number.isFinite(ci.low) ? ` [${f(ci.low)}, ${f(ci.high)}]` : "");

function valueText(v: ReportRow["value"]): string {
  return v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);
}

/**
 * The table as Markdown: one row per run; cells are "rate [95% CI]".
 * @example
 * ```ts
 * writeFileSync("results.md", reportMarkdown(report));
 * ```
 */
export function reportMarkdown(report: EvalReport): string {
  const first = report.rows[0];
  if (!first) return "(no runs)\n";
  const head = ["condition", "value"];
  for (const b of first.behaviour) head.push(`${b.set}: refusal (expect ${b.expect})`);
  for (const c of first.capability) {
    head.push(`${c.set}: ${c.metric}`);
    if (c.normalized) head.push(`${c.set}: accuracy (per ${c.normalized.by === "chars" ? "char" : "token"})`);
  }
  const lines = [`| ${head.join(" | ")} |`, `|${head.map((_, i) => (i < 2 ? "---" : "---:")).join("|")}|`];
  for (const row of report.rows) {
    const cells = [row.condition, valueText(row.value)];
    for (const b of row.behaviour) cells.push(`${pct(b.rate)}${range(b.ci, pct)}${b.errors ? ` (${b.errors} errors)` : ""}`);
    for (const c of row.capability) {
      const f = c.metric === "accuracy" ? pct : num;
      cells.push(`${f(c.value)}${range(c.ci, f)}${c.errors ? ` (${c.errors} errors)` : ""}`);
      if (c.normalized) cells.push(`${pct(c.normalized.value)}${range(c.normalized.ci, pct)}`);
    }
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const notes: string[] = [];
  const counts = [...first.behaviour.map((b) => `${b.set} n=${b.n + b.errors}`), ...first.capability.map((c) => `${c.set} n=${c.n + c.errors}`)];
  notes.push(`Model: ${report.model.name} (${report.model.backend}); seeds: ${report.seeds.join(", ")}; items per cell: ${counts.join(", ")}.`);
  notes.push(
    report.seeds.length > 1
      ? "Refusal-rate intervals: 95% percentile bootstrap over prompts (each with all its seeds), 2000 resamples."
      : "Refusal-rate intervals: 95% Wilson score intervals over prompts.",
  );
  if (first.capability.some((c) => c.metric === "accuracy")) notes.push("Accuracy intervals: 95% Wilson score intervals over questions.");
  if (first.capability.some((c) => c.metric === "perplexity")) notes.push("Perplexity: exp(-total log-likelihood / total tokens); intervals: 95% percentile bootstrap over texts, 2000 resamples.");
  const skipped = Object.entries(report.skippedLines).filter(([, n]) => n > 0);
  if (skipped.length) notes.push(`Invalid lines skipped: ${skipped.map(([s, n]) => `${s} ${n}`).join(", ")}.`);
  return `${lines.join("\n")}\n\n${notes.join("\n")}\n`;
}

/**
 * The table as CSV, long format: one row per run and set.
 * @example
 * ```ts
 * writeFileSync("results.csv", reportCsv(report));
 * ```
 */
export function reportCsv(report: EvalReport): string {
  const out = ["run,condition,value,set,metric,n,errors,score,ci_low,ci_high,ci_method"];
  const q = (s: string) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const n = (x: number) => (Number.isFinite(x) ? String(x) : "");
  for (const row of report.rows) {
    const pre = [q(row.run), q(row.condition), q(valueText(row.value))];
    for (const b of row.behaviour) out.push([...pre, q(b.set), "refusal_rate", b.n, b.errors, n(b.rate), n(b.ci.low), n(b.ci.high), b.ci.method].join(","));
    for (const c of row.capability) {
      out.push([...pre, q(c.set), c.metric, c.n, c.errors, n(c.value), n(c.ci.low), n(c.ci.high), c.ci.method].join(","));
      if (c.normalized) out.push([...pre, q(c.set), `accuracy_per_${c.normalized.by === "chars" ? "char" : "token"}`, c.n, c.errors, n(c.normalized.value), n(c.normalized.ci.low), n(c.normalized.ci.high), c.normalized.ci.method].join(","));
    }
  }
  return out.join("\n") + "\n";
}
