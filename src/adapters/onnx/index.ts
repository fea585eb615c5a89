/**
 * ONNX Runtime backend: decoder exports (onnxruntime-genai, Optimum, transformers.js) run through
 * onnxruntime-node, with every residual hook site made reachable by rewriting the graph at load.
 */
import type { BackendAdapter } from "../../core/backend.ts";
import { looksLikeOnnxExport } from "./export-dir.ts";
import { loadOnnxModel, ONNX_CAPABILITIES, type OnnxLoadOptions } from "./model.ts";

export const onnx: BackendAdapter<OnnxLoadOptions> = {
  name: "onnx",
  capabilities: ONNX_CAPABILITIES,
  canOpen: looksLikeOnnxExport,
  load: loadOnnxModel,
};

export { OnnxModel, OnnxModelError, SUPPORTED_ONNX_OPSETS, type OnnxLoadOptions } from "./model.ts";
export { OnnxExportError } from "./export-dir.ts";
export default onnx;
