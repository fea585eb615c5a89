/**
 * Running an evaluation: every run (condition × swept value) over every prompt set (each prompt ×
 * each seed: generate, then judge) and every capability set (each item scored), with results
 * appended to two fsync'd JSONL files in the output directory as each item finishes:
 * `generations.jsonl` (the audit file: condition, set, item, prompt, output, verdict, seed) and
 * `scores.jsonl`. A run that is interrupted and started again skips every item already finished
 * with the same model, recipe, settings, item and judge (store.ts); items that failed are retried.
 * At the end the table (report.ts) and the trade-off plots (plot.ts) are written from the files.
 *
 * Everything that can be wrong with the input fails before the first item: the config, every set
 * (line numbers), the judges, every recipe (each run's plugins are prepared on the model, so a
 * missing artifact or a wrong width is found at once). Work is done in a fixed order and each
 * generation has its seed, so a run is deterministic on a backend.
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { openModel } from "../adapters/index.ts";
import { createArtifacts, type Artifacts } from "../core/artifacts.ts";
import type { Model } from "../core/backend.ts";
import { preparePlugins, type ChainPlugin } from "../core/chain.ts";
import type { ConfiguredPlugin } from "../core/plugin.ts";
import { generate } from "../core/generate.ts";
import { directionArtifact } from "../directions/artifact.ts";
import { createRegistry } from "../plugins/index.ts";
import { saeArtifact } from "../sae/artifact.ts";
import type { EvalConfig, JudgeConfig, Run } from "./config.ts";
import { EvalError } from "./errors.ts";
import { createJudge, type NamedJudge } from "./judges.ts";
import { tradeoffSvg } from "./plot.ts";
import { buildReport, reportCsv, reportMarkdown, type EvalReport, type ResultRecord } from "./report.ts";
import { scoreChoices, scoreText } from "./scoring.ts";
import { readChoiceSet, readPromptSet, readTextSet, type ChoiceItem, type DataSet, type PromptItem, type SkippedLine, type TextItem } from "./sets.ts";
import { lockOutput, openResultsStore, resultKey, type ResultsStore } from "./store.ts";

export interface EvalProgress {
  /** Items finished in this invocation. */
  readonly done: number;
  /** Items to do in this invocation (finished ones from an earlier invocation not counted). */
  readonly total: number;
  /** Items found finished from an earlier invocation. */
  readonly resumed: number;
  /** What just finished: "<run> <set> <id>". */
  readonly current: string;
  /** Items that ended in an error so far. */
  readonly errors: number;
}

export interface RunEvalOptions {
  /** An opened model to use instead of opening `config.model` (the caller disposes it). */
  readonly model?: Model;
  readonly onProgress?: (p: EvalProgress) => void;
  /** Called once before the first item with the work ahead. */
  readonly onStart?: (p: EvalProgress) => void;
  /** Skipped lines, dropped torn records and other things worth a line on stderr. */
  readonly onWarning?: (message: string) => void;
  readonly signal?: AbortSignal;
}

export interface EvalOutcome {
  readonly report: EvalReport;
  /** Paths written. */
  readonly files: { readonly generations: string; readonly scores: string; readonly json: string; readonly markdown: string; readonly csv: string; readonly plots: readonly string[] };
  /** Items computed now, reused from an earlier invocation, and failed (recorded as errors). */
  readonly computed: number;
  readonly resumed: number;
  readonly errors: number;
}

interface LoadedPromptSet {
  readonly config: EvalConfig["prompts"][number];
  readonly data: DataSet<PromptItem>;
  readonly judge: NamedJudge;
  readonly judgeHash: string;
}
type LoadedCapabilitySet =
  | { readonly config: EvalConfig["capabilities"][number] & { kind: "multiple-choice" }; readonly data: DataSet<ChoiceItem> }
  | { readonly config: EvalConfig["capabilities"][number] & { kind: "perplexity" }; readonly data: DataSet<TextItem> };

const hashOf = (x: unknown) => createHash("sha256").update(JSON.stringify(x)).digest("hex").slice(0, 16);

/** What a file is now (path, size, mtime): a replaced model or artifact reruns what used it. */
function fileStamp(path: string): string {
  try {
    const s = statSync(path);
    return `${path}:${s.size}:${s.mtimeMs}`;
  } catch {
    return `${path}:missing`;
  }
}

