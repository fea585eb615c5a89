#!/usr/bin/env bun
/**
 * The "dog" demonstration on stories260K (`bun examples/directions-dog.ts [--out dir] [--seeds n]`),
 * exported so the shipped files' test runs the same steps: extract a difference-of-means
 * direction from two paired prompt sets (`models/directions/stories260K-dog/{dog,other}.txt`),
 * export it as a control vector at a norm-relative scale, and count, over seeds, the stories that
 * mention a dog with and without it.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import type { Model } from "../src/core/backend.ts";
import { createArtifacts } from "../src/core/artifacts.ts";
import { directionArtifact } from "../src/directions/artifact.ts";
import { generate } from "../src/core/generate.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { writeControlVector } from "../src/directions/control-vector.ts";
import { extractDirections, extractionDirection, saveExtraction, type Extraction } from "../src/directions/extract.ts";
import { selectDirections, selectionMarkdown } from "../src/directions/select.ts";
import type { ChainPlugin } from "../src/core/chain.ts";
import type { Artifacts } from "../src/core/artifacts.ts";
import { readPromptSet } from "../src/directions/prompts.ts";
import { ablateDirection, addVector } from "../src/plugins/steering.ts";

export const DOG_DIR = new URL("../models/directions/stories260K-dog/", import.meta.url).pathname;
/** What the shipped files were made with. */
export const DOG_SETTINGS = { points: ["resid_post.1-3"], positions: "mean", method: "mean-diff", scale: 0.1 } as const;

/** Extract the dog direction and write `dog.safetensors` and `dog.gguf` (the control vector at the shipped scale) to `out`. */
export async function makeDogFiles(model: Model, out: string, onProgress?: (done: number, total: number) => void): Promise<Extraction> {
  const a = readPromptSet(join(DOG_DIR, "dog.txt"));
  const b = readPromptSet(join(DOG_DIR, "other.txt"));
  const extraction = await extractDirections(model, a, b, { points: [...DOG_SETTINGS.points], positions: DOG_SETTINGS.positions, method: DOG_SETTINGS.method, modelName: "stories260K", onProgress });
  saveExtraction(join(out, "dog.safetensors"), extraction);
  const scaled = new Map<string, Float32Array>();
  for (const [p, v] of extraction.vectors) {
    const f = (DOG_SETTINGS.scale * extraction.meanNorms.get(p)!) / Math.hypot(...v);
    scaled.set(p, Float32Array.from(v, (x) => x * f));
  }
  writeControlVector(join(out, "dog.gguf"), scaled, { modelHint: model.info.architecture, nLayers: model.info.nLayers });
  return extraction;
}

export interface DogCount {
  readonly label: string;
  /** Stories (one per seed) that say "dog" or "dogs". */
  readonly stories: number;
  readonly mentions: number;
  /** Stories with a character repeated 4+ times in a row ("ggggg"): a sign of steering too hard. */
  readonly degenerate: number;
  readonly seeds: number;
}

/** Count dog stories for seeds 1..n from "Once upon a time" (64 tokens, temperature 0.8) with the given control vector file, or none. */
export async function countDogStories(model: Model, n: number, controlVector: string | null, label: string): Promise<DogCount> {
  const artifacts = createArtifacts();
  if (controlVector) artifacts.register("dog", directionArtifact, { path: controlVector });
  return countStories(model, n, { label, artifacts, plugins: controlVector ? [addVector({ vector: "dog" })] : [] });
}

