/**
 * `bun bench/eval.ts [--model <gguf>] [--rounds 3] [--threads 1] [--items n] [--max-tokens n]`: what `steerkit eval` costs over
 * the work it does, and what scoring token by token costs.
 *
 * 1. The same evaluation (test/fixtures/eval: 8 prompts x 2 seeds generated and judged, 10
 *    multiple-choice items, 6 perplexity texts; no steering and one add-vector condition) run as a
 *    plain loop of `generate` and `score` calls, and through `runEval` into a fresh directory (sets
 *    read and hashed, judges, the results files, the table and the plots). Ratio: runEval / loop.
 * 2. `score` of a 64-token continuation (one forward pass per token, as generation feeds tokens)
 *    against one prefill of the same 64 tokens (what a backend returning every row's logits would
 *    need). Ratio: score / prefill.
 *
 * Medians over rounds; ratios from the same run only (the machine's speed drifts).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openModel } from "../src/adapters/index.ts";
import { createArtifacts } from "../src/core/artifacts.ts";
import { generate } from "../src/core/generate.ts";
import { score } from "../src/core/score.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { directionArtifact } from "../src/directions/artifact.ts";
import { parseEvalConfig } from "../src/eval/config.ts";
import { runEval } from "../src/eval/runner.ts";
import { scoreChoices, scoreText } from "../src/eval/scoring.ts";
import { readChoiceSet, readPromptSet, readTextSet } from "../src/eval/sets.ts";
import { createRegistry } from "../src/plugins/index.ts";

const { values } = parseArgs({ options: { model: { type: "string" }, rounds: { type: "string" }, threads: { type: "string" }, items: { type: "string" }, "max-tokens": { type: "string" } } });
const rounds = Number(values.rounds ?? 3);
const threads = Number(values.threads ?? 1);
const modelPath = values.model ?? DEFAULT_MODEL_PATH;
const fixtures = join(import.meta.dir, "../test/fixtures/eval");
const dog = join(import.meta.dir, "../models/directions/stories260K-dog/dog.safetensors");
const isDefault = modelPath === DEFAULT_MODEL_PATH;
/** Items per set and tokens per generation: all and 32 by default; fewer for a wide model (--items 3 --max-tokens 8). */
const limit = values.items === undefined ? undefined : Number(values.items);
const maxTokens = Number(values["max-tokens"] ?? 32);

const model = await openModel(modelPath, { threads, ...(isDefault ? { contextLength: 512 } : {}) });
const dModel = model.info.dModel;
// The dog direction fits stories260K only; on another model, a fixed vector of the model's width.
const vector = isDefault ? "dog" : Array.from({ length: dModel }, (_, i) => Math.sin(i) / Math.sqrt(dModel));
const recipe = [{ plugin: "add-vector", options: { vector, ...(isDefault ? { relativeTo: "mean-norm", scale: 0.1 } : { points: ["resid_post.1"], scale: 1 }) } }];
const config = {
  model: { path: modelPath, threads },
  artifacts: isDefault ? { dog: { kind: "direction", path: dog } } : {},
  prompts: [{ name: "openings", file: join(fixtures, "prompts.jsonl"), expect: "refuse", judge: "refusal-substring", limit }],
  capabilities: [
    { name: "cloze", kind: "multiple-choice", file: join(fixtures, "cloze.jsonl"), limit },
    { name: "stories", kind: "perplexity", file: join(fixtures, "stories.jsonl"), limit },
  ],
  conditions: [{ name: "none" }, { name: "add", recipe }],
  generation: { maxTokens, temperature: 0.8, seeds: [1, 2] },
  output: "unused",
};

const artifacts = createArtifacts();
if (isDefault) artifacts.register("dog", directionArtifact, { path: dog });
const sizing = limit === undefined ? {} : { limit };
const prompts = readPromptSet(join(fixtures, "prompts.jsonl"), sizing).items;
const cloze = readChoiceSet(join(fixtures, "cloze.jsonl"), sizing).items;
const texts = readTextSet(join(fixtures, "stories.jsonl"), sizing).items;

async function plainLoop(): Promise<void> {
  for (const r of [[], recipe]) {
    const plugins = await createRegistry().resolve(r, { trust: "trusted" });
    for (const p of prompts) for (const seed of [1, 2]) await generate(model, { prompt: p.prompt!, plugins, artifacts, seed, maxTokens, temperature: 0.8 });
    for (const q of cloze) await scoreChoices(model, q, { plugins, artifacts, chat: false });
    for (const t of texts) await scoreText(model, t, { plugins, artifacts, chat: false });
  }
}

async function viaRunEval(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "steerkit-bench-eval-"));
  try {
    await runEval(parseEvalConfig({ ...config, output: dir }), { model });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const continuation = Array.from({ length: 64 }, (_, i) => 300 + ((i * 7) % 100));
async function scoreTokenByToken(): Promise<void> {
  await score(model, { tokens: [model.info.bosToken ?? 1], continuationTokens: continuation });
}
async function onePrefill(): Promise<void> {
  const s = model.createSequence();
  try {
    await s.prefill([model.info.bosToken ?? 1, ...continuation]);
  } finally {
    s.free();
  }
}

const cases: [string, () => Promise<void>][] = [
  ["plain loop of generate + score", plainLoop],
  ["runEval (same work, files, table, plots)", viaRunEval],
  ["score: 64-token continuation", scoreTokenByToken],
  ["one prefill of the same 65 tokens", onePrefill],
];
const times = new Map<string, number[]>(cases.map(([n]) => [n, []]));
for (const [, f] of cases) await f(); // warm-up
for (let r = 0; r < rounds; r++) {
  for (const [name, f] of cases) {
    const t0 = performance.now();
    await f();
    times.get(name)!.push(performance.now() - t0);
  }
}
model.dispose();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (name: string) => median(times.get(name)!);
console.log(`model: ${model.info.name} (${model.info.backend}), ${threads} thread(s), ${rounds} rounds, medians\n`);
console.log("| what | ms | ratio |");
console.log("|---|---:|---:|");
console.log(`| plain loop of generate + score (baseline) | ${ms(cases[0]![0]).toFixed(0)} | 1.00 |`);
console.log(`| runEval, same work (sets, judges, results files, table, plots) | ${ms(cases[1]![0]).toFixed(0)} | ${(ms(cases[1]![0]) / ms(cases[0]![0])).toFixed(2)} |`);
console.log(`| one prefill of 65 tokens (baseline) | ${ms(cases[3]![0]).toFixed(1)} | 1.00 |`);
console.log(`| score of a 64-token continuation (token by token) | ${ms(cases[2]![0]).toFixed(1)} | ${(ms(cases[2]![0]) / ms(cases[3]![0])).toFixed(2)} |`);
