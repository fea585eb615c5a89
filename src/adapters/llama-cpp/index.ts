/**
 * The llama.cpp backend: GGUF models through libllama's C API, bound with bun:ffi.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { validateModelFile } from "./validate.ts";
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

/**
 * The context stories260K gets by default: its file says 2048, but it was trained on 512 tokens
 * and degrades past that (models/README.md).
 */
const DEFAULT_MODEL_CONTEXT = 512;

/** `llamaCpp.load`, synchronously. The file is validated (validate.ts) before llama.cpp opens it. */
export function loadModel(path: string, options: LlamaLoadOptions = {}): LlamaModel {
  validateModelFile(path);
  const lib = loadLlamaLibrary();
  const isDefault = resolve(path) === DEFAULT_MODEL_PATH;
  return new LlamaModel(lib, path, isDefault && options.contextLength === undefined ? { ...options, contextLength: DEFAULT_MODEL_CONTEXT } : options);
}

export { LlamaModel, LlamaModelError, LLAMA_CPP_CAPABILITIES, type LlamaLoadOptions } from "./model.ts";
export { LlamaSequence, SequenceError, type LlamaSequenceOptions, type PointMode } from "./sequence.ts";
export { LlamaLoadError, loadLlamaLibrary, readDefaults, EXPECTED_DEFAULTS } from "./ffi.ts";
export { validateModelFile, SUPPORTED_ARCHITECTURES, UnsupportedModelError } from "./validate.ts";
export { GgufError } from "../../formats/gguf.ts";
export * as abi from "./abi.ts";
