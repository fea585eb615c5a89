/**
 * Split the fused norms of optimized exports so every residual site is a plain tensor.
 *
 * In onnxruntime-genai and ORT-optimized exports the residual stream lives inside fused contrib
 * ops: `EmbedLayerNormalization` computes the embedding sum and normalizes it in one node,
 * `Skip[Simplified]LayerNormalization` adds the block's branch to the stream (output 3 is the sum,
 * absent for the final norm) and normalizes. Rewriting each as `Add` + a plain norm exposes the sum
 * as a tensor we can read, edit or cut at; the math is the same up to float rounding.
 */
import { attr, attrFloat, node, tensorFromInt64, type OnnxGraph, type OnnxNode, type OnnxTensor } from "../../formats/onnx/index.ts";
import { freshNamer } from "./graph.ts";
import { SteerkitError } from "../../core/errors.ts";

export const FUSED_RESIDUAL_OPS = ["EmbedLayerNormalization", "SkipLayerNormalization", "SkipSimplifiedLayerNormalization"];

export class UnsupportedGraphError extends SteerkitError {
  override name = "UnsupportedGraphError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("UNSUPPORTED_MODEL", message, options);
  }
}

/** A copy of `graph` with fused residual norms split. Initializers are shared, not copied. */
export function splitFusedNorms(graph: OnnxGraph): OnnxGraph {
  const fresh = freshNamer(graph);
  const used = new Set<string>();
  for (const n of graph.nodes) for (const x of n.inputs) used.add(x);
  for (const v of graph.outputs) used.add(v.name ?? "");
  const nodes: OnnxNode[] = [];
  const initializers: OnnxTensor[] = [...graph.initializers];
  let constants: { zero: string; one: string; seqIndex: string } | null = null;
  const int64Constants = () => {
    if (constants) return constants;
    constants = { zero: fresh("steerkit/const_0"), one: fresh("steerkit/const_1"), seqIndex: fresh("steerkit/const_seq_axis") };
    initializers.push(tensorFromInt64(constants.zero, [], [0]), tensorFromInt64(constants.one, [], [1]));
    initializers.push(tensorFromInt64(constants.seqIndex, [1], [1]));
    return constants;
  };

  for (const n of graph.nodes) {
    const op = n.domain === "com.microsoft" ? n.opType : undefined;
    const base = n.name || n.outputs[0] || "fused";
    if (op === "SkipLayerNormalization" || op === "SkipSimplifiedLayerNormalization") {
      const simplified = op === "SkipSimplifiedLayerNormalization";
      const [input, skip, gamma] = n.inputs as [string, string, string];
      const beta = simplified ? "" : (n.inputs[3] ?? "");
      const bias = (simplified ? n.inputs[3] : n.inputs[4]) ?? "";
      const eps = attrFloat(n, "epsilon", simplified ? 1e-6 : 1e-12);
      let branch = input;
      if (bias !== "") {
        branch = fresh(`${base}/steerkit_branch_bias`);
        nodes.push(node("Add", [input, bias], [branch], [], { name: `${base}/steerkit_bias` }));
      }
      const sum = n.outputs[3] && n.outputs[3] !== "" ? n.outputs[3] : fresh(`${base}/steerkit_residual`);
      nodes.push(node("Add", [branch, skip], [sum], [], { name: `${base}/steerkit_residual_add` }));
      nodes.push(normNode(simplified, sum, gamma, beta, n.outputs, eps, `${base}/steerkit_norm`));
    } else if (op === "EmbedLayerNormalization") {
      // Inputs: input_ids, segment_ids, word/position/segment embeddings, gamma, beta, mask, position_ids.
      const [ids, segIds, wordEmb, posEmb, segEmb, gamma, beta, , posIds] = [...n.inputs, "", "", "", "", "", "", "", "", ""];
      if (n.outputs[1] && used.has(n.outputs[1])) {
        throw new UnsupportedGraphError(`EmbedLayerNormalization "${base}": its mask_index output is used; only the embedding sum is supported`);
      }
      const eps = attrFloat(n, "epsilon", 1e-12);
      const words = fresh(`${base}/steerkit_words`);
      nodes.push(node("Gather", [wordEmb!, ids!], [words], [attr.int("axis", 0)]));
      let positionIds = posIds!;
      if (positionIds === "") {
        // No position_ids: positions are 0..seq-1 (what the fused op assumes).
        const c = int64Constants();
        const shape = fresh(`${base}/steerkit_ids_shape`);
        const seq = fresh(`${base}/steerkit_seq_len`);
        positionIds = fresh(`${base}/steerkit_positions`);
        nodes.push(node("Shape", [ids!], [shape]));
        nodes.push(node("Gather", [shape, c.one], [seq], [attr.int("axis", 0)]));
        nodes.push(node("Range", [c.zero, seq, c.one], [positionIds]));
      }
      const positions = fresh(`${base}/steerkit_positions_emb`);
      nodes.push(node("Gather", [posEmb!, positionIds], [positions], [attr.int("axis", 0)]));
      const sum = n.outputs[2] && n.outputs[2] !== "" ? n.outputs[2] : fresh(`${base}/steerkit_embedding`);
      if (segEmb !== "" && segIds !== "") {
        const segs = fresh(`${base}/steerkit_segments`);
        const partial = fresh(`${base}/steerkit_words_positions`);
        nodes.push(node("Gather", [segEmb!, segIds!], [segs], [attr.int("axis", 0)]));
        nodes.push(node("Add", [words, positions], [partial]));
        nodes.push(node("Add", [partial, segs], [sum]));
      } else {
        nodes.push(node("Add", [words, positions], [sum], [], { name: `${base}/steerkit_embedding_add` }));
      }
      nodes.push(normNode(false, sum, gamma!, beta!, [n.outputs[0] ?? ""], eps, `${base}/steerkit_norm`));
    } else {
      nodes.push(n);
    }
  }
  return { ...graph, nodes, initializers };
}

/**
 * LayerNormalization / SimplifiedLayerNormalization in the default domain: ORT registers both for
 * every opset (as contrib kernels below opset 17), so this works whatever the model imports.
 */
function normNode(simplified: boolean, x: string, gamma: string, beta: string, outs: readonly string[], eps: number, name: string): OnnxNode {
  const inputs = simplified || beta === "" ? [x, gamma] : [x, gamma, beta];
  // SkipLayerNorm outputs 1 and 2 (mean, inv_std_var) line up with LayerNormalization's.
  const outputs = [outs[0] ?? "", outs[1] ?? "", outs[2] ?? ""];
  while (outputs.length > 1 && outputs[outputs.length - 1] === "") outputs.pop();
  return node(simplified ? "SimplifiedLayerNormalization" : "LayerNormalization", inputs, outputs, [attr.int("axis", -1), attr.float("epsilon", eps)], { name });
}
