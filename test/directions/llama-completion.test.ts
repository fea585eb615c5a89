/**
 * llama.cpp's own loader on Steerkit's control vector: `llama-completion --control-vector(-scaled)`
 * must write the same greedy text as Steerkit's add-vector with the same file. Needs a
 * llama-completion built from the pinned llama.cpp source (not shipped; README of
 * models/directions/stories260K-dog says how), named by STEERKIT_LLAMA_COMPLETION; skipped without it.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { DOG_DIR } from "../../examples/directions-dog.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { generate } from "../../src/core/generate.ts";
import { addVector } from "../../src/plugins/index.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";

const binary = process.env.STEERKIT_LLAMA_COMPLETION;
const cv = join(DOG_DIR, "dog.gguf");

describe("llama.cpp's loader accepts Steerkit's control vector", () => {
  test.skipIf(!binary)("llama-completion --control-vector-scaled writes what add-vector writes (greedy, 32 tokens)", async () => {
    const model = await llamaCpp.load(DEFAULT_MODEL_PATH);
    try {
      const artifacts = createArtifacts().register("dog", directionArtifact, { path: cv });
      const texts: string[] = [];
      for (const scale of [0, 1, 3]) {
        const args = [binary!, "-m", DEFAULT_MODEL_PATH, "-p", "Once upon a time", "-n", "32", "--temp", "0", "-t", "2", "--no-warmup", "-no-cnv"];
        if (scale) args.push("--control-vector-scaled", `${cv}:${scale}`);
        const p = Bun.spawnSync(args, { stdin: "ignore" });
        expect(p.exitCode).toBe(0);
        const theirs = p.stdout.toString().trim();
        const ours = await generate(model, { prompt: "Once upon a time", maxTokens: 32, temperature: 0, artifacts, plugins: scale ? [addVector({ vector: "dog", scale })] : [] });
        expect(theirs).toBe(`Once upon a time${ours.text}`.trim());
        texts.push(theirs);
      }
      expect(texts[1]).not.toBe(texts[0]); // the vector changes llama.cpp's output
    } finally {
      model.dispose();
    }
  });
});
