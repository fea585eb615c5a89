/**
 * The llama.cpp backend: GGUF models through libllama's C API, bound with bun:ffi.
 */
import { validateModelFile } from "./validate.ts";
import { checkFiniteWeights } from "../../formats/gguf-scan.ts";
import type { BackendAdapter } from "../../core/backend.ts";
import { loadLlamaLibrary } from "./ffi.ts";
import { LLAMA_CPP_CAPABILITIES, LlamaModel, type LlamaLoadOptions } from "./model.ts";

import { DEFAULT_MODEL_PATH, defaultContextLength } from "../../default-model.ts";

export { DEFAULT_MODEL_PATH };

export const llamaCpp: BackendAdapter<LlamaLoadOptions> = {
  name: "llama-cpp",
  capabilities: LLAMA_CPP_CAPABILITIES,
  canOpen(path: string): boolean {
    return path.toLowerCase().endsWith(".gguf");
  },
  async load(path: string, options?: LlamaLoadOptions): Promise<LlamaModel> {
    return loadModel(path, options);
  },
};

/** `llamaCpp.load`, synchronously. The file is validated (validate.ts) before llama.cpp opens it. */
export function loadModel(path: string, options: LlamaLoadOptions = {}): LlamaModel {
  checkFiniteWeights(validateModelFile(path), options.checkWeights ?? "small");
  const lib = loadLlamaLibrary();
  return new LlamaModel(lib, path, { ...options, contextLength: options.contextLength ?? defaultContextLength(path) });
}

export { LlamaModel, BatchedLlamaModel, LlamaModelError, LLAMA_CPP_CAPABILITIES, type LlamaLoadOptions } from "./model.ts";
export { LlamaBatch, BatchedSequence, DEFAULT_STEP_TOKENS, type BatchOptions } from "./batch.ts";
export { LlamaSequence, SequenceError, type LlamaSequenceOptions, type PointMode } from "./sequence.ts";
export { LlamaLoadError, loadLlamaLibrary, readDefaults, verifyPackage, EXPECTED_DEFAULTS } from "./ffi.ts";
export { validateModelFile, SUPPORTED_ARCHITECTURES, UnsupportedModelError } from "./validate.ts";
export { GgufError } from "../../formats/gguf.ts";
export * as abi from "./abi.ts";
export { quantizeGguf, quantizeTempPath, estimateQuantizedBytes, QuantizeError, QUANT_TYPES, QUANT_TYPE_INFO, type QuantType, type QuantizeOptions, type QuantizeReport } from "./quantize.ts";
