#!/usr/bin/env bun
/**
 * The "dog" demonstration on stories260K (`bun examples/directions-dog.ts [--out dir] [--seeds n]`),
 * exported so the shipped files' test runs the same steps: extract a difference-of-means
 * direction from two paired prompt sets (`models/directions/stories260K-dog/{dog,other}.txt`),
 * export it as a control vector at a norm-relative scale, and count, over seeds, the stories that
 * mention a dog with and without it.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import type { Model } from "../src/core/backend.ts";
import { createArtifacts } from "../src/core/artifacts.ts";
import { directionArtifact } from "../src/directions/artifact.ts";
import { generate } from "../src/core/generate.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { writeControlVector } from "../src/directions/control-vector.ts";
import { extractDirections, saveExtraction, type Extraction } from "../src/directions/extract.ts";
import { readPromptSet } from "../src/directions/prompts.ts";
import { addVector } from "../src/plugins/steering.ts";

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
  let stories = 0;
  let mentions = 0;
  let degenerate = 0;
  for (let seed = 1; seed <= n; seed++) {
    const r = await generate(model, {
      prompt: "Once upon a time", maxTokens: 64, temperature: 0.8, seed, artifacts,
      plugins: controlVector ? [addVector({ vector: "dog" })] : [],
    });
    const c = (r.text.match(/\bdogs?\b/gi) ?? []).length;
    mentions += c;
    if (c > 0) stories++;
    if (/(.)\1\1\1/.test(r.text)) degenerate++;
  }
  return { label, stories, mentions, degenerate, seeds: n };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { out: { type: "string" }, seeds: { type: "string" } } });
  const out = values.out ?? DOG_DIR;
  const seeds = Number(values.seeds ?? 30);
  const model = await llamaCpp.load(DEFAULT_MODEL_PATH);
  try {
    const extraction = await makeDogFiles(model, out);
    console.log(JSON.stringify({ out, points: extraction.summary }));
    console.log(JSON.stringify(await countDogStories(model, seeds, null, "unsteered")));
    console.log(JSON.stringify(await countDogStories(model, seeds, join(out, "dog.gguf"), "dog.gguf (add-vector, no points: the file's)")));
  } finally {
    model.dispose();
  }
}
