/**
 * llama.cpp and ONNX Runtime in one process, on one thread: an int8 ONNX model run between two
 * llama.cpp generations must not change llama.cpp's quantized output.
 *
 * The bug this guards: on CPUs with AMX, ggml-cpu's quantized matmuls load their tile shapes once
 * per thread, and ONNX Runtime's int8 GEMM (MatMulInteger, as transformers.js's model_quantized.onnx
 * uses it) loads its own shapes on the same calling thread. Without the shim's TILECFG restore
 * (sk_decode in src/adapters/llama-cpp/shim.c), stories260K at Q8_0 degenerated into repeated tokens
 * after the ONNX run. On a CPU without AMX there is no tile state to clobber and the check is the plain
 * "another backend leaves llama.cpp alone" property.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generate } from "../../src/core/generate.ts";
import { DEFAULT_MODEL_PATH, loadModel, quantizeGguf } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { writeRandomGguf } from "../../src/testing/random-gguf.ts";
import { writeOptimumExport } from "../onnx/helpers/optimum-export.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-ort-neighbour-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("an int8 ONNX Runtime run between two generations leaves llama.cpp's Q8_0 and Q4_0 tokens unchanged", async () => {
  const models = (["q8_0", "q4_0"] as const).map((type) => {
    const path = join(dir, `stories-${type}.gguf`);
    quantizeGguf(DEFAULT_MODEL_PATH, path, { type, threads: 2 });
    return loadModel(path, { threads: 1, contextLength: 64 });
  });
  const gguf = join(dir, "llama.gguf");
  writeRandomGguf(gguf, { arch: "llama" });
  const onnxModel = await onnx.load(writeOptimumExport(gguf, join(dir, "tjs"), "transformers.js", { quantized: true }), { contextLength: 64, threads: 1 });
  try {
    const greedy = async (i: number) =>
      (await generate(models[i]!, { prompt: "Once upon a time", maxTokens: 24, temperature: 0, ignoreEos: true })).tokens;
    const before = [await greedy(0), await greedy(1)];
    const seq = onnxModel.createSequence({});
    try {
      await seq.prefill([1, 5, 9, 13, 17, 21, 25, 29]);
      await seq.decode(3);
    } finally {
      seq.free();
    }
    expect(await greedy(0)).toEqual(before[0]!);
    expect(await greedy(1)).toEqual(before[1]!);
  } finally {
    onnxModel.dispose();
    for (const m of models) m.dispose();
  }
});
