/**
 * The conformance suite on the llama.cpp adapter for every architecture it hooks, on each
 * architecture's tiny random-weight model (src/testing/random-gguf.ts): the hook contract (rows,
 * positions, in place vs replacement, readers vs writers, rollback, native vs JS...) holds on each
 * architecture's graph, not only on llama's.
 */
import { afterAll, describe, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { conformanceChecks } from "../../src/testing/index.ts";
import { RANDOM_GGUF_ARCHITECTURES, writeRandomGguf } from "../../src/testing/random-gguf.ts";

/**
 * ggml's CPU GELU (gemma2, gemma3, gpt2) reads a table indexed by the input rounded to f16 and returns
 * f16 (GGML_GELU_FP16 in ggml-cpu/vec.h): the last-bit difference between the C and JS affine edits
 * can cross an f16 step there and move a logit by ~1e-3 of its size (measured up to 2.0e-3 on logits
 * of ~1 here). SiLU architectures are computed in f32 and keep the default 1e-3.
 */
const GELU = new Set(["gemma2", "gemma3", "gpt2"]);

const dir = mkdtempSync(join(tmpdir(), "steerkit-conformance-arch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const arch of RANDOM_GGUF_ARCHITECTURES) {
  describe(`conformance: llama.cpp on a random ${arch}`, () => {
    const path = join(dir, `${arch}.gguf`);
    writeRandomGguf(path, { arch });
    const open = () => llamaCpp.load(path, { contextLength: 64, threads: 1 });
    const options = GELU.has(arch) ? { tolerance: { nativeVsJs: 5e-3 } } : {};
    for (const c of conformanceChecks) test(c.name, () => c.run(open, options));
  });
}
