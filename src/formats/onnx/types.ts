/**
 * ONNX ModelProto as plain data. Fields mirror onnx.proto (proto2): an optional field left
 * `undefined` is absent on the wire. Every field this codec does not interpret lives in `extra`
 * as exact bytes, so decode -> encode of a real export is byte-identical.
 */
import type { RawField } from "./wire.ts";

export type { RawField };

/** TensorProto.DataType. */
export const DataType = {
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  COMPLEX64: 14,
  COMPLEX128: 15,
  BFLOAT16: 16,
} as const;
export type DataTypeCode = number;

/** Bytes per element of a fixed-size data type (0 for strings and sub-byte types). */
export function dataTypeSize(t: number): number {
  switch (t) {
    case DataType.FLOAT:
    case DataType.INT32:
    case DataType.UINT32:
      return 4;
    case DataType.UINT8:
    case DataType.INT8:
    case DataType.BOOL:
      return 1;
    case DataType.UINT16:
    case DataType.INT16:
    case DataType.FLOAT16:
    case DataType.BFLOAT16:
      return 2;
    case DataType.INT64:
    case DataType.UINT64:
    case DataType.DOUBLE:
    case DataType.COMPLEX64:
      return 8;
    case DataType.COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

/** AttributeProto.AttributeType. */
export const AttributeType = {
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
  SPARSE_TENSOR: 11,
  SPARSE_TENSORS: 12,
  TYPE_PROTO: 13,
  TYPE_PROTOS: 14,
} as const;

export interface OnnxStringEntry {
  key?: string;
  value?: string;
  extra: RawField[];
}

export interface OnnxOpset {
  /** "" or undefined is the default ONNX domain. */
  domain?: string;
  version?: number;
  extra: RawField[];
}

export interface OnnxTensor {
  dims: number[];
  dataType?: number;
  name?: string;
  /** Little-endian element bytes (a view into the source buffer when decoded). */
  rawData?: Uint8Array;
  docString?: string;
  /** Key/value refs of external data: location, offset, length, checksum. */
  externalData: OnnxStringEntry[];
  /** 0 DEFAULT, 1 EXTERNAL. */
  dataLocation?: number;
  /** float_data, int32_data, int64_data, ... kept verbatim; read them with `tensorBytes`. */
  extra: RawField[];
  /** Whether `dims` was packed on the wire (proto2 writers leave it unpacked). */
  dimsPacked?: boolean;
}

export interface OnnxDim {
  value?: number;
  param?: string;
  denotation?: string;
  extra: RawField[];
}

export interface OnnxShape {
  dims: OnnxDim[];
  extra: RawField[];
}

export interface OnnxTensorType {
  elemType?: number;
  shape?: OnnxShape;
  extra: RawField[];
}

/** TypeProto: tensor types are decoded; sequence/map/optional types stay in `extra`. */
export interface OnnxType {
  tensor?: OnnxTensorType;
  denotation?: string;
  extra: RawField[];
}

export interface OnnxValueInfo {
  name?: string;
  type?: OnnxType;
  docString?: string;
  extra: RawField[];
}

export interface OnnxAttribute {
  name?: string;
  f?: number;
  /** int64 attributes are BigInt: axis -1, INT64_MAX sentinels and the like stay exact. */
  i?: bigint;
  s?: Uint8Array;
  t?: OnnxTensor;
  g?: OnnxGraph;
  floats: number[];
  ints: bigint[];
  strings: Uint8Array[];
  tensors: OnnxTensor[];
  graphs: OnnxGraph[];
  docString?: string;
  type?: number;
  refAttrName?: string;
  extra: RawField[];
  floatsPacked?: boolean;
  intsPacked?: boolean;
}

export interface OnnxNode {
  inputs: string[];
  outputs: string[];
  name?: string;
  opType?: string;
  attributes: OnnxAttribute[];
  docString?: string;
  domain?: string;
  extra: RawField[];
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  name?: string;
  initializers: OnnxTensor[];
  docString?: string;
  inputs: OnnxValueInfo[];
  outputs: OnnxValueInfo[];
  valueInfo: OnnxValueInfo[];
  extra: RawField[];
}

export interface OnnxModel {
  irVersion?: number;
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: number;
  docString?: string;
  graph?: OnnxGraph;
  opsetImports: OnnxOpset[];
  metadataProps: OnnxStringEntry[];
  extra: RawField[];
}