/** Count, for seeds 1..n, the continuations of `prompt` (64 tokens, temperature 0.8) that say "dog" or "dogs" (the prompt's own words not counted). */
export async function countStories(model: Model, n: number, o: { label: string; prompt?: string; plugins?: ChainPlugin[]; artifacts?: Artifacts }): Promise<DogCount> {
  let stories = 0;
  let mentions = 0;
  let degenerate = 0;
  for (let seed = 1; seed <= n; seed++) {
    const r = await generate(model, {
      prompt: o.prompt ?? "Once upon a time", maxTokens: 64, temperature: 0.8, seed,
      plugins: o.plugins ?? [], ...(o.artifacts ? { artifacts: o.artifacts } : {}),
    });
    const c = (r.text.match(/\bdogs?\b/gi) ?? []).length;
    mentions += c;
    if (c > 0) stories++;
    if (/(.)\1\1\1/.test(r.text)) degenerate++;
  }
  return { label: o.label, stories, mentions, degenerate, seeds: n };
}

/** Prompts that end where stories260K names its character again ("... little dog. The" -> " dog"): selection's score is the next token's log-probability of "dog". */
export function selectionSets(): { setA: string[]; setB: string[] } {
  return {
    setA: readPromptSet(join(DOG_DIR, "dog.txt")).map((p) => `${p} The`),
    setB: readPromptSet(join(DOG_DIR, "other.txt")).map((p) => `${p} The`),
  };
}

const row = (c: DogCount) => `| ${c.label} | ${c.stories} / ${c.seeds} | ${c.mentions} | ${c.degenerate} |`;

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: "string" }, seeds: { type: "string" } } });
  const out = values.out ?? DOG_DIR;
  const seeds = Number(values.seeds ?? 30);
  mkdirSync(out, { recursive: true });
  const model = await llamaCpp.load(DEFAULT_MODEL_PATH);
  try {
    // 1. Extract (and 5. export: the control vector file).
    const extraction = await makeDogFiles(model, out);
    console.log(`## 1. extract, 5. export -> ${out}\n`);
    for (const p of extraction.summary) console.log(`- ${p.point}: norm ${p.norm.toFixed(3)}, separation d ${p.separation.d.toFixed(2)}, ${Math.round(100 * p.separation.accuracy)}% on their side`);
    // 2. Select.
    const { setA, setB } = selectionSets();
    const dog = extractionDirection(extraction);
    const selection = await selectDirections(model, dog, { setA, setB, tokenIds: [model.tokenize("dog", { addBos: false })[0]!], maxKl: 1 });
    console.log(`\n## 2. select (score: log p(" dog") after "... The"; ${setA.length} + ${setB.length} prompts; KL filter 1 nat)\n`);
    console.log(selectionMarkdown(selection));
    const best = selection.rows.find((r) => r.rank === 1);
    if (!best) throw new Error("no candidate passed selection's filters");
    const vector = Array.from(extraction.vectors.get(best.point)!);
    const artifacts = createArtifacts().register("dog", directionArtifact, { path: join(out, "dog.safetensors") });
    // 3. Add; 4. ablate.
    console.log(`## 3. add, 4. ablate (${seeds} seeds, 64 tokens, temperature 0.8; stories that say "dog" after the prompt)\n`);
    console.log("| condition | stories with \"dog\" | mentions | degenerate |\n|---|---:|---:|---:|");
    console.log(row(await countStories(model, seeds, { label: "\"Once upon a time\", unsteered" })));
    console.log(row(await countDogStories(model, seeds, join(out, "dog.gguf"), "\"Once upon a time\", + dog.gguf (0.1 x mean norm at resid_post.1-3)")));
    for (const scale of [0.1, 0.2]) {
      console.log(row(await countStories(model, seeds, { label: `"Once upon a time", + ${best.point} only, ${scale} x mean norm`, artifacts, plugins: [addVector({ vector: "dog", points: [best.point], scale, relativeTo: "mean-norm" })] })));
    }
    const dogPrompt = "Once upon a time, there was a dog.";
    console.log(row(await countStories(model, seeds, { label: `"${dogPrompt}", unsteered`, prompt: dogPrompt })));
    console.log(row(await countStories(model, seeds, { label: `"${dogPrompt}", ${best.point}'s direction ablated at every point`, prompt: dogPrompt, plugins: [ablateDirection({ direction: vector, points: "all" })] })));
  } finally {
    model.dispose();
  }
}
