/**
 * add-vector with direction files: points taken from the file, norm-relative scaling from the
 * file's mean norms, and control vectors exported by Steerkit steering exactly like the same
 * vectors given inline, on llama.cpp's control-vector fast path and on the JS path alike.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { generate } from "../../src/core/generate.ts";
import { writeControlVector } from "../../src/directions/control-vector.ts";
import { writeDirectionFile } from "../../src/directions/file.ts";
import { addVector } from "../../src/plugins/index.ts";
import { DEFAULT_MODEL_PATH, runPlugin } from "../../src/testing/index.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-add-vector-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const d = 64;
const vec = (seed: number, size = 1) => Float32Array.from({ length: d }, (_, i) => size * Math.sin(seed * 7 + i * (seed + 1)));

describe("add-vector with direction files", () => {
  const path = join(dir, "d.safetensors");
  writeDirectionFile(path, { vectors: new Map([["resid_post.1", vec(1, 0.3)], ["resid_post.3", vec(3, 2)]]), meanNorms: new Map([["resid_post.1", 5], ["resid_post.3", 8]]) });
  const artifacts = () => createArtifacts().register("d", directionArtifact, { path });

  test("without points, a per-point direction runs at the points its file has", async () => {
    const run = await runPlugin(addVector({ vector: "d", scale: 2 }), { artifacts: artifacts(), maxTokens: 2 });
    expect(new Set(run.changed.map((t) => t.point))).toEqual(new Set(["resid_post.1", "resid_post.3"]));
    const t = run.changed.find((x) => x.point === "resid_post.3")!;
    for (let i = 0; i < d; i++) expect(t.after[i]! - t.before[i]!).toBeCloseTo(2 * vec(3, 2)[i]!, 4);
  });

  test('relativeTo "mean-norm": x += scale * meanNorm(point) * v/|v|', async () => {
    const run = await runPlugin(addVector({ vector: "d", scale: 0.5, relativeTo: "mean-norm" }), { artifacts: artifacts(), maxTokens: 1 });
    for (const [point, mean, v] of [["resid_post.1", 5, vec(1, 0.3)], ["resid_post.3", 8, vec(3, 2)]] as const) {
      const t = run.changed.find((x) => x.point === point)!;
      const n = Math.hypot(...v);
      const added = t.after.map((x, i) => x - t.before[i]!).subarray(0, d);
      expect(Math.hypot(...added)).toBeCloseTo(0.5 * mean, 3);
      for (let i = 0; i < d; i++) expect(added[i]!).toBeCloseTo((0.5 * mean * v[i]!) / n, 4);
    }
  });

  test("bad combinations name the option", async () => {
    await expect(runPlugin(addVector({ vector: Array.from(vec(1)), relativeTo: "mean-norm", points: ["resid_post.1"] }), { maxTokens: 1 })).rejects.toThrow(/relativeTo.*not an inline vector/);
    await expect(runPlugin(addVector({ vector: Array.from(vec(1)) }), { maxTokens: 1 })).rejects.toThrow(/points.*inline vector needs points/);
    const json = createArtifacts().register("plain", directionArtifact, { value: { "resid_post.2": Array.from(vec(2)) } });
    await expect(runPlugin(addVector({ vector: "plain", relativeTo: "mean-norm" }), { artifacts: json, maxTokens: 1 })).rejects.toThrow(/no mean residual norm for resid_post.2/);
    const shared = createArtifacts().register("one", directionArtifact, { value: Array.from(vec(2)) });
    await expect(runPlugin(addVector({ vector: "one" }), { artifacts: shared, maxTokens: 1 })).rejects.toThrow(/one vector for every point: say where/);
    const narrow = createArtifacts().register("n", directionArtifact, { value: { "resid_post.2": [1, 2, 3] } });
    await expect(runPlugin(addVector({ vector: "n" }), { artifacts: narrow, maxTokens: 1 })).rejects.toThrow(/has 3 values; the model's residual has 64/);
    const far = createArtifacts().register("far", directionArtifact, { value: { "resid_post.7": Array.from(vec(2)) } });
    await expect(runPlugin(addVector({ vector: "far" }), { artifacts: far, maxTokens: 1 })).rejects.toThrow(/layer 7 of resid_post is outside 0..4/);
  });
});

describe("a control vector exported by Steerkit steers like the same vectors inline (stories260K, llama.cpp)", () => {
  test("greedy tokens equal: file vs inline, llama.cpp's control-vector fast path vs the JS path; and they differ from unsteered", async () => {
    const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 128 });
    try {
      const layers = new Map([1, 2, 3, 4].map((l) => [`resid_post.${l}`, vec(l, 1.5)] as const));
      const path = join(dir, "cv.gguf");
      writeControlVector(path, layers, { modelHint: model.info.architecture, nLayers: model.info.nLayers });
      const artifacts = createArtifacts().register("cv", directionArtifact, { path });
      const run = async (plugins: ReturnType<typeof addVector>[], fastPath = true) =>
        (await generate(model, { prompt: "Once upon a time", maxTokens: 24, temperature: 0, plugins, artifacts, fastPath })).tokens;
      const fromFile = await run([addVector({ vector: "cv", scale: 1.25 })]);
      const inline = await run([...layers].map(([p, v]) => addVector({ points: [p], vector: Array.from(v), scale: 1.25 })));
      const js = await run([addVector({ vector: "cv", scale: 1.25 })], false);
      const unsteered = await run([]);
      expect(fromFile).toEqual(inline);
      expect(js).toEqual(fromFile);
      expect(fromFile).not.toEqual(unsteered);
    } finally {
      model.dispose();
    }
  });
});
