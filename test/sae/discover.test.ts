/**
 * Discovery finds planted features: an SAE latent that reads a direction added to one prompt set
 * (contrast), and one that reads a token's embedding (top contexts, active latents per token).
 */
import { describe, expect, test } from "bun:test";
import { addVector } from "../../src/plugins/index.ts";
import { activeLatents, contrastLatents, topContexts } from "../../src/sae/discover.ts";
import type { Sae } from "../../src/sae/sae.ts";
import { loadTestModel, runPlugin } from "../../src/testing/index.ts";
import { orthonormal, randomSae } from "./make-sae.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";

const CHAT_MODEL = new URL("../../models/stories260K-chat.gguf", import.meta.url).pathname;

const d = 64;
const A = ["Once upon a time there was a girl", "The sun was warm and bright", "Tom wanted to play outside"];
const B = ["Lily had a red ball", "The cat sat on the mat", "Mom made a big cake"];

describe("contrastLatents", () => {
  test("ranks first the latent that reads a direction added to set A, with its means and counts", async () => {
    const model = await loadTestModel();
    const sae = randomSae({ architecture: "relu", dIn: d, dSae: 64, seed: 41 });
    const u = orthonormal(1, d, 5);
    sae.encoder.set(u, 37 * d); // latent 37 reads u
    sae.encoderBias[37] = 0;
    const planted = addVector({ points: ["resid_post.2"], vector: Array.from(u, (x) => 12 * x) });
    const progress: [number, number][] = [];
    const r = await contrastLatents(model, sae, "resid_post.2", { texts: A, plugins: [planted] }, B, { top: 5, higherIn: "a", onProgress: (a, b) => progress.push([a, b]) });
    expect(r.latents[0]!.latent).toBe(37);
    expect(r.latents[0]!.diff).toBeGreaterThan(5);
    expect(r.latents[0]!.diff).toBeCloseTo(r.latents[0]!.meanA - r.latents[0]!.meanB, 10);
    expect(r.latents[0]!.activeA).toBe(r.tokensA); // the added direction makes it fire at every token of A
    expect(r.latents.length).toBe(5);
    expect(r.tokensA).toBe(A.reduce((n, t) => n + model.tokenize(t, { addBos: false }).length, 0)); // BOS rows left out
    expect(progress).toEqual([[1, 6], [2, 6], [3, 6], [4, 6], [5, 6], [6, 6]]);
    // Without the planted direction the latent is nothing special.
    const plain = await contrastLatents(model, sae, "resid_post.2", A, B, { top: 3, higherIn: "a" });
    expect(plain.latents.slice(0, 1).map((c) => c.latent)).not.toEqual([37]);
    expect(await contrastLatents(model, sae, "resid_post.2", { texts: A, plugins: [planted] }, B, { top: 5, higherIn: "a" })).toEqual(r); // deterministic
  });

  test("positions last reads one row per prompt, and format chat reads each text as a rendered user turn", async () => {
    const model = await llamaCpp.load(CHAT_MODEL, { threads: 1 });
    try {
      const sae = randomSae({ architecture: "relu", dIn: d, dSae: 64, seed: 41 });
      const u = orthonormal(1, d, 5);
      sae.encoder.set(u, 37 * d);
      sae.encoderBias[37] = 0;
      const planted = addVector({ points: ["resid_post.2"], vector: Array.from(u, (x) => 12 * x) });
      const last = await contrastLatents(model, sae, "resid_post.2", { texts: A, plugins: [planted] }, B, { top: 5, higherIn: "a", positions: "last", format: "chat" });
      expect([last.tokensA, last.tokensB]).toEqual([A.length, B.length]);
      expect(last.latents[0]!.latent).toBe(37);
      expect(last.latents[0]!.activeA).toBe(A.length);
      // "chat" is the same as giving the rendered turns as text.
      const rendered = (texts: readonly string[]) => texts.map((t) => model.applyChatTemplate([{ role: "user", content: t }]));
      const asText = await contrastLatents(model, sae, "resid_post.2", { texts: rendered(A), plugins: [planted] }, rendered(B), { top: 5, higherIn: "a", positions: "last" });
      expect(asText).toEqual(last);
      const all = await contrastLatents(model, sae, "resid_post.2", { texts: A, plugins: [planted] }, B, { top: 5, higherIn: "a", format: "chat" });
      expect(all.tokensA).toBeGreaterThan(5 * A.length);
    } finally {
      model.dispose();
    }
  });

  test("an SAE of another width or an unknown point is a clear error", async () => {
    const model = await loadTestModel();
    await expect(contrastLatents(model, randomSae({ architecture: "relu", dIn: 32, dSae: 8 }), "resid_post.2", A, B)).rejects.toThrow("the SAE reads vectors of 32 values (d_in); the model's residual has 64");
    await expect(contrastLatents(model, randomSae({ architecture: "relu", dIn: d, dSae: 8 }), undefined, A, B)).rejects.toThrow(/point: the SAE names no point/);
    await expect(contrastLatents(model, randomSae({ architecture: "relu", dIn: d, dSae: 8 }), "resid_post.9", A, B)).rejects.toThrow(/resid_post.9/);
  });
});

