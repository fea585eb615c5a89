/** The conformance suite on the ONNX Runtime adapter, with stories260K converted by `steerkit convert`. */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { conformanceChecks, DEFAULT_MODEL_PATH, referenceCheck, referenceLlama } from "../../src/testing/index.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-conformance-onnx-"));
beforeAll(() => convertGgufToOnnx(DEFAULT_MODEL_PATH, dir));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// A small context (one check fills it); one thread, as the parity test does on 2-core machines.
const open = () => onnx.load(dir, { contextLength: 64, threads: 1 });
const reference = () => referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 64 });

// The conversion computes in float32 like the reference backend: agreement is held far tighter
// than the default 0.05 that llama.cpp's F16 KV cache needs (measured 1e-5).
const options = { tolerance: { reference: 1e-3 } };


describe("conformance: ONNX Runtime", () => {
  for (const c of [...conformanceChecks, referenceCheck(reference)]) test(c.name, () => c.run(open, options));
});
