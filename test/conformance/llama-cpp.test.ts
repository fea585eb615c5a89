/** The conformance suite on the llama.cpp adapter, and its agreement with the reference backend. */
import { describe, test } from "bun:test";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { conformanceChecks, DEFAULT_MODEL_PATH, referenceCheck, referenceLlama } from "../../src/testing/index.ts";

// A small context (one check fills it); one thread, as on a busy 2-core CI machine ggml's spinning pool is slow to share.
const open = () => llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 64, threads: 1 });
const reference = () => referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 64 });

describe("conformance: llama.cpp", () => {
  for (const c of [...conformanceChecks, referenceCheck(reference)]) test(c.name, () => c.run(open));
});
