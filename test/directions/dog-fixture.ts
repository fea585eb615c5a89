/**
 * The dog demonstration as the selection tests use it: the shipped direction, 12 + 12 prompts that
 * end where stories260K names its character again ("... a little dog. The" -> " dog"), the model and
 * the score token.
 */
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { readPromptSet } from "../../src/directions/prompts.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";

export const D = "models/directions/stories260K-dog/";

/** The fixture; the caller disposes `model`. */
export async function dogFixture() {
  const dog = await createArtifacts().register("dog", directionArtifact, { path: `${D}dog.safetensors` }).load(directionArtifact, "dog");
  const setA = readPromptSet(`${D}dog.txt`).slice(0, 12).map((p) => `${p} The`);
  const setB = readPromptSet(`${D}other.txt`).slice(0, 12).map((p) => `${p} The`);
  const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 128 });
  const DOG_TOKEN = model.tokenize("dog", { addBos: false })[0]!;
  return { dog, setA, setB, model, DOG_TOKEN };
}
