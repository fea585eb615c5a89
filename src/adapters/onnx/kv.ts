/**
 * KV-cache layouts of decoder exports:
 * - Optimum / transformers.js / onnxruntime-genai: `past_key_values.N.key|value` -> `present.N.key|value`,
 *   each `[batch, kv_heads, past_len, head_dim]`.
 * - legacy GPT-2 style: `past_N` -> `present_N`, `[2, batch, heads, past_len, head_dim]` (key and value stacked).
 */
import {
  attr,
  DataType,
  node,
  tensorFromInt64,
  valueInfo,
  valueInfoElemType,
  valueInfoShape,
  type DimSpec,
  type OnnxGraph,
} from "../../formats/onnx/index.ts";
import { SteerkitError } from "../../core/errors.ts";

export interface KvEntry {
  readonly layer: number;
  readonly input: string;
  readonly output: string;
  /** Shape of the past input with the batch at 1 and the past length at 0. */
  readonly emptyDims: number[];
  /** Axis of the sequence length. */
  readonly seqAxis: number;
  readonly elemType: number;
}

export interface KvLayout {
  readonly style: "optimum" | "legacy";
  readonly entries: readonly KvEntry[];
  readonly nLayers: number;
  /** Input name -> layer, for numbering the residual chain. */
  readonly layerOfInput: ReadonlyMap<string, number>;
}

export class KvLayoutError extends SteerkitError {
  override name = "KvLayoutError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("UNSUPPORTED_MODEL", message, options);
  }
}

const OPTIMUM = /^past_key_values\.(\d+)\.(key|value)$/;
const LEGACY = /^past_(\d+)$/;

export interface KvDims {
  kvHeads?: number;
  headDim?: number;
}

export function detectKvLayout(graph: OnnxGraph, dims: KvDims): KvLayout | null {
  const outputs = new Set(graph.outputs.map((v) => v.name ?? ""));
  const entries: KvEntry[] = [];
  let style: KvLayout["style"] | null = null;
  for (const v of graph.inputs) {
    const name = v.name ?? "";
    let m = OPTIMUM.exec(name);
    let output: string;
    let layer: number;
    let seqAxis: number;
    let s: KvLayout["style"];
    if (m) {
      layer = Number(m[1]);
      output = `present.${m[1]}.${m[2]}`;
      seqAxis = 2;
      s = "optimum";
    } else if ((m = LEGACY.exec(name))) {
      layer = Number(m[1]);
      output = `present_${m[1]}`;
      seqAxis = 3;
      s = "legacy";
    } else continue;
    if (style !== null && style !== s) throw new KvLayoutError(`mixed KV-cache layouts (${style} and ${s} input names)`);
    style = s;
    if (!outputs.has(output)) throw new KvLayoutError(`KV-cache input "${name}" has no matching output "${output}"`);
    const shape = valueInfoShape(v);
    const rank = s === "optimum" ? 4 : 5;
    if (shape !== null && shape.length !== rank) {
      throw new KvLayoutError(`KV-cache input "${name}" has rank ${shape.length}, expected ${rank} for the ${s} layout`);
    }
    const emptyDims = fillKvDims(name, shape, rank, seqAxis, dims);
    entries.push({ layer, input: name, output, emptyDims, seqAxis, elemType: valueInfoElemType(v) ?? 1 });
  }
  if (style === null) return null;
  const layers = new Set(entries.map((e) => e.layer));
  const nLayers = layers.size;
  for (let l = 0; l < nLayers; l++) {
    if (!layers.has(l)) throw new KvLayoutError(`KV-cache inputs are not numbered 0..${nLayers - 1} (layer ${l} is missing)`);
  }
  return { style, entries, nLayers, layerOfInput: new Map(entries.map((e) => [e.input, e.layer])) };
}

function fillKvDims(name: string, shape: DimSpec[] | null, rank: number, seqAxis: number, dims: KvDims): number[] {
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const d = shape?.[i];
    if (i === seqAxis) out.push(0);
    else if (typeof d === "number") out.push(d);
    else if (i === rank - 4) out.push(1); // batch
    else if (i === rank - 3 && dims.kvHeads !== undefined) out.push(dims.kvHeads);
    else if (i === rank - 1 && dims.headDim !== undefined) out.push(dims.headDim);
    else if (rank === 5 && i === 0) out.push(2);
    else throw new KvLayoutError(`KV-cache input "${name}": dimension ${i} is symbolic ("${d}") and the config does not give it`);
  }
  return out;
}

/**
 * Rewrite the graph to output only the rows each step adds to the KV cache, not the whole cache.
 *
 * Why: onnxruntime-node copies every output into a freshly allocated JS buffer (preallocated
 * outputs too), and on this class of VM fresh memory costs page faults: returning a 128 MiB
 * `present` cost ~400 ms of CPU per step where the attention's own concat cost ~12 ms. Inputs are
 * passed zero-copy. So the graph slices `present` to the new rows (a few KiB), and the sequence
 * appends them to a KV buffer it reuses (see KvCache), touching no fresh memory per step.
 */