describe("topContexts and activeLatents", () => {
  /** An SAE at the embeddings whose latent 5 fires only where the token is `token` (cosine > 0.9 with its embedding). */
  async function tokenSae(token: number): Promise<Sae> {
    const run = await runPlugin([], { prompt: undefined, tokens: [token], maxTokens: 1 });
    const e = run.residuals.find((t) => t.point === "resid_pre.0")!.before;
    const n = Math.hypot(...e);
    const sae = randomSae({ architecture: "relu", dIn: d, dSae: 16, seed: 3, normalization: { kind: "constant_norm_rescale" }, applyBDecToInput: false });
    sae.encoder.set(Array.from(e, (x) => x / n), 5 * d);
    sae.encoderBias[5] = -0.9 * Math.sqrt(d); // normalized input has norm √d: fires when cos(x, e) > 0.9
    return sae;
  }

  test("the top contexts of a latent reading a token's embedding are exactly that token's occurrences, strongest first", async () => {
    const model = await loadTestModel();
    const dog = model.tokenize("dog", { addBos: false })[0]!;
    const sae = await tokenSae(dog);
    const texts = ["The dog ran to the park", "Lily saw a big dog and a small dog", "The cat slept", "A dog barked"];
    const occurrences = texts.map((t) => model.tokenize(t).filter((x) => x === dog).length);
    expect(occurrences).toEqual([1, 2, 0, 1]);
    const r = await topContexts(model, sae, "resid_pre.0", 5, texts, { top: 10, before: 3, after: 3 });
    expect(r.active).toBe(4);
    expect(r.contexts.length).toBe(4);
    expect(r.contexts.every((c) => c.token === dog && c.tokenText.trim() === "do")).toBe(true);
    expect(r.contexts.map((c) => c.text).sort()).toEqual([0, 1, 1, 3]);
    for (let i = 1; i < r.contexts.length; i++) expect(r.contexts[i - 1]!.activation).toBeGreaterThanOrEqual(r.contexts[i]!.activation);
    const c = r.contexts.find((c) => c.text === 0)!;
    expect(c.before + c.tokenText + c.after).toContain("The dog ran");
    const two = await topContexts(model, sae, "resid_pre.0", 5, texts, { top: 2 });
    const key = (c: { text: number; position: number; activation: number }) => [c.text, c.position, c.activation];
    expect(two.contexts.map(key)).toEqual(r.contexts.slice(0, 2).map(key));
    await expect(topContexts(model, sae, "resid_pre.0", 16, texts)).rejects.toThrow("latent 16 is out of range: the SAE has 16 latents (0..15)");
  });

  test("activeLatents lists the planted latent at exactly the token's rows", async () => {
    const model = await loadTestModel();
    const dog = model.tokenize("dog", { addBos: false })[0]!;
    const sae = await tokenSae(dog);
    const r = await activeLatents(model, sae, "resid_pre.0", "Lily saw a big dog and a small dog", { top: 16 });
    const tokens = model.tokenize("Lily saw a big dog and a small dog");
    expect(r.tokens.map((t) => t.token)).toEqual(tokens);
    for (const t of r.tokens) expect(t.latents.some((l) => l.latent === 5)).toBe(t.token === dog);
    for (const t of r.tokens) for (let i = 1; i < t.latents.length; i++) expect(t.latents[i - 1]!.activation).toBeGreaterThanOrEqual(t.latents[i]!.activation);
  });
});