/**
 * Run an evaluation (see the module comment).
 * @example
 * ```ts
 * const config = loadEvalConfig("eval.json");
 * const outcome = await runEval(config, { onProgress: (p) => console.error(`${p.done}/${p.total}`) });
 * console.log(reportMarkdown(outcome.report));
 * ```
 */
export async function runEval(config: EvalConfig, options: RunEvalOptions = {}): Promise<EvalOutcome> {
  const warn = options.onWarning ?? (() => {});
  const src = config.source;
  // 1. Sets and judges: every line checked before any work.
  const onSkip = (s: SkippedLine) => warn(`${s.file}:${s.line}: skipped: ${s.reason}`);
  const readOptions = (limit: number | undefined) => ({ onInvalidLine: config.onInvalidLine, onSkip, ...(limit !== undefined ? { limit } : {}) });
  const prompts: LoadedPromptSet[] = [];
  for (const [i, set] of config.prompts.entries()) {
    const data = readPromptSet(set.file, readOptions(set.limit));
    const judge = await createJudge(set.judge, `${src}: prompts[${i}].judge`);
    prompts.push({ config: set, data, judge, judgeHash: judgeHash(set.judge) });
  }
  const capabilities: LoadedCapabilitySet[] = config.capabilities.map((set) =>
    set.kind === "multiple-choice"
      ? { config: set, data: readChoiceSet(set.file, readOptions(set.limit)) }
      : { config: set, data: readTextSet(set.file, readOptions(set.limit)) },
  );

  // 2. Artifacts and recipes, resolved and prepared on the model.
  const artifacts = createArtifacts();
  for (const [name, a] of Object.entries(config.artifacts)) {
    statOrFail(a.path, `${src}: artifacts.${name}.path`);
    if (a.kind === "direction") artifacts.register(name, directionArtifact, { path: a.path });
    else artifacts.register(name, saeArtifact, { path: a.path });
  }
  const registry = createRegistry();
  const resolved = new Map<string, ConfiguredPlugin[]>();
  for (const run of config.runs) {
    try {
      resolved.set(run.id, await registry.resolve(run.recipe, { trust: "trusted" }));
    } catch (e) {
      throw new EvalError(`${src}: condition "${run.id}": ${(e as Error).message}`, { cause: e });
    }
  }
  const own = options.model === undefined;
  if (own) statOrFail(config.model.path, `${src}: model.path`);
  const model =
    options.model ??
    (await openModel(config.model.path, {
      ...(config.model.backend ? { backend: config.model.backend } : {}),
      ...(config.model.threads ? { threads: config.model.threads } : {}),
      ...(config.model.contextLength ? { contextLength: config.model.contextLength } : {}),
      plugins: [...resolved.values()].flat(),
    }));
  const stores: ResultsStore[] = [];
  let release = () => {};
  try {
    const prepared = new Map<string, ChainPlugin[]>();
    for (const run of config.runs) {
      try {
        prepared.set(run.id, await preparePlugins(model, resolved.get(run.id)!, { artifacts }));
      } catch (e) {
        throw new EvalError(`${src}: condition "${run.id}": ${(e as Error).message}`, { cause: e });
      }
    }
    const g = config.generation;
    const chat = g.chat === "auto" ? model.info.chatTemplate !== null : g.chat;

    // 3. Output files; what is finished already.
    try {
      mkdirSync(config.output, { recursive: true });
    } catch (e) {
      throw new EvalError(`${src}: output: cannot create the directory ${config.output} (${(e as Error).message})`);
    }
    release = lockOutput(config.output);
    const generations = openResultsStore(join(config.output, "generations.jsonl"));
    stores.push(generations);
    const scores = openResultsStore(join(config.output, "scores.jsonl"));
    stores.push(scores);
    for (const s of stores) if (s.dropped) warn(`${s.path}: dropped a torn last line (an interrupted write); that item runs again`);
    const base = { model: fileStamp(config.model.path), backend: model.info.backend };
    const genSettings = { maxTokens: g.maxTokens, temperature: g.temperature, topK: g.topK, topP: g.topP, minP: g.minP, repetitionPenalty: g.repetitionPenalty, stop: g.stop, chat };
    // A run's identity includes the artifacts its recipe names (recipes refer to artifacts only by name),
    // so registering a new SAE for a new condition does not rerun the others.
    const runHash = new Map(
      config.runs.map((r) => {
        const named = new Set(stringsIn(r.recipe));
        const used = Object.entries(config.artifacts).filter(([k]) => named.has(k)).map(([k, a]) => [k, a.kind, fileStamp(a.path)]);
        return [r.id, hashOf({ base, recipe: r.recipe, artifacts: used })];
      }),
    );

    type Unit = { key: string; hash: string; label: string; work: () => Promise<ResultRecord> };
    const units: Unit[] = [];
    /** Every unit's key and hash, in table order: the report reads exactly these records. */
    const planned: { store: ResultsStore; key: string; hash: string }[] = [];
    let resumed = 0;
    for (const run of config.runs) {
      const plugins = prepared.get(run.id)!;
      const meta = { run: run.id, condition: run.condition, value: run.value };
      for (const set of prompts) {
        for (const item of set.data.items) {
          for (const seed of g.seeds) {
            const key = resultKey(run.id, set.config.name, item.id, seed);
            const hash = hashOf([runHash.get(run.id), genSettings, set.data.hashes.get(item.id), set.judgeHash, seed]);
            planned.push({ store: generations, key, hash });
            const done = generations.get(key, hash);
            if (done && done.error === undefined) {
              resumed++;
              continue;
            }
            units.push({ key, hash, label: `${run.id} ${set.config.name} ${item.id}`, work: () => generateOne(model, { key, hash, meta, set, item, seed, plugins, artifacts, chat, config }) });
          }
        }
      }
      for (const set of capabilities) {
        for (const item of set.data.items) {
          const key = resultKey(run.id, set.config.name, item.id, null);
          // Questions are plain text unless the set asks for the chat template (lm-evaluation-harness's default too).
          const asChat = set.config.kind === "multiple-choice" && set.config.chat;
          const hash = hashOf([runHash.get(run.id), asChat, set.config.kind, set.data.hashes.get(item.id)]);
          planned.push({ store: scores, key, hash });
          const done = scores.get(key, hash);
          if (done && done.error === undefined) {
            resumed++;
            continue;
          }
          const ctx = { plugins, artifacts, chat: asChat, ...(options.signal ? { signal: options.signal } : {}) };
          const record = { type: set.config.kind, key, hash, ...meta, set: set.config.name, id: item.id };
          const work: () => Promise<ResultRecord> =
            set.config.kind === "multiple-choice"
              ? async () => {
                  const c = item as ChoiceItem;
                  return { ...record, type: "multiple-choice", answer: c.answer, ...(await scoreChoices(model, c, ctx)) };
                }
              : async () => ({ ...record, type: "perplexity", ...(await scoreText(model, item as TextItem, ctx)) });
          units.push({
            key,
            hash,
            label: `${run.id} ${set.config.name} ${item.id}`,
            work: () =>
              work().catch((e: unknown) => {
                options.signal?.throwIfAborted();
                return { ...record, ...(set.config.kind === "multiple-choice" ? { answer: (item as ChoiceItem).answer } : {}), error: message(e) } as ResultRecord;
              }),
          });
        }
      }
    }

    // 4. The work, in order; each record is on disk before the next item starts.
    let done = 0;
    let errors = 0;
    options.onStart?.({ done: 0, total: units.length, resumed, current: "", errors: 0 });
    for (const unit of units) {
      options.signal?.throwIfAborted();
      const record = await unit.work();
      (record.type === "generation" ? generations : scores).append(record);
      done++;
      if (record.error !== undefined) {
        errors++;
        if (config.onItemError === "stop") throw new EvalError(`${unit.label}: ${record.error} (recorded in ${record.type === "generation" ? generations.path : scores.path}; onItemError is "stop")`);
        warn(`${unit.label}: ${record.error}`);
      }
      options.onProgress?.({ done, total: units.length, resumed, current: unit.label, errors });
    }

    // 5. The table and the plots, from every current record.
    const records = planned.map((p) => p.store.get(p.key, p.hash)).filter((r) => r !== undefined) as unknown as ResultRecord[];
    const report = buildReport({
      model: { path: config.model.path, backend: model.info.backend, name: model.info.name },
      seeds: g.seeds,
      runs: config.runs,
      prompts: config.prompts,
      capabilities: config.capabilities,
      records,
      skippedLines: Object.fromEntries([...prompts.map((p) => [p.config.name, p.data.skipped.length]), ...capabilities.map((c) => [c.config.name, c.data.skipped.length])]),
    });
    const files = writeReport(config.output, report);
    return { report, files: { generations: generations.path, scores: scores.path, ...files }, computed: done, resumed, errors };
  } finally {
    for (const s of stores) s.close();
    release();
    if (own) model.dispose();
  }
}

