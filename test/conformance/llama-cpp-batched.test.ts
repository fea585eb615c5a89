/**
 * The conformance suite on the llama.cpp adapter's batched view (`model.batched`): sequences of one
 * shared context, decoded together on a native thread, must keep the same contract as one context
 * each, and agree with the reference backend.
 */
import { describe, test } from "bun:test";
import { loadModel } from "../../src/adapters/llama-cpp/index.ts";
import type { Model } from "../../src/core/backend.ts";
import { conformanceChecks, DEFAULT_MODEL_PATH, referenceCheck, referenceLlama } from "../../src/testing/index.ts";
import { ownedBatchedView } from "../helpers/batched.ts";

/** The batched view, whose dispose() also frees the weights it was made from (each check opens its own model). */
const open = async (): Promise<Model> => ownedBatchedView(loadModel(DEFAULT_MODEL_PATH, { contextLength: 64, threads: 1 }), 8);
const reference = () => referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 64 });
/**
 * Not bitwise between runs: a sequence's rows share their forward pass with whatever else the batch
 * holds, and ggml blocks its sums by the pass's shape (measured 2.9e-6 interleaved vs alone here;
 * greedy tokens are still compared exactly). Alone in the batch a sequence is bitwise its own.
 */
const options = { tolerance: { same: 1e-3 } };

describe("conformance: llama.cpp, batched", () => {
  for (const c of [...conformanceChecks, referenceCheck(reference)]) test(c.name, () => c.run(open, options));
});
