/**
 * The `trace` extension on the embedded model with its shipped SAE and "dog" direction: per-token
 * values equal what the read-only recorders give in-process (on the steered residual when the
 * request steers), streamed chunks say which positions their text covers, and a trace names only
 * registered artifacts, one latent or one direction at one point.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { generate } from "../../src/core/generate.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { addVector, logger, saeLatents } from "../../src/plugins/index.ts";
import { saeArtifact } from "../../src/sae/artifact.ts";
import { createChatServer } from "../../src/server/index.ts";
import { json, sseChunks } from "./helpers.ts";

const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
afterAll(() => model.dispose());
const artifacts = createArtifacts()
  .register("sae", saeArtifact, { path: "models/sae/stories260K-resid_post.2-topk" })
  .register("dog", directionArtifact, { path: "models/directions/stories260K-dog/dog.safetensors" });
const server = await createChatServer({ model, artifacts });
const PROMPT = "Once upon a time there was a dog";
const post = (body: object) =>
  server.fetch(new Request("http://127.0.0.1:3000/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: PROMPT, max_tokens: 16, temperature: 0, ...body }) }));
const STEER = [{ plugin: "add-vector", options: { points: ["resid_post.2"], vector: "dog", scale: 3 } }];

describe("per-token trace", () => {
  test("an SAE latent's values equal sae-latents in-process: one per generated token but the last, at its position", async () => {
    const answer = await json(await post({ trace: { sae: "sae", latent: 480 } }));
    const expected: { position: number; value: number }[] = [];
    const prompt = model.tokenize(PROMPT, { addBos: true });
    await generate(model, { prompt: PROMPT, maxTokens: 16, temperature: 0, artifacts, plugins: [saeLatents({ sae: "sae", latents: [480], positions: "generated", onRecord: (r) => expected.push({ position: r.position, value: r.activations["480"]! }) })] });
    expect(answer.steerkit.trace).toEqual(expected);
    expect(answer.steerkit.trace.map((r: any) => r.position)).toEqual(Array.from({ length: 15 }, (_, i) => prompt.length + i));
    expect(answer.steerkit.trace.some((r: any) => r.value === 0)).toBe(true);
    expect(answer.steerkit.trace.some((r: any) => r.value > 0)).toBe(true); // latent 480 fires on some of these tokens and not others, so the check means something
  });

  test("a direction's projection reads the steered residual: equal to steering + logger in-process, and not to the unsteered values", async () => {
    const steered = await json(await post({ steering: STEER, trace: { direction: "dog", point: "resid_post.2" } }));
    const plain = await json(await post({ trace: { direction: "dog", point: "resid_post.2" } }));
    const expected: number[] = [];
    await generate(model, {
      prompt: PROMPT, maxTokens: 16, temperature: 0, artifacts,
      plugins: [addVector(STEER[0]!.options), logger({ points: ["resid_post.2"], directions: { d: "dog" }, topK: 0, onRecord: (r) => r.type === "residual" && r.step > 0 && expected.push(r.projections.d!) })],
    });
    expect(steered.steerkit.trace.map((r: any) => r.value)).toEqual(expected);
    // Adding 3 x dog at the point read raises every token's projection by 3 |dog| (about 2.3) or so.
    const mean = (xs: any[]) => xs.reduce((a, r) => a + r.value, 0) / xs.length;
    expect(mean(steered.steerkit.trace) - mean(plain.steerkit.trace)).toBeGreaterThan(1.5);
  });

  test("streamed: text chunks name the positions they cover, trace chunks carry the same values as the JSON answer", async () => {
    const res = await post({ stream: true, trace: { sae: "sae", latent: 480 } });
    const { chunks, done } = sseChunks(await res.text());
    expect(done).toBe(true);
    const covered = chunks.filter((c) => c.choices.length && c.steerkit?.positions).flatMap((c) => c.steerkit.positions);
    const prompt = model.tokenize(PROMPT, { addBos: true }).length;
    expect(covered).toEqual(Array.from({ length: 16 }, (_, i) => prompt + i));
    const traced = chunks.filter((c) => c.steerkit?.trace).map((c) => c.steerkit.trace);
    expect(chunks.filter((c) => c.steerkit?.trace).every((c) => c.choices.length === 0)).toBe(true);
    const answer = await json(await post({ trace: { sae: "sae", latent: 480 } }));
    expect(traced).toEqual(answer.steerkit.trace);
    // Without a trace, chunks keep OpenAI's shape: no positions.
    const plain = sseChunks(await (await post({ stream: true })).text()).chunks;
    expect(plain.some((c) => c.steerkit?.positions)).toBe(false);
  });

  test("bad traces are 400s naming the field; only registered names, one point, no sink", async () => {
    const cases: [object, string, string][] = [
      [{ sae: "sae" }, "trace", 'a trace of an SAE needs "latent"'],
      [{ direction: "dog" }, "trace", 'a trace of a direction needs "point"'],
      [{ sae: "sae", latent: 1, direction: "dog", point: "resid_post.2" }, "trace", 'exactly one of "sae" or "direction"'],
      [{ sae: "sae", latent: -1 }, "trace.latent", "trace.latent"],
      [{ sae: "sae", latent: 512 }, "trace", "latent 512 is out of range: SAE \"sae\" has 512 latents"],
      [{ sae: "models/sae/stories260K-resid_post.2-topk", latent: 1 }, "trace", 'no sae named "models/sae/stories260K-resid_post.2-topk" is registered'],
      [{ direction: "../dog.safetensors", point: "resid_post.2" }, "trace", "registered directions: dog"],
      [{ direction: "dog", point: "resid_post.4" }, "trace", 'direction "dog" has no vector for resid_post.4'],
      [{ direction: "dog", point: "resid_post.*" }, "trace.point", "expected one point"],
      [{ sae: "sae", latent: 1, file: "/tmp/steerkit-trace" }, "trace.file", 'trace takes "sae" and "latent"'],
      [{ sae: "sae", latent: 1, onRecord: "x" }, "trace.onRecord", 'trace takes "sae" and "latent"'],
    ];
    for (const [trace, param, message] of cases) {
      const res = await post({ trace });
      expect(res.status).toBe(400);
      const { error } = await json(res);
      expect(error.param).toBe(param);
      expect(error.message).toContain(message);
    }
  });
});
