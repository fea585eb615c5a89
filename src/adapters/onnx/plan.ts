/**
 * Build the graphs that run a request's residual hooks, from the normalized decoder graph.
 *
 * - `affine` points get per-site inputs for `h' = h + (h U) V + c` inside the graph (mode c):
 *   one session, no JS on the hot path. An edit limited to positions also gets a row mask input
 *   `[1, seq, 1]` (1 in range, 0 outside) and the graph computes `h' = h + mask * ((h U) V + c)`:
 *   the range is data fed per step, so one plan serves every range (and every prompt length).
 * - `read` points become extra graph outputs (mode b): one session; hooks see them after the pass.
 * - `split` points cut the graph into segments (mode a): segment j ends at cut j's raw tensor,
 *   JS edits it, segment j+1 takes the edited tensor as an input. Nodes needed by several segments
 *   (mask and position preprocessing) are recomputed in each: they are cheap and this keeps every
 *   segment a self-contained ONNX model.
 */
import { pointName, type HookPoint } from "../../core/sites.ts";
import {
  attr,
  DataType,
  node,
  valueInfo,
  type OnnxGraph,
  type OnnxModel,
  type OnnxNode,
  type OnnxValueInfo,
  type DimSpec,
} from "../../formats/onnx/index.ts";
import { freshNamer, indexGraph } from "./graph.ts";

export interface PlanSpec {
  /** Points edited in JS, in forward order. */
  readonly split: readonly HookPoint[];
  /** Points edited in-graph, with whether the edit has a low-rank part and is limited to positions. */
  readonly affine: readonly AffineSpec[];
  /** Points only read, in forward order. */
  readonly read: readonly HookPoint[];
  /**
   * A plan for batched passes (batch.ts): every affine input has a leading batch axis (one edit per
   * row: `c` `[B, 1, d]`, `U` `[B, d, k]`, `V` `[B, k, d]`) and every affine site takes a row mask
   * `[B, seq, 1]`, so rows with different edits, or none, share one plan. A point may then be both
   * affine (the rows that edit it in-graph) and split (the rows with a JS hook there).
   */
  readonly batched?: boolean;
}

export interface AffineSpec {
  readonly point: HookPoint;
  readonly lowRank: boolean;
  /** The edit applies to some rows only: the graph takes a row mask for it. */
  readonly positioned: boolean;
}

/** Names of one affine point's graph inputs. */
export interface SteerInputs {
  /** `[dModel]` float32 bias (zeros when the edit has none); `[B, 1, dModel]` in a batched plan. */
  readonly c: string;
  /** `[dModel, rank]` and `[rank, dModel]` float32, when the edit has a low-rank part (`[B, ..]` batched). */
  readonly U: string | null;
  readonly V: string | null;
  /** `[1, seq, 1]` float32 row mask, fed every step, when the edit is limited to positions (`[B, seq, 1]` batched, always). */
  readonly mask: string | null;
}

export interface SegmentSpec {
  readonly model: OnnxModel;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  /** The split point whose raw value this segment outputs (for JS to edit), or null for the last segment. */
  readonly cut: { point: HookPoint; tensor: string } | null;
}

export interface PlanGraphs {
  readonly segments: readonly SegmentSpec[];
  /** pointName -> names of the affine inputs. */
  readonly steer: ReadonlyMap<string, SteerInputs>;
  /** Read points and the output tensor holding each. */
  readonly reads: readonly { point: HookPoint; tensor: string }[];
}

export function planKey(spec: PlanSpec): string {
  return JSON.stringify([
    spec.batched ? "batched" : "one",
    spec.split.map(pointName),
    spec.affine.map((a) => `${pointName(a.point)}${a.lowRank ? "+uv" : ""}${a.positioned ? "@mask" : ""}`),
    spec.read.map(pointName),
  ]);
}

