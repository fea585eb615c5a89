/**
 * The llama.cpp backend: GGUF models through libllama's C API, bound with bun:ffi.
 */
import { fileURLToPath } from "node:url";
import type { BackendAdapter } from "../../core/backend.ts";
import { loadLlamaLibrary } from "./ffi.ts";
import { LLAMA_CPP_CAPABILITIES, LlamaModel, type LlamaLoadOptions } from "./model.ts";

/** The embedded default model (llama2.c stories260K), resolved relative to this package. */
export const DEFAULT_MODEL_PATH: string = fileURLToPath(new URL("../../../models/stories260K.gguf", import.meta.url));

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

/** `llamaCpp.load`, synchronously. */
export function loadModel(path: string, options?: LlamaLoadOptions): LlamaModel {
  const lib = loadLlamaLibrary();
  return new LlamaModel(lib, path, options);
}

export { LlamaModel, LlamaModelError, LLAMA_CPP_CAPABILITIES, type LlamaLoadOptions } from "./model.ts";
export { LlamaSequence, SequenceError, type LlamaSequenceOptions, type PointMode } from "./sequence.ts";
export { LlamaLoadError, loadLlamaLibrary, readDefaults, EXPECTED_DEFAULTS } from "./ffi.ts";
export { plainCompletion, ChatTemplateError } from "./chat.ts";
export * as abi from "./abi.ts";
