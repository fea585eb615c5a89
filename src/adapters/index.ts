/**
 * Choosing and opening a backend by name or by path. Adapters are imported on demand so that using
 * one never loads another's native library.
 */
import { pathKind } from "../formats/files.ts";
import type { BackendAdapter, LoadOptions, Model } from "../core/backend.ts";
import { checkCapabilities } from "../core/chain.ts";
import { SteerkitError } from "../core/errors.ts";
import type { ConfiguredPlugin } from "../core/plugin.ts";

export const BACKEND_NAMES = ["llama-cpp", "onnx", "reference"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export async function loadAdapter(name: BackendName): Promise<BackendAdapter> {
  switch (name) {
    case "llama-cpp":
      return (await import("./llama-cpp/index.ts")).llamaCpp;
    case "onnx":
      return (await import("./onnx/index.ts")).onnx;
    case "reference":
      return (await import("../testing/reference-llama.ts")).referenceLlama;
  }
}

/** `.gguf` file -> llama.cpp; a directory (ONNX export) or `.onnx` file -> ONNX Runtime. */
export function inferBackend(path: string): BackendName {
  // A FIFO, device, socket or link loop fails here, by its kind, before any adapter opens it.
  const kind = pathKind(path, (reason) => {
    throw new SteerkitError("INVALID_MODEL_FILE", `${path}: ${reason}`);
  }, "a model file or an ONNX export directory");
  if (kind === "directory" || path.toLowerCase().endsWith(".onnx")) return "onnx";
  if (path.toLowerCase().endsWith(".gguf")) return "llama-cpp";
  throw new SteerkitError(
    "INVALID_REQUEST",
    `${path}: cannot tell the backend from the path (expected a .gguf file or an ONNX export directory); pass a backend (${BACKEND_NAMES.join(", ")})`,
  );
}

export interface OpenModelOptions extends LoadOptions {
  /** Backend name; inferred from the path when absent. */
  readonly backend?: string;
  /** Plugins the model will run: checked against the backend before any weights load. */
  readonly plugins?: readonly ConfiguredPlugin[];
}

/**
 * Open a model with the right adapter, failing early when a plugin needs what the backend lacks.
 * @example
 * ```ts
 * const plugins = [addVector({ points: ["resid_post.2"], vector, scale: 4 })];
 * const model = await openModel("models/stories260K.gguf", { plugins, threads: 2 }); // llama.cpp, from the path
 * const onnxModel = await openModel("out/stories-onnx"); // an export directory: ONNX Runtime
 * try {
 *   console.log((await generate(model, { prompt: "Once upon a time", plugins })).text);
 * } finally {
 *   model.dispose();
 * }
 * ```
 */
export async function openModel(path: string, options: OpenModelOptions = {}): Promise<Model> {
  const { backend, plugins = [], ...load } = options;
  if (backend !== undefined && !(BACKEND_NAMES as readonly string[]).includes(backend)) {
    throw new SteerkitError("INVALID_REQUEST", `unknown backend "${backend}"; expected one of ${BACKEND_NAMES.join(", ")}`);
  }
  const name = (backend as BackendName | undefined) ?? inferBackend(path);
  const adapter = await loadAdapter(name);
  checkCapabilities(plugins, adapter);
  return adapter.load(path, load);
}