export function buildPlanGraphs(
  base: OnnxModel,
  graph: OnnxGraph,
  sites: ReadonlyMap<string, string>,
  dModel: number,
  elemType: number,
  spec: PlanSpec,
): PlanGraphs {
  const fresh = freshNamer(graph);
  let nodes = [...graph.nodes];
  const extraInputs: OnnxValueInfo[] = [];
  const initializers = [...graph.initializers];
  const steer = new Map<string, SteerInputs>();
  const siteOf = (p: HookPoint) => {
    const t = sites.get(pointName(p));
    if (t === undefined) throw new Error(`no tensor for hook point ${pointName(p)}`);
    return t;
  };

  // Mode c: rename the site's producer output to a raw tensor and recompute the site from it.
  for (const a of spec.affine) {
    const site = siteOf(a.point);
    const name = pointName(a.point);
    const raw = fresh(`${site}/steerkit_raw`);
    const at = nodes.findIndex((n) => n.outputs.includes(site));
    if (at < 0) throw new Error(`hook point ${name}: tensor "${site}" has no producer`);
    const producer = nodes[at]!;
    const renamed: OnnxNode = { ...producer, outputs: producer.outputs.map((o) => (o === site ? raw : o)) };
    const { inputs, added } = affineNodes(a, name, raw, site, dModel, elemType, fresh, extraInputs, spec.batched === true);
    steer.set(name, inputs);
    nodes = [...nodes.slice(0, at), renamed, ...added, ...nodes.slice(at + 1)];
  }

  const reads = spec.read.map((point) => ({ point, tensor: siteOf(point) }));
  const edited: OnnxGraph = { ...graph, nodes, initializers, inputs: [...graph.inputs, ...extraInputs] };
  const siteInfo = (t: string) => valueInfo(t, elemType, [null, null, dModel]);
  const outputs = [...graph.outputs, ...reads.filter((r) => !graph.outputs.some((o) => o.name === r.tensor)).map((r) => siteInfo(r.tensor))];

  const cuts = spec.split.map((point) => ({ point, tensor: siteOf(point) }));
  const segments = splitGraph(base, { ...edited, outputs }, cuts, siteInfo);
  return { segments, steer, reads };
}

/**
 * The nodes computing `site` from `raw`: `raw + c (+ (raw U) V)`, or with a mask
 * `raw + mask * ((raw U) V + c)`. The masked form scales the whole delta, so a row outside the
 * range gets `raw + 0`, exactly its unedited value (as long as its delta is finite: 0 * inf is NaN).
 * A float mask rather than a boolean one keeps it one Mul, cast like the other steer inputs.
 */
function affineNodes(
  a: AffineSpec,
  name: string,
  raw: string,
  site: string,
  dModel: number,
  elemType: number,
  fresh: (b: string) => string,
  extraInputs: OnnxValueInfo[],
  batched: boolean,
): { inputs: SteerInputs; added: OnnxNode[] } {
  const added: OnnxNode[] = [];
  const cIn = `steerkit.${name}.c`;
  // Batched: one edit per row, broadcast over the row's positions; MatMul batches over the leading axis.
  const rows: DimSpec[] = batched ? ["steerkit_batch"] : [];
  extraInputs.push(valueInfo(cIn, DataType.FLOAT, batched ? [...rows, 1, dModel] : [dModel]));
  const c = castIfNeeded(cIn, elemType, fresh, added);
  let U: string | null = null;
  let V: string | null = null;
  let huv: string | null = null;
  if (a.lowRank) {
    U = `steerkit.${name}.U`;
    V = `steerkit.${name}.V`;
    extraInputs.push(valueInfo(U, DataType.FLOAT, [...rows, dModel, `steerkit_rank_${name}`]));
    extraInputs.push(valueInfo(V, DataType.FLOAT, [...rows, `steerkit_rank_${name}`, dModel]));
    const hu = fresh(`${site}/steerkit_hU`);
    huv = fresh(`${site}/steerkit_hUV`);
    added.push(node("MatMul", [raw, castIfNeeded(U, elemType, fresh, added)], [hu]));
    added.push(node("MatMul", [hu, castIfNeeded(V, elemType, fresh, added)], [huv]));
  }
  let mask: string | null = null;
  if (!a.positioned && !batched) {
    if (huv) {
      const shifted = fresh(`${site}/steerkit_shifted`);
      added.push(node("Add", [raw, c], [shifted]), node("Add", [shifted, huv], [site]));
    } else added.push(node("Add", [raw, c], [site]));
  } else {
    mask = `steerkit.${name}.mask`;
    extraInputs.push(valueInfo(mask, DataType.FLOAT, [batched ? "steerkit_batch" : 1, null, 1]));
    let delta = c;
    if (huv) {
      delta = fresh(`${site}/steerkit_delta`);
      added.push(node("Add", [huv, c], [delta]));
    }
    const masked = fresh(`${site}/steerkit_masked`);
    added.push(node("Mul", [castIfNeeded(mask, elemType, fresh, added), delta], [masked]));
    added.push(node("Add", [raw, masked], [site]));
  }
  return { inputs: { c: cIn, U, V, mask }, added };
}

