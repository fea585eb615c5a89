/**
 * Builders and readers over the plain {@link OnnxModel} data: enough to write a decoder graph from
 * scratch (the GGUF converter, test models) and to inspect nodes without touching protobuf.
 */
import {
  AttributeType,
  DataType,
  type OnnxAttribute,
  type OnnxGraph,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  type OnnxValueInfo,
} from "./types.ts";
import { fromUtf8, utf8 } from "./wire.ts";

/** A dimension of a value's shape: a size, a symbolic name ("batch", "past_seq_len"), or unknown. */
export type DimSpec = number | string | null;

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function checkCount(name: string, dims: readonly number[], count: number): void {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== count) throw new RangeError(`tensor "${name}": dims [${dims.join(", ")}] hold ${expected} values, got ${count}`);
}

/** An initializer (or Constant value) from little-endian bytes. The bytes are referenced, not copied. */
export function tensorFromBytes(name: string, dataType: number, dims: readonly number[], raw: Uint8Array): OnnxTensor {
  return { name, dataType, dims: [...dims], rawData: raw, externalData: [], extra: [] };
}

export function tensorFromFloat32(name: string, dims: readonly number[], data: Float32Array): OnnxTensor {
  checkCount(name, dims, data.length);
  return tensorFromBytes(name, DataType.FLOAT, dims, bytesOf(data));
}

/** float16 values given as their raw uint16 bit patterns. */
export function tensorFromFloat16Bits(name: string, dims: readonly number[], bits: Uint16Array): OnnxTensor {
  checkCount(name, dims, bits.length);
  return tensorFromBytes(name, DataType.FLOAT16, dims, bytesOf(bits));
}

export function tensorFromInt64(name: string, dims: readonly number[], data: BigInt64Array | readonly (number | bigint)[]): OnnxTensor {
  const arr = data instanceof BigInt64Array ? data : BigInt64Array.from(data, (v) => BigInt(v));
  checkCount(name, dims, arr.length);
  return tensorFromBytes(name, DataType.INT64, dims, bytesOf(arr));
}

export function tensorFromInt32(name: string, dims: readonly number[], data: Int32Array): OnnxTensor {
  checkCount(name, dims, data.length);
  return tensorFromBytes(name, DataType.INT32, dims, bytesOf(data));
}

/** A graph input/output/value_info entry for a tensor. */
export function valueInfo(name: string, elemType: number, shape: readonly DimSpec[] | null): OnnxValueInfo {
  return {
    name,
    type: {
      tensor: {
        elemType,
        shape:
          shape === null
            ? undefined
            : {
                dims: shape.map((d) =>
                  typeof d === "number" ? { value: d, extra: [] } : typeof d === "string" ? { param: d, extra: [] } : { extra: [] },
                ),
                extra: [],
              },
        extra: [],
      },
      extra: [],
    },
    extra: [],
  };
}

/** Element type of a tensor value info, or undefined. */
export function valueInfoElemType(v: OnnxValueInfo): number | undefined {
  return v.type?.tensor?.elemType;
}

/** Shape of a tensor value info (null for a rank-unknown one). */
export function valueInfoShape(v: OnnxValueInfo): DimSpec[] | null {
  const s = v.type?.tensor?.shape;
  if (s === undefined) return null;
  return s.dims.map((d) => (d.value !== undefined ? d.value : d.param !== undefined ? d.param : null));
}

/** Attribute values for {@link node}: pick the type explicitly, since JS numbers cannot tell int from float. */
export const attr = {
  int: (name: string, v: number | bigint): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.INT), i: BigInt(v) }),
  float: (name: string, v: number): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.FLOAT), f: v }),
  string: (name: string, v: string): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.STRING), s: utf8(v) }),
  ints: (name: string, v: readonly (number | bigint)[]): OnnxAttribute => ({
    ...emptyAttr(name, AttributeType.INTS),
    ints: v.map((x) => BigInt(x)),
  }),
  floats: (name: string, v: readonly number[]): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.FLOATS), floats: [...v] }),
  tensor: (name: string, t: OnnxTensor): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.TENSOR), t }),
  graph: (name: string, g: OnnxGraph): OnnxAttribute => ({ ...emptyAttr(name, AttributeType.GRAPH), g }),
};

function emptyAttr(name: string, type: number): OnnxAttribute {
  return { name, type, floats: [], ints: [], strings: [], tensors: [], graphs: [], extra: [] };
}

export interface NodeOptions {
  name?: string;
  /** Operator domain, e.g. "com.microsoft" for contrib ops; the default ONNX domain when absent. */
  domain?: string;
}

export function node(
  opType: string,
  inputs: readonly string[],
  outputs: readonly string[],
  attributes: readonly OnnxAttribute[] = [],
  options: NodeOptions = {},
): OnnxNode {
  return {
    opType,
    inputs: [...inputs],
    outputs: [...outputs],
    attributes: [...attributes],
    name: options.name,
    domain: options.domain,
    extra: [],
  };
}

export interface GraphSpec {
  name?: string;
  nodes: OnnxNode[];
  initializers?: OnnxTensor[];
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  valueInfo?: OnnxValueInfo[];
}

export function graph(spec: GraphSpec): OnnxGraph {
  return {
    name: spec.name ?? "graph",
    nodes: spec.nodes,
    initializers: spec.initializers ?? [],
    inputs: spec.inputs,
    outputs: spec.outputs,
    valueInfo: spec.valueInfo ?? [],
    extra: [],
  };
}

export interface ModelSpec {
  graph: OnnxGraph;
  /** Opset per domain; "" is the default ONNX domain. Default `{ "": 17 }`. */
  opsets?: Record<string, number>;
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  metadata?: Record<string, string>;
}

export function model(spec: ModelSpec): OnnxModel {
  const opsets = spec.opsets ?? { "": 17 };
  return {
    irVersion: spec.irVersion ?? 8,
    producerName: spec.producerName ?? "steerkit",
    producerVersion: spec.producerVersion,
    graph: spec.graph,
    opsetImports: Object.entries(opsets).map(([domain, version]) => ({ domain, version, extra: [] })),
    metadataProps: Object.entries(spec.metadata ?? {}).map(([key, value]) => ({ key, value, extra: [] })),
    extra: [],
  };
}

/** The opset version a model imports for `domain` ("" and "ai.onnx" are the default domain). */
export function opsetVersion(m: OnnxModel, domain = ""): number | undefined {
  const want = domain === "ai.onnx" ? "" : domain;
  for (const o of m.opsetImports) {
    const d = o.domain === undefined || o.domain === "ai.onnx" ? "" : o.domain;
    if (d === want) return o.version;
  }
  return undefined;
}

export function findAttribute(n: OnnxNode, name: string): OnnxAttribute | undefined {
  return n.attributes.find((a) => a.name === name);
}

export function attrInt(n: OnnxNode, name: string, fallback: number): number {
  const a = findAttribute(n, name);
  return a?.i !== undefined ? Number(a.i) : fallback;
}

export function attrFloat(n: OnnxNode, name: string, fallback: number): number {
  const a = findAttribute(n, name);
  return a?.f !== undefined ? a.f : fallback;
}

export function attrString(n: OnnxNode, name: string): string | undefined {
  const a = findAttribute(n, name);
  return a?.s !== undefined ? fromUtf8(a.s) : undefined;
}

/** Number of elements of a tensor. */
export function tensorSize(t: OnnxTensor): number {
  return t.dims.reduce((a, b) => a * b, 1);
}
