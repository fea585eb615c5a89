/**
 * The SAE demo's pieces (examples/sae-demo*.ts), small: the counting rules its table rests on, the
 * control pick, and discovery and a steering cell on the reference backend at a tiny size. The
 * full demo (minutes) is not run here; docs/sae-demo.md records a run.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { saeArtifact } from "../../src/sae/artifact.ts";
import { loadSae } from "../../src/sae/load.ts";
import { loadTestModel } from "../../src/testing/index.ts";
import { CONCEPTS, contrastSets, countMentions, tokenInConceptWord, words } from "../../examples/sae-demo-concepts.ts";
import { controlLatent, findConceptLatents, runCell } from "../../examples/sae-demo-run.ts";

const ball = CONCEPTS.ball!;
const SAE_DIR = join(import.meta.dir, "../../models/sae/stories260K-resid_post.2-topk");

describe("sae-demo: counting", () => {
  test("countMentions counts whole words in any case, not words that merely contain the concept", () => {
    expect(countMentions("The ball and two Balls. A balloon? BALL! football", ball)).toBe(3);
    expect(countMentions("Max the puppy saw dogs and a dog-house; hotdog", CONCEPTS.dog!)).toBe(3);
    expect(countMentions("", ball)).toBe(0);
  });

  test("tokenInConceptWord widens the token to its word: b[all] and [ b]all are on 'ball', [ b]oy and a period are not", () => {
    expect(tokenInConceptWord("play with a b", "all", ". One", ball)).toBe(true);
    expect(tokenInConceptWord("a big", " b", "all that", ball)).toBe(true);
    expect(tokenInConceptWord("a little", " b", "oy named", ball)).toBe(false);
    expect(tokenInConceptWord("the ball", ".", " The", ball)).toBe(false);
    expect(tokenInConceptWord("", "ball", "oon", ball)).toBe(false);
  });

  test("contrastSets: the same templates, with the concept word in every sentence of A and in none of B", () => {
    const { withConcept, without } = contrastSets(ball);
    expect(withConcept.length).toBe(ball.templates.length);
    expect(without.length).toBe(ball.templates.length * ball.others.length);
    expect(withConcept.every((t) => countMentions(t, ball) > 0)).toBe(true);
    expect(without.every((t) => countMentions(t, ball) === 0)).toBe(true);
    expect(words("Tom's BALL.")).toEqual(["tom", "s", "ball"]);
  });

  test("controlLatent is fixed for a seed, in range, and none of the excluded", () => {
    const a = controlLatent(512, [88, 460], 12345);
    expect(controlLatent(512, [88, 460], 12345)).toBe(a);
    expect(a).toBeGreaterThanOrEqual(0);
    expect(a).toBeLessThan(512);
    expect(controlLatent(4, [0, 1, 2], 7)).toBe(3);
  });
});

describe("sae-demo: on the model (reference backend, tiny sizes)", () => {
  test("discovery labels latent 88 'ball' from its contexts, and clamping it makes generations say 'ball'", async () => {
    const model = await loadTestModel();
    const sae = await loadSae(SAE_DIR);
    const corpus = ["Tom liked to play with his ball in the park.", "Lily saw a big red ball. The ball was round.", "The boy had a boat and a box."];
    const d = await findConceptLatents(model, sae, ball, corpus, { candidates: 3, contexts: 3 });
    const c88 = d.candidates.find((c) => c.latent === 88);
    expect(c88?.onConcept).toBe(3);
    expect(d.labelled.map((c) => c.latent)).toContain(88);
    // Every labelled latent has at least half its contexts on the word; the others fewer.
    for (const c of d.candidates) expect(d.labelled.includes(c)).toBe(2 * c.onConcept >= c.contexts.length && c.contexts.length > 0);

    const options = {
      artifacts: createArtifacts().register("s", saeArtifact, { path: SAE_DIR }),
      sae: "s",
      prompts: ["Once upon a time"],
      seeds: 4,
      maxTokens: 48,
      temperature: 0.8,
      vocabulary: new Set(corpus.flatMap(words)),
    };
    const plain = await runCell(model, ball, null, null, options);
    const steered = await runCell(model, ball, 88, 5, options);
    expect(steered.mentions).toBeGreaterThan(plain.mentions);
    expect(steered.generationsWith).toBeGreaterThan(plain.generationsWith);
    expect(steered.sample).not.toBe(plain.sample);
  });
});
