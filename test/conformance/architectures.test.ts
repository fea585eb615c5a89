/**
 * The conformance suite on the reference backend and on the converted ONNX model for the two
 * architectures furthest from llama (gemma2: scaled embeddings, post-norms, soft-caps, sliding
 * windows; gpt2: learned positions, LayerNorm, biases, a context capped by its position table), on
 * the project's random-weight GGUFs. The ONNX run also checks its outputs against the reference's.
 */
import { afterAll, describe, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { conformanceChecks, referenceCheck, referenceLlama } from "../../src/testing/index.ts";
import { writeRandomGguf } from "../../src/testing/random-gguf.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-conformance-archs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const arch of ["gemma2", "gpt2"] as const) {
  const gguf = join(dir, `${arch}.gguf`);
  const exportDir = join(dir, arch);
  let converted: Promise<unknown> | null = null;
  const prepare = () => (converted ??= Promise.resolve().then(() => (writeRandomGguf(gguf, { arch }), convertGgufToOnnx(gguf, exportDir))));
  const reference = async () => (await prepare(), referenceLlama.load(gguf, { contextLength: 64 }));
  const converted64 = async () => (await prepare(), onnx.load(exportDir, { contextLength: 64, threads: 1 }));

  describe(`conformance: reference backend, ${arch}`, () => {
    for (const c of conformanceChecks) test(c.name, () => c.run(reference));
  });
  describe(`conformance: ONNX Runtime, ${arch} converted`, () => {
    for (const c of [...conformanceChecks, referenceCheck(reference)]) test(c.name, () => c.run(converted64, { tolerance: { reference: 1e-3 } }));
  });
}