interface GenerateOne {
  readonly key: string;
  readonly hash: string;
  readonly meta: { run: string; condition: string; value: Run["value"] };
  readonly set: LoadedPromptSet;
  readonly item: PromptItem;
  readonly seed: number;
  readonly plugins: readonly ChainPlugin[];
  readonly artifacts: Artifacts;
  readonly chat: boolean;
  readonly config: EvalConfig;
}

async function generateOne(model: Model, u: GenerateOne): Promise<ResultRecord> {
  const { item, set, config } = u;
  const g = config.generation;
  const messages = item.messages ?? [{ role: "user", content: item.prompt! }];
  const input = item.messages || u.chat ? { messages } : { prompt: item.prompt! };
  const record = {
    type: "generation" as const,
    key: u.key,
    hash: u.hash,
    ...u.meta,
    set: set.config.name,
    expect: set.config.expect,
    id: item.id,
    seed: u.seed,
    prompt: item.prompt,
    ...(item.messages ? { messages: item.messages } : {}),
    chat: item.messages !== null || u.chat,
    judge: set.judge.name,
  };
  let output: string;
  let finishReason: string;
  let tokens: number;
  try {
    const r = await generate(model, {
      ...input,
      plugins: u.plugins,
      artifacts: u.artifacts,
      seed: u.seed,
      maxTokens: g.maxTokens,
      temperature: g.temperature,
      stop: g.stop,
      ...(g.topK !== undefined ? { topK: g.topK } : {}),
      ...(g.topP !== undefined ? { topP: g.topP } : {}),
      ...(g.minP !== undefined ? { minP: g.minP } : {}),
      ...(g.repetitionPenalty !== undefined ? { repetitionPenalty: g.repetitionPenalty } : {}),
    });
    output = r.text;
    finishReason = r.finishReason;
    tokens = r.tokens.length;
  } catch (e) {
    if ((e as Error)?.name === "AbortError") throw e;
    return { ...record, output: null, verdict: "error", error: `generation failed: ${message(e)}` } as ResultRecord;
  }
  try {
    const verdict = await set.judge.judge({ output, prompt: item.prompt, messages, id: item.id, extra: item.extra, set: set.config.name, expect: set.config.expect });
    return { ...record, output, tokens, finishReason, verdict: verdict.refused ? "refuse" : "comply", ...(verdict.note !== undefined ? { note: verdict.note } : {}) } as ResultRecord;
  } catch (e) {
    return { ...record, output, tokens, finishReason, verdict: "error", error: `judge ${set.judge.name} threw: ${message(e)}` } as ResultRecord;
  }
}

