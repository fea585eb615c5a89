/**
 * KV-cache layouts of decoder exports:
 * - Optimum / transformers.js / onnxruntime-genai: `past_key_values.N.key|value` -> `present.N.key|value`,
 *   each `[batch, kv_heads, past_len, head_dim]`.
 * - legacy GPT-2 style: `past_N` -> `present_N`, `[2, batch, heads, past_len, head_dim]` (key and value stacked).
 */
import { valueInfoElemType, valueInfoShape, type DimSpec, type OnnxGraph } from "../../formats/onnx/index.ts";

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

export class KvLayoutError extends Error {
  override name = "KvLayoutError";
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
