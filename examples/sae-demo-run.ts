/**
 * The SAE demo's steps as functions that return data (examples/sae-demo.ts prints them):
 *
 * 1. `findConceptLatents`: rank latents by contrast (`contrastLatents`: templates with vs. without
 *    the concept's word), read the top-activating contexts of the best few over stories the model
 *    wrote (`topContexts`), and label as the concept's every candidate with at least half of its
 *    top contexts on the concept word. This is the labelling a person does by eye, made a rule so
 *    a rerun labels the same latents; all of them are steered, since which one steers best is
 *    what the sweep measures, not something the contexts tell.
 * 2. `steeringSweep`: generate from neutral prompts with fixed seeds (temperature > 0), unsteered
 *    and with `sae-clamp` on each labelled latent and on a control latent at each value, and count
 *    generations that mention the concept, mentions, and the share of words the unsteered model
 *    also uses (a crude fluency check: clamping too hard makes the model babble).
 *
 * Everything is deterministic on one backend: greedy discovery, fixed seeds, a fixed control pick.
 */
import type { Artifacts } from "../src/core/artifacts.ts";
import type { Model } from "../src/core/backend.ts";
import { generate } from "../src/core/generate.ts";
import { saeClamp } from "../src/plugins/index.ts";
import { contrastLatents, generateCorpus, topContexts, type ActivatingContext, type LatentContrast, type Sae } from "../src/sae/index.ts";
import { contrastSets, countMentions, tokenInConceptWord, words, type Concept } from "./sae-demo-concepts.ts";

export type Progress = (stage: string, done: number, total: number) => void;

export interface Candidate extends LatentContrast {
  /** Rank in the contrast (0 = largest difference). */
  readonly rank: number;
  /** Of its top contexts, how many sit on the concept word. */
  readonly onConcept: number;
  readonly contexts: readonly ActivatingContext[];
  /** Tokens of the corpus where it fires, and tokens read. */
  readonly active: number;
  readonly tokens: number;
}

export interface Discovery {
  readonly point: string;
  readonly tokensWith: number;
  readonly tokensWithout: number;
  readonly candidates: readonly Candidate[];
  /** Candidates with at least half their top contexts on the concept word, best contrast first. */
  readonly labelled: readonly Candidate[];
}

export interface DiscoveryOptions {
  /** Contrast candidates to read contexts for (default 5). */
  readonly candidates?: number;
  /** Top contexts per candidate (default 10). */
  readonly contexts?: number;
  readonly onProgress?: Progress;
}

/** Stories the model writes itself (generateCorpus's prompts, seeds from `seed`): where contexts are read. */
export function storyCorpus(model: Model, n: number, seed: number): Promise<string[]> {
  return generateCorpus(model, { n, seed, maxTokens: 128 });
}

export async function findConceptLatents(model: Model, sae: Sae, concept: Concept, corpus: readonly string[], options: DiscoveryOptions = {}): Promise<Discovery> {
  const { withConcept, without } = contrastSets(concept);
  const progress = options.onProgress;
  const contrast = await contrastLatents(model, sae, undefined, withConcept, without, {
    top: options.candidates ?? 5,
    higherIn: "a",
    onProgress: (d, t) => progress?.("contrast", d, t),
  });
  const candidates: Candidate[] = [];
  for (const [rank, c] of contrast.latents.entries()) {
    const top = await topContexts(model, sae, undefined, c.latent, corpus, {
      top: options.contexts ?? 10,
      onProgress: (d, t) => progress?.(`contexts of latent ${c.latent}`, d, t),
    });
    const onConcept = top.contexts.filter((x) => tokenInConceptWord(x.before, x.tokenText, x.after, concept)).length;
    candidates.push({ ...c, rank, onConcept, contexts: top.contexts, active: top.active, tokens: top.tokens });
  }
  const labelled = candidates.filter((c) => c.contexts.length > 0 && 2 * c.onConcept >= c.contexts.length);
  return { point: contrast.point, tokensWith: contrast.tokensA, tokensWithout: contrast.tokensB, candidates, labelled };
}

/** A latent other than `exclude`, from a fixed xorshift seed: the control clamp. */
export function controlLatent(dSae: number, exclude: readonly number[], seed: number): number {
  let s = seed >>> 0 || 1;
  for (;;) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    const i = (s >>> 0) % dSae;
    if (!exclude.includes(i)) return i;
  }
}

export interface SweepOptions {
  readonly artifacts: Artifacts;
  /** The registered SAE's name. */
  readonly sae: string;
  readonly prompts: readonly string[];
  /** Seeds 0..seeds-1; seed i uses prompts[i % prompts.length]. */
  readonly seeds: number;
  readonly maxTokens: number;
  readonly temperature: number;
  /** Words the unsteered model uses (from its own stories): for the known-word rate. */
  readonly vocabulary: ReadonlySet<string>;
  readonly onProgress?: Progress;
}

/** One cell of the table: one steering setting over all seeds. */
export interface Cell {
  /** null: unsteered. */
  readonly latent: number | null;
  readonly value: number | null;
  /** Generations (of `seeds`) that mention the concept at least once. */
  readonly generationsWith: number;
  readonly mentions: number;
  /** Share of generated words the unsteered model also uses, over all seeds. */
  readonly knownWords: number;
  /** The text of seed 0, to show what the setting does. */
  readonly sample: string;
}

export async function runCell(model: Model, concept: Concept, latent: number | null, value: number | null, o: SweepOptions): Promise<Cell> {
  let generationsWith = 0, mentions = 0, known = 0, total = 0, sample = "";
  for (let seed = 0; seed < o.seeds; seed++) {
    const plugins = latent === null || value === null ? [] : [saeClamp({ sae: o.sae, latents: [{ index: latent, mode: "clamp", value }] })];
    const r = await generate(model, {
      prompt: o.prompts[seed % o.prompts.length]!,
      maxTokens: o.maxTokens,
      temperature: o.temperature,
      seed,
      plugins,
      artifacts: o.artifacts,
    });
    if (seed === 0) sample = r.text;
    const n = countMentions(r.text, concept);
    mentions += n;
    if (n > 0) generationsWith++;
    for (const w of words(r.text)) {
      total++;
      if (o.vocabulary.has(w)) known++;
    }
  }
  return { latent, value, generationsWith, mentions, knownWords: total ? known / total : 0, sample };
}

export interface Sweep {
  readonly unsteered: Cell;
  /** Per value: one cell per steered latent, in the order given. */
  readonly rows: readonly { readonly value: number; readonly cells: readonly Cell[] }[];
}

/** Clamp each of `latents` (one at a time) to each of `values`, plus the unsteered baseline. */
export async function steeringSweep(model: Model, concept: Concept, latents: readonly number[], values: readonly number[], o: SweepOptions): Promise<Sweep> {
  const total = 1 + latents.length * values.length;
  let done = 0;
  const step = async (l: number | null, v: number | null) => {
    const cell = await runCell(model, concept, l, v, o);
    o.onProgress?.("steering", ++done, total);
    return cell;
  };
  const unsteered = await step(null, null);
  const rows = [];
  for (const value of values) {
    const cells: Cell[] = [];
    for (const l of latents) cells.push(await step(l, value));
    rows.push({ value, cells });
  }
  return { unsteered, rows };
}