function castIfNeeded(input: string, elemType: number, fresh: (b: string) => string, out: OnnxNode[]): string {
  if (elemType === DataType.FLOAT) return input;
  const cast = fresh(`${input}/steerkit_cast`);
  out.push(node("Cast", [input], [cast], [attr.int("to", elemType)]));
  return cast;
}

/** Cut `graph` at the cut tensors into self-contained models, in forward order. */
function splitGraph(
  base: OnnxModel,
  graph: OnnxGraph,
  cuts: readonly { point: HookPoint; tensor: string }[],
  siteInfo: (t: string) => OnnxValueInfo,
): SegmentSpec[] {
  const ix = indexGraph(graph);
  const cutIndex = new Map(cuts.map((c, i) => [c.tensor, i + 1]));
  // Level of a tensor: the last cut it is computed from (0: none). Decides each output's segment.
  const level = new Map<string, number>();
  for (const i of ix.order) {
    const n = graph.nodes[i]!;
    let l = 0;
    for (const x of n.inputs) if (x !== "") l = Math.max(l, level.get(x) ?? 0);
    for (const o of n.outputs) if (o !== "") level.set(o, cutIndex.get(o) ?? l);
  }
  const segments: SegmentSpec[] = [];
  const valueInfos = new Map<string, OnnxValueInfo>();
  for (const v of [...graph.inputs, ...graph.outputs, ...graph.valueInfo]) valueInfos.set(v.name ?? "", v);

  for (let j = 0; j <= cuts.length; j++) {
    const targets: OnnxValueInfo[] = graph.outputs.filter((o) => (level.get(o.name ?? "") ?? 0) === j && !cutIndex.has(o.name ?? ""));
    const cut = j < cuts.length ? cuts[j]! : null;
    if (cut) targets.push(siteInfo(cut.tensor));
    // Walk back from the targets; stop at graph inputs, weights and cut tensors fed from JS.
    const stopAt = (t: string) => {
      const c = cutIndex.get(t);
      return c !== undefined && c <= j;
    };
    const needed = new Set<number>();
    const inputs = new Set<string>();
    const stack = targets.map((t) => t.name ?? "");
    const seen = new Set<string>();
    while (stack.length) {
      const t = stack.pop()!;
      if (t === "" || seen.has(t)) continue;
      seen.add(t);
      if (stopAt(t) || ix.graphInputs.has(t)) {
        inputs.add(t);
        continue;
      }
      if (ix.initializers.has(t)) continue;
      const p = ix.producer.get(t);
      if (p === undefined) continue;
      if (!needed.has(p)) {
        needed.add(p);
        for (const x of graph.nodes[p]!.inputs) stack.push(x);
      }
    }
    const nodes = ix.order.filter((i) => needed.has(i)).map((i) => graph.nodes[i]!);
    const used = new Set<string>();
    for (const n of nodes) for (const x of n.inputs) used.add(x);
    const segGraph: OnnxGraph = {
      ...graph,
      nodes,
      initializers: graph.initializers.filter((t) => used.has(t.name ?? "")),
      inputs: [...inputs].map((t) => (cutIndex.has(t) ? siteInfo(t) : valueInfos.get(t)!)),
      outputs: targets,
      valueInfo: graph.valueInfo.filter((v) => used.has(v.name ?? "")),
    };
    segments.push({
      model: { ...base, graph: segGraph },
      inputs: segGraph.inputs.map((v) => v.name ?? ""),
      outputs: targets.map((v) => v.name ?? ""),
      cut,
    });
  }
  return segments;
}
