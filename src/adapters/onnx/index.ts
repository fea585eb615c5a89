/**
 * ONNX Runtime backend: decoder exports (onnxruntime-genai, Optimum, transformers.js) run through
 * onnxruntime-node, with every residual hook site made reachable by rewriting the graph at load.
 */
import type { BackendAdapter } from "../../core/backend.ts";
import { looksLikeOnnxExport } from "./export-dir.ts";
import { loadOnnxModel, ONNX_CAPABILITIES, type OnnxLoadOptions, type OnnxRuntimeModel } from "./model.ts";

/** The adapter; `load` resolves to the concrete model (its `sites`, `planSpec`, ... for inspection). */
export interface OnnxAdapter extends BackendAdapter<OnnxLoadOptions> {
  load(path: string, options?: OnnxLoadOptions): Promise<OnnxRuntimeModel>;
}

export const onnx: OnnxAdapter = {
  name: "onnx",
  capabilities: ONNX_CAPABILITIES,
  canOpen: looksLikeOnnxExport,
  load: loadOnnxModel,
};

export { OnnxRuntimeModel, OnnxModelError, loadOnnxModel, SUPPORTED_ONNX_OPSETS, type OnnxLoadOptions } from "./model.ts";
export { OnnxExportError } from "./export-dir.ts";
export default onnx;