export function outputNewKvRows(graph: OnnxGraph, layout: KvLayout): { graph: OnnxGraph; newRows: Map<string, string> } {
  const used = new Set<string>();
  for (const n of graph.nodes) for (const x of [...n.inputs, ...n.outputs]) used.add(x);
  for (const t of graph.initializers) used.add(t.name ?? "");
  const fresh = (base: string) => {
    let name = base;
    for (let i = 1; used.has(name); i++) name = `${base}_${i}`;
    used.add(name);
    return name;
  };
  const nodes = [...graph.nodes];
  const initializers = [...graph.initializers];
  const end = fresh("steerkit/kv_slice_end");
  initializers.push(tensorFromInt64(end, [1], [9223372036854775807n]));
  const axisNames = new Map<number, string>();
  const newRows = new Map<string, string>();
  const producers = new Map<string, string>();
  for (const n of graph.nodes) for (const o of n.outputs) producers.set(o, n.opType ?? "");
  const hasMask = graph.inputs.some((i) => i.name === "attention_mask");
  const idsName = graph.inputs.find((i) => i.name === "input_ids" || i.name === "input_ids_0")?.name ?? "input_ids";
  let gqaIndex: string | null = null;
  /**
   * GroupQueryAttention writes each row's new KV rows right after that row's own past length
   * (`seqlens_k` + 1 - seq, from the mask's sum), not at the end of `present`: rows whose past is
   * padded (batch.ts) get theirs before the padding. So the rows are gathered per row at
   * `sum(attention_mask) - seq + i`, which for an unpadded row is the past length, as the Slice takes.
   */
  const gqaRows = (present: string): string => {
    if (gqaIndex === null) {
      const c = (name: string, dims: number[], v: bigint[]) => {
        const n = fresh(name);
        initializers.push(tensorFromInt64(n, dims, v));
        return n;
      };
      const one = c("steerkit/kv_gqa_one", [], [1n]);
      const t = (b: string) => fresh(`steerkit/kv_gqa_${b}`);
      const [mask, sum, idsShape, seq, start, range, rangeRow, idx2, idx4] = ["mask", "sum", "ids_shape", "seq", "start", "range", "range_row", "idx2", "idx4"].map(t) as [string, string, string, string, string, string, string, string, string];
      nodes.push(
        node("Cast", ["attention_mask"], [mask], [attr.int("to", DataType.INT64)]),
        node("ReduceSum", [mask, c("steerkit/kv_gqa_axes_1", [1], [1n])], [sum], [attr.int("keepdims", 1)]), // [batch, 1]
        node("Shape", [idsName], [idsShape]),
        node("Gather", [idsShape, one], [seq], [attr.int("axis", 0)]),
        node("Sub", [sum, seq], [start]), // each row's past length
        node("Range", [c("steerkit/kv_gqa_zero", [], [0n]), seq, one], [range]),
        node("Unsqueeze", [range, c("steerkit/kv_gqa_axes_0", [1], [0n])], [rangeRow]), // [1, seq]
        node("Add", [start, rangeRow], [idx2]), // [batch, seq]
        node("Unsqueeze", [idx2, c("steerkit/kv_gqa_axes_13", [2], [1n, 3n])], [idx4]), // [batch, 1, seq, 1]
      );
      gqaIndex = idx4;
    }
    const shape = fresh(`${present}/steerkit_shape`);
    const outer = fresh(`${present}/steerkit_outer`);
    const inner = fresh(`${present}/steerkit_inner`);
    const seqDim = fresh(`${present}/steerkit_seq`);
    const target = fresh(`${present}/steerkit_rows_shape`);
    const index = fresh(`${present}/steerkit_rows_index`);
    const rows = fresh(`${present}/steerkit_new_rows`);
    const c = (name: string, v: bigint[]) => {
      const n = fresh(name);
      initializers.push(tensorFromInt64(n, [v.length], v));
      return n;
    };
    const idsShape = fresh(`${present}/steerkit_ids_shape`);
    nodes.push(
      node("Shape", [present], [shape]),
      node("Slice", [shape, c("steerkit/kv_gqa_s0", [0n]), c("steerkit/kv_gqa_s2", [2n])], [outer]),
      node("Slice", [shape, c("steerkit/kv_gqa_s3", [3n]), c("steerkit/kv_gqa_s4", [4n])], [inner]),
      node("Shape", [idsName], [idsShape]),
      node("Slice", [idsShape, c("steerkit/kv_gqa_s1", [1n]), c("steerkit/kv_gqa_s2b", [2n])], [seqDim]),
      node("Concat", [outer, seqDim, inner], [target], [attr.int("axis", 0)]),
      node("Expand", [gqaIndex, target], [index]),
      node("GatherElements", [present, index], [rows], [attr.int("axis", 2)]),
    );
    return rows;
  };
  const outputs = graph.outputs.map((o) => {
    const e = layout.entries.find((x) => x.output === o.name);
    if (!e) return o;
    if (hasMask && producers.get(e.output) === "GroupQueryAttention") {
      const rows = gqaRows(e.output);
      newRows.set(e.output, rows);
      const dims = valueInfoShape(o);
      return valueInfo(rows, e.elemType, dims ? dims.map((d, i) => (i === e.seqAxis ? "steerkit_new_len" : d)) : null);
    }
    let axis = axisNames.get(e.seqAxis);
    if (!axis) {
      axis = fresh(`steerkit/kv_seq_axis_${e.seqAxis}`);
      initializers.push(tensorFromInt64(axis, [1], [e.seqAxis]));
      axisNames.set(e.seqAxis, axis);
    }
    const shape = fresh(`${e.output}/steerkit_past_shape`);
    const start = fresh(`${e.output}/steerkit_past_len`);
    const rows = fresh(`${e.output}/steerkit_new_rows`);
    nodes.push(
      node("Shape", [e.input], [shape]),
      node("Gather", [shape, axis], [start], [attr.int("axis", 0)]),
      node("Slice", [e.output, start, end, axis], [rows]),
    );
    newRows.set(e.output, rows);
    const dims = valueInfoShape(o);
    return valueInfo(rows, e.elemType, dims ? dims.map((d, i) => (i === e.seqAxis ? "steerkit_new_len" : d)) : null);
  });
  return { graph: { ...graph, nodes, initializers, outputs }, newRows };
}