/** Every string anywhere in a JSON value. */
function stringsIn(x: unknown): string[] {
  if (typeof x === "string") return [x];
  if (Array.isArray(x)) return x.flatMap(stringsIn);
  if (typeof x === "object" && x !== null) return Object.values(x).flatMap(stringsIn);
  return [];
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A judge's identity: its config, and for a module judge the module's bytes (an edited judge re-judges). */
function judgeHash(j: JudgeConfig): string {
  if (j.type !== "module") return hashOf(j);
  let bytes = "";
  try {
    bytes = createHash("sha256").update(readFileSync(j.path)).digest("hex");
  } catch {}
  return hashOf([j, bytes]);
}

function statOrFail(path: string, at: string): void {
  try {
    statSync(path);
  } catch {
    throw new EvalError(`${at}: ${path} does not exist`);
  }
}

/**
 * Write the table (JSON, Markdown, CSV) and one trade-off plot per capability set into `dir`.
 * @example
 * ```ts
 * const files = writeReport("out/", report); // { json, markdown, csv, plots: ["out/tradeoff-cloze.svg"] }
 * ```
 */
export function writeReport(dir: string, report: EvalReport): { json: string; markdown: string; csv: string; plots: string[] } {
  const json = join(dir, "results.json");
  const markdown = join(dir, "results.md");
  const csv = join(dir, "results.csv");
  writeFileSync(json, JSON.stringify(report, null, 2) + "\n");
  writeFileSync(markdown, reportMarkdown(report));
  writeFileSync(csv, reportCsv(report));
  const plots: string[] = [];
  for (const c of report.rows[0]?.capability ?? []) {
    const svg = tradeoffSvg(report, c.set);
    if (!svg) continue;
    const path = join(dir, `tradeoff-${c.set}.svg`);
    writeFileSync(path, svg);
    plots.push(path);
  }
  return { json, markdown, csv, plots };
}
