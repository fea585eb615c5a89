/**
 * The conformance suite on the ONNX adapter's batched view (`model.batched`): sequences decoded
 * together in one session.run per step, over a shared padded KV buffer, must keep the same contract
 * as one session.run per sequence, and agree with the reference backend. stories260K is converted
 * by `steerkit convert`, whose export batches (see the adapter README, "Concurrent sequences").
 */
import { afterAll, beforeAll, describe, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import type { Model } from "../../src/core/backend.ts";
import { conformanceChecks, DEFAULT_MODEL_PATH, referenceCheck, referenceLlama } from "../../src/testing/index.ts";
import { ownedBatchedView } from "../helpers/batched.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-conformance-onnx-batched-"));
beforeAll(() => convertGgufToOnnx(DEFAULT_MODEL_PATH, dir));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The batched view, whose dispose() also frees the model it was made from (each check opens its own). */
async function open(): Promise<Model> {
  const model = await onnx.load(dir, { contextLength: 64, threads: 1 });
  if (!model.batched) throw new Error(`the converted export should batch: ${model.batchRefusal}`);
  return ownedBatchedView(model, 8);
}
const reference = () => referenceLlama.load(DEFAULT_MODEL_PATH, { contextLength: 64 });
/**
 * Not bitwise between runs: a row shares its GEMMs with the others in its pass and attends over a
 * padded cache (masked keys weigh 0, but sums are blocked by the pass's shape); greedy tokens are
 * still compared exactly. Same float32 math as the single path, so the reference tolerance stays
 * test/conformance/onnx.test.ts's.
 */
const options = { tolerance: { same: 1e-3, reference: 1e-3 } };

describe("conformance: ONNX Runtime, batched", () => {
  for (const c of [...conformanceChecks, referenceCheck(reference)]) test(c.name, () => c.run(open, options));
});
