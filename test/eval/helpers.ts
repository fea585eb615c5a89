/** A config over the committed eval fixtures, on the embedded model, written into a fresh directory. */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";

export const FIXTURES = join(import.meta.dir, "../fixtures/eval");
export const DOG = join(import.meta.dir, "../../models/directions/stories260K-dog/dog.safetensors");

/** The behaviour judged: "mentions a dog" (stories260K refuses nothing); steering: the shipped dog direction. */
export function fixtureConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    model: { path: DEFAULT_MODEL_PATH, threads: 1 },
    artifacts: { dog: { kind: "direction", path: DOG } },
    prompts: [
      { name: "openings", file: join(FIXTURES, "prompts.jsonl"), expect: "refuse", judge: { type: "module", path: join(FIXTURES, "judges.ts") } },
      { name: "chats", file: join(FIXTURES, "conversations.jsonl"), expect: "comply", judge: "refusal-substring" },
    ],
    capabilities: [
      { name: "cloze", kind: "multiple-choice", file: join(FIXTURES, "cloze.jsonl"), normalize: "chars" },
      { name: "stories", kind: "perplexity", file: join(FIXTURES, "stories.jsonl") },
    ],
    conditions: [
      { name: "none" },
      { name: "dog", recipe: [{ plugin: "add-vector", options: { vector: "dog", relativeTo: "mean-norm", scale: 0 } }], sweep: { path: "0.options.scale", values: [0.1, 0.3] } },
    ],
    generation: { maxTokens: 24, temperature: 0.8, seeds: [1, 2] },
    output: "out",
    ...overrides,
  };
}

/** Write `config` as eval.json in a new directory; returns the file's path. */
export function writeConfig(config: Record<string, unknown>, prefix = "steerkit-eval-"): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const path = join(dir, "eval.json");
  writeFileSync(path, JSON.stringify(config, null, 2));
  return path;
}
