/** The conformance suite on the reference backend (the pure-TypeScript oracle). */
import { describe, test } from "bun:test";
import { conformanceChecks, DEFAULT_MODEL_PATH, referenceLlama } from "../../src/testing/index.ts";

// A small context: one check fills it, and the reference backend's attention is quadratic.
const open = () => referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 64 });

describe("conformance: reference backend", () => {
  for (const c of conformanceChecks) test(c.name, () => c.run(open));
});
