/**
 * SAE feature steering, end to end, on the embedded stories260K with the shipped SAE
 * (models/sae/stories260K-resid_post.2-topk): find a latent for a concept by contrast, show where
 * it fires so a person can label it, clamp it with `sae-clamp` at a few values, and count over
 * fixed seeds how often generations mention the concept, unsteered, steered and with a control
 * latent clamped instead. docs/sae-demo.md records one run of it and what it shows.
 *
 *   bun examples/sae-demo.ts [--concept ball|dog|rain|sad] [--seeds 40] [--values 0,1,2,...]
 *                            [--latent i,j] [--backend llama-cpp|reference] [--json]
 *
 * stdout is the report (Markdown, or one JSON object with --json) and holds no timings, so a rerun
 * on the same backend prints the same bytes; progress and timings go to stderr. The model runs on
 * one thread: llama.cpp's sums then happen in one order, run after run.
 */
import { parseArgs } from "node:util";
import { openModel } from "../src/adapters/index.ts";
import { progressBar, type ProgressBar } from "../src/cli/progress.ts";
import { createArtifacts } from "../src/core/artifacts.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { loadSae, saeArtifact, topContexts } from "../src/sae/index.ts";
import { CONCEPTS, words } from "./sae-demo-concepts.ts";
import { controlLatent, findConceptLatents, steeringSweep, storyCorpus, type Discovery, type Sweep } from "./sae-demo-run.ts";
import { report } from "./sae-demo-report.ts";

const SAE_DIR = new URL("../models/sae/stories260K-resid_post.2-topk", import.meta.url).pathname;
/** Prompts without any concept word; seed i uses prompt i % 4. */
const PROMPTS = ["Once upon a time", "One day,", "Lily and Ben", "The sun was shining"];
const CORPUS = { n: 200, seed: 1000 };
const CONTROL_SEED = 12345;

const { values: args } = parseArgs({
  options: {
    concept: { type: "string", default: "ball" },
    seeds: { type: "string", default: "40" },
    values: { type: "string", default: "0,1,2,3,4,5,6,8" },
    latent: { type: "string" },
    backend: { type: "string", default: "llama-cpp" },
    "max-tokens": { type: "string", default: "80" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (args.help) {
  console.log("bun examples/sae-demo.ts [--concept ball|dog|rain|sad] [--seeds 40] [--values 0,1,2,3,4,5,6,8] [--latent i,j] [--max-tokens 80] [--backend llama-cpp|reference] [--json]");
  process.exit(0);
}
const usage = (msg: string): never => {
  console.error(`sae-demo: ${msg}`);
  process.exit(2);
};
const int = (name: string, s: string, min: number) => {
  const n = Number(s);
  return Number.isInteger(n) && n >= min ? n : usage(`--${name} must be an integer >= ${min}, got ${s}`);
};
const concept = CONCEPTS[args.concept] ?? usage(`unknown concept "${args.concept}"; one of ${Object.keys(CONCEPTS).join(", ")}`);
const seeds = int("seeds", args.seeds, 1);
const maxTokens = int("max-tokens", args["max-tokens"], 1);
const values = args.values.split(",").map((s) => (Number.isFinite(Number(s)) && s.trim() !== "" ? Number(s) : usage(`--values: "${s}" is not a number`)));

/** One progress bar per stage on a terminal; otherwise one line per finished stage. */
let bar: { stage: string; bar: ProgressBar; start: number } | null = null;
const onProgress = (stage: string, done: number, total: number) => {
  if (bar?.stage !== stage) {
    bar?.bar.done();
    bar = { stage, bar: progressBar(total, stage), start: performance.now() };
  }
  bar.bar.update(done);
  if (done === total) {
    bar.bar.done();
    if (!process.stderr.isTTY) console.error(`${stage}: ${total} done in ${((performance.now() - bar.start) / 1000).toFixed(1)} s`);
    bar = null;
  }
};

const started = performance.now();
const model = await openModel(DEFAULT_MODEL_PATH, { backend: args.backend, threads: 1 });
try {
  const sae = await loadSae(SAE_DIR);
  const artifacts = createArtifacts().register("stories-sae", saeArtifact, { path: SAE_DIR });

  console.error(`writing ${CORPUS.n} stories to read contexts from`);
  const corpus = await storyCorpus(model, CORPUS.n, CORPUS.seed);
  const discovery: Discovery = await findConceptLatents(model, sae, concept, corpus, { onProgress });
  // The labelled latents (or the ones given), then the control: a latent from a fixed seed that is none of the candidates.
  const given = args.latent?.split(",").map((s) => int("latent", s, 0));
  const latents = given ?? discovery.labelled.map((c) => c.latent);
  if (latents.some((l) => l >= sae.info.dSae)) usage(`--latent must be below ${sae.info.dSae}`);
  if (latents.length === 0) console.error(`no candidate has half its top contexts on "${concept.word}": only the control is steered (try --latent)`);
  const control = controlLatent(sae.info.dSae, [...latents, ...discovery.candidates.map((c) => c.latent)], CONTROL_SEED);

  // What the control reads, so a reader can see it is not (or is) about the concept too.
  const controlContexts = await topContexts(model, sae, undefined, control, corpus, { top: 10, onProgress: (d, t) => onProgress(`contexts of control latent ${control}`, d, t) });
  const vocabulary = new Set(corpus.flatMap(words));
  const sweep: Sweep = await steeringSweep(model, concept, [...latents, control], values, {
    artifacts,
    sae: "stories-sae",
    prompts: PROMPTS,
    seeds,
    maxTokens,
    temperature: 0.8,
    vocabulary,
    onProgress,
  });

  const setup = { backend: model.info.backend, concept, latents, control, controlContexts: controlContexts.contexts, seeds, maxTokens, temperature: 0.8, prompts: PROMPTS, corpus: CORPUS, values };
  console.log(args.json ? JSON.stringify({ ...setup, discovery, sweep }, null, 2) : report(setup, discovery, sweep));
  console.error(`done in ${((performance.now() - started) / 1000).toFixed(0)} s`);
} finally {
  model.dispose();
}
