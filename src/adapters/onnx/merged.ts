/**
 * Optimum's merged decoder (`decoder_model_merged.onnx`, also what transformers.js v2 repositories
 * ship): `optimum.onnx.merge_decoders` puts the decoder without past and the decoder with past into
 * one graph whose only node is `If(use_cache_branch)`, with-past as `then_branch`, no-past as
 * `else_branch`; the weights are deduplicated into the outer graph's initializers (the branches keep
 * only scalars and small int constants) and the outer inputs are the union of both models' inputs
 * plus `use_cache_branch` (bool [1]).
 *
 * Steerkit always runs the with-past branch: it computes the same function as the no-past one when
 * the cache is empty (past length 0, which is how Steerkit starts every sequence), and one graph
 * means one residual stream to find and rewrite. So the merged graph is unwrapped here into a plain
 * with-past decoder: the `If` is replaced by the then-branch's nodes (its outputs renamed to the
 * `If`'s outputs through Identity where they differ), the branch's initializers join the outer ones,
 * and `use_cache_branch` is dropped. Nothing else in the file changes (external data, opsets).
 */
import { node, type OnnxGraph, type OnnxNode } from "../../formats/onnx/index.ts";
import { SteerkitError } from "../../core/errors.ts";

export const USE_CACHE_BRANCH = "use_cache_branch";

export class MergedDecoderError extends SteerkitError {
  override name = "MergedDecoderError";
  constructor(message: string) {
    super("UNSUPPORTED_MODEL", message);
  }
}

/** True when `graph` is an Optimum merged decoder (an `If` on the `use_cache_branch` input). */
export function isMergedDecoder(graph: OnnxGraph): boolean {
  return graph.inputs.some((v) => v.name === USE_CACHE_BRANCH) && graph.nodes.some((n) => isCacheIf(n));
}

function isCacheIf(n: OnnxNode): boolean {
  return n.opType === "If" && (n.domain ?? "") === "" && n.inputs[0] === USE_CACHE_BRANCH;
}

/**
 * The with-past decoder inside an Optimum merged decoder, as a plain graph (see the file header);
 * any other graph is returned as it is.
 * @example
 * const g = unwrapMergedDecoder(readOnnxFile("decoder_model_merged.onnx").model.graph!);
 * g.inputs.some((v) => v.name === "use_cache_branch"); // false
 */
export function unwrapMergedDecoder(graph: OnnxGraph): OnnxGraph {
  if (!isMergedDecoder(graph)) return graph;
  const ifs = graph.nodes.filter(isCacheIf);
  if (ifs.length !== 1) throw new MergedDecoderError(`merged decoder: expected one If on "${USE_CACHE_BRANCH}", found ${ifs.length}`);
  const theIf = ifs[0]!;
  const withPast = theIf.attributes.find((a) => a.name === "then_branch")?.g;
  if (!withPast) throw new MergedDecoderError(`merged decoder: the If "${theIf.name ?? ""}" has no then_branch (the with-past decoder)`);
  if (withPast.outputs.length !== theIf.outputs.length) {
    throw new MergedDecoderError(`merged decoder: the with-past branch has ${withPast.outputs.length} outputs, the If ${theIf.outputs.length}`);
  }
  const nodes: OnnxNode[] = [];
  for (const n of graph.nodes) {
    if (n !== theIf) {
      nodes.push(n);
      continue;
    }
    nodes.push(...withPast.nodes);
    theIf.outputs.forEach((out, i) => {
      const inner = withPast.outputs[i]!.name ?? "";
      if (out !== "" && inner !== out) nodes.push(node("Identity", [inner], [out], [], { name: `steerkit/unmerged/${out}` }));
    });
  }
  const stillUsed = nodes.some((n) => n.inputs.includes(USE_CACHE_BRANCH));
  return {
    ...graph,
    nodes,
    initializers: [...graph.initializers, ...withPast.initializers],
    inputs: stillUsed ? graph.inputs : graph.inputs.filter((v) => v.name !== USE_CACHE_BRANCH),
    valueInfo: [...graph.valueInfo, ...withPast.valueInfo],
  };
}
