/**
 * Find the residual stream of a decoder graph (after {@link splitFusedNorms}) and name its sites.
 *
 * A residual update is an `Add` of two non-constant inputs where one input (the branch) is computed
 * from the other (the stream). Updates link into a chain when one's output is the next one's stream;
 * the longest chain is the residual stream. Layers are numbered by data flow, not by names: the
 * attention update of layer L is the one whose branch newly reads KV-cache input L; the update after
 * it with no new KV input is the MLP of layer L. So resid_pre.0 is the first update's stream,
 * resid_mid.L the attention update's output, resid_post.L the MLP update's output.
 */
import { pointName, type HookPoint } from "../../core/sites.ts";
import { dependsOn, indexGraph, type GraphIndex } from "./graph.ts";
import type { OnnxGraph } from "../../formats/onnx/index.ts";
import { SteerkitError } from "../../core/errors.ts";

export interface ResidualChain {
  readonly nLayers: number;
  /** pointName -> tensor name, for every canonical point (resid_pre.0, resid_mid.L, resid_post.L). */
  readonly sites: ReadonlyMap<string, string>;
  readonly index: GraphIndex;
}

export class ResidualChainError extends SteerkitError {
  override name = "ResidualChainError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("UNSUPPORTED_MODEL", message, options);
  }
}

interface Update {
  node: number;
  stream: string;
  branch: string;
  out: string;
}

/** Ops whose output carries only shape information: KV dependence does not flow through them. */
const SHAPE_ONLY = new Set(["Shape", "Size"]);

export function findResidualChain(graph: OnnxGraph, layerOfKvInput: ReadonlyMap<string, number>, nLayers: number): ResidualChain {
  const ix = indexGraph(graph);
  const kv = kvDependence(ix, layerOfKvInput);

  const updates: Update[] = [];
  for (const i of ix.order) {
    const n = graph.nodes[i]!;
    if (n.opType !== "Add" || (n.domain ?? "") !== "" || n.inputs.length !== 2) continue;
    const [a, b] = n.inputs as [string, string];
    if (ix.constant.has(a) || ix.constant.has(b) || a === b) continue;
    if (dependsOn(ix, a, b)) updates.push({ node: i, stream: a, branch: b, out: n.outputs[0]! });
    else if (dependsOn(ix, b, a)) updates.push({ node: i, stream: b, branch: a, out: n.outputs[0]! });
  }
  const byStream = new Map<string, Update>();
  for (const u of updates) if (!byStream.has(u.stream)) byStream.set(u.stream, u);
  const outputs = new Set(updates.map((u) => u.out));
  let best: Update[] = [];
  for (const start of updates) {
    if (outputs.has(start.stream)) continue;
    const chain: Update[] = [];
    for (let u: Update | undefined = start; u && chain.length <= updates.length; u = byStream.get(u.out)) chain.push(u);
    if (chain.length > best.length) best = chain;
  }
  if (best.length < 2) {
    throw new ResidualChainError(
      `no residual chain found: expected Add nodes (or Skip*LayerNormalization) adding each block's output to the stream, found ${best.length} linked update(s)`,
    );
  }

  const sites = new Map<string, string>();
  const set = (p: HookPoint, tensor: string) => sites.set(pointName(p), tensor);
  set({ site: "resid_pre", layer: 0 }, best[0]!.stream);
  let layer = -1;
  let expectMlp = false;
  for (const u of best) {
    const fresh = kv.get(u.branch)! & ~kv.get(u.stream)!;
    const layers = bitsOf(fresh);
    if (layers.length > 1) {
      throw new ResidualChainError(`residual update "${graph.nodes[u.node]!.name ?? u.out}" reads KV-cache layers ${layers.join(", ")} at once`);
    }
    if (layers.length === 1) {
      if (layers[0] !== layer + 1 || expectMlp) {
        throw new ResidualChainError(
          `residual chain out of order: an attention update reads KV-cache layer ${layers[0]} after layer ${layer}${expectMlp ? " without an MLP update between" : ""}`,
        );
      }
      layer = layers[0]!;
      set({ site: "resid_mid", layer }, u.out);
      expectMlp = true;
    } else if (expectMlp) {
      set({ site: "resid_post", layer }, u.out);
      expectMlp = false;
    } else if (layer >= 0) {
      // An update reading no new KV input after the MLP: not a standard pre-norm block.
      throw new ResidualChainError(`layer ${layer} has more than two residual updates; only attention + MLP blocks are supported`);
    }
  }
  if (layer + 1 !== nLayers || expectMlp) {
    throw new ResidualChainError(`residual chain covers ${layer + 1} complete layer(s), the KV cache has ${nLayers}`);
  }
  return { nLayers, sites, index: ix };
}

/** Per tensor, a bitmask of the KV-cache layers whose data it is computed from. */
function kvDependence(ix: GraphIndex, layerOfKvInput: ReadonlyMap<string, number>): Map<string, bigint> {
  const mask = new Map<string, bigint>();
  for (const name of ix.graphInputs) {
    const l = layerOfKvInput.get(name);
    mask.set(name, l === undefined ? 0n : 1n << BigInt(l));
  }
  for (const t of ix.initializers) mask.set(t, 0n);
  for (const i of ix.order) {
    const n = ix.graph.nodes[i]!;
    let m = 0n;
    if (!SHAPE_ONLY.has(n.opType ?? "")) for (const x of n.inputs) if (x !== "") m |= mask.get(x) ?? 0n;
    for (const o of n.outputs) if (o !== "") mask.set(o, m);
  }
  return mask;
}

function bitsOf(m: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; m > 0n; i++, m >>= 1n) if (m & 1n) out.push(i);
  return out;
}