/**
 * One KV-cache tensor of a sequence, kept in two reused buffers: the step reads `past` from one and
 * the next past is assembled in the other (old rows + the step's new rows), then they swap. A failed
 * step leaves `past` untouched. Capacity grows by doubling.
 */
export class KvCache {
  private buffers: [Float32Array | Uint16Array, Float32Array | Uint16Array];
  private current = 0;
  private length = 0;
  /** Product of the dims before / after the sequence axis. */
  private readonly outer: number;
  private readonly inner: number;

  constructor(
    private readonly entry: KvEntry,
    /** The most tokens it will ever hold (the context length): capacity never grows past it. */
    private readonly maxTokens = Number.MAX_SAFE_INTEGER,
  ) {
    this.outer = entry.emptyDims.slice(0, entry.seqAxis).reduce((a, b) => a * b, 1);
    this.inner = entry.emptyDims.slice(entry.seqAxis + 1).reduce((a, b) => a * b, 1);
    this.buffers = [this.alloc(0), this.alloc(0)];
  }

  private alloc(tokens: number): Float32Array | Uint16Array {
    const n = this.outer * tokens * this.inner;
    return this.entry.elemType === DataType.FLOAT16 ? new Uint16Array(n) : new Float32Array(n);
  }

  get tokens(): number {
    return this.length;
  }

  /** The cached rows as the `past` input: data and dims. */
  past(): { data: Float32Array | Uint16Array; dims: number[] } {
    const dims = [...this.entry.emptyDims];
    dims[this.entry.seqAxis] = this.length;
    return { data: this.buffers[this.current]!.subarray(0, this.outer * this.length * this.inner), dims };
  }

  /** Append a step's new rows (`[.., n, ..]` on the sequence axis). */
  append(rows: Float32Array | Uint16Array, n: number): void {
    const { outer, inner } = this;
    const old = this.length;
    const total = old + n;
    if (rows.length !== outer * n * inner) throw new RangeError(`KV rows for "${this.entry.input}": got ${rows.length} values, expected ${outer * n * inner}`);
    const src = this.buffers[this.current]!;
    let dst = this.buffers[1 - this.current]!;
    if (dst.length < outer * total * inner) {
      const capacity = Math.max(total, Math.min(this.maxTokens, Math.max(2 * (dst.length / (outer * inner)), 16)));
      dst = this.alloc(capacity);
      this.buffers[1 - this.current] = dst;
    }
    const oldBlock = old * inner;
    const newBlock = n * inner;
    const block = total * inner;
    for (let o = 0; o < outer; o++) {
      if (old > 0) dst.set(src.subarray(o * oldBlock, (o + 1) * oldBlock) as never, o * block);
      dst.set(rows.subarray(o * newBlock, (o + 1) * newBlock) as never, o * block + oldBlock);
    }
    this.current = 1 - this.current;
    this.length = total;
  }

  reset(): void {
    this.length = 0;
  }
}
