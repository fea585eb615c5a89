/** Decode ONNX ModelProto bytes into {@link OnnxModel}, keeping uninterpreted fields verbatim. */
import type {
  OnnxAttribute,
  OnnxDim,
  OnnxGraph,
  OnnxModel,
  OnnxNode,
  OnnxOpset,
  OnnxShape,
  OnnxStringEntry,
  OnnxTensor,
  OnnxTensorType,
  OnnxType,
  OnnxValueInfo,
} from "./types.ts";
import { Reader, WIRE_FIXED32, WIRE_LEN, WIRE_VARINT, WireError } from "./wire.ts";
import { SteerkitError } from "../../core/errors.ts";

export class OnnxDecodeError extends SteerkitError {
  override name = "OnnxDecodeError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_MODEL_FILE", message, options);
  }
}

/**
 * Decode a ModelProto. Byte slices in the result (raw_data, verbatim fields) are views into
 * `bytes`: keep the buffer alive and unmodified while the model is in use.
 */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  try {
    const model = readModel(new Reader(bytes));
    if (model.graph === undefined) throw new OnnxDecodeError("no graph (ModelProto field 7) in the file");
    return model;
  } catch (e) {
    if (e instanceof WireError) throw new OnnxDecodeError(`not a valid ONNX protobuf: ${e.message}`);
    throw e;
  }
}

function readModel(r: Reader): OnnxModel {
  const m: OnnxModel = { opsetImports: [], metadataProps: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_VARINT) m.irVersion = r.int64();
    else if (field === 2 && wire === WIRE_LEN) m.producerName = r.string();
    else if (field === 3 && wire === WIRE_LEN) m.producerVersion = r.string();
    else if (field === 4 && wire === WIRE_LEN) m.domain = r.string();
    else if (field === 5 && wire === WIRE_VARINT) m.modelVersion = r.int64();
    else if (field === 6 && wire === WIRE_LEN) m.docString = r.string();
    else if (field === 7 && wire === WIRE_LEN) m.graph = readGraph(r.message());
    else if (field === 8 && wire === WIRE_LEN) m.opsetImports.push(readOpset(r.message()));
    else if (field === 14 && wire === WIRE_LEN) m.metadataProps.push(readEntry(r.message()));
    else m.extra.push(r.raw(field, wire, start));
  }
  return m;
}

function readOpset(r: Reader): OnnxOpset {
  const o: OnnxOpset = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) o.domain = r.string();
    else if (field === 2 && wire === WIRE_VARINT) o.version = r.int64();
    else o.extra.push(r.raw(field, wire, start));
  }
  return o;
}

function readEntry(r: Reader): OnnxStringEntry {
  const e: OnnxStringEntry = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) e.key = r.string();
    else if (field === 2 && wire === WIRE_LEN) e.value = r.string();
    else e.extra.push(r.raw(field, wire, start));
  }
  return e;
}

export function readGraph(r: Reader): OnnxGraph {
  const g: OnnxGraph = { nodes: [], initializers: [], inputs: [], outputs: [], valueInfo: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) g.nodes.push(readNode(r.message()));
    else if (field === 2 && wire === WIRE_LEN) g.name = r.string();
    else if (field === 5 && wire === WIRE_LEN) g.initializers.push(readTensor(r.message()));
    else if (field === 10 && wire === WIRE_LEN) g.docString = r.string();
    else if (field === 11 && wire === WIRE_LEN) g.inputs.push(readValueInfo(r.message()));
    else if (field === 12 && wire === WIRE_LEN) g.outputs.push(readValueInfo(r.message()));
    else if (field === 13 && wire === WIRE_LEN) g.valueInfo.push(readValueInfo(r.message()));
    else g.extra.push(r.raw(field, wire, start));
  }
  return g;
}

function readNode(r: Reader): OnnxNode {
  const n: OnnxNode = { inputs: [], outputs: [], attributes: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) n.inputs.push(r.string());
    else if (field === 2 && wire === WIRE_LEN) n.outputs.push(r.string());
    else if (field === 3 && wire === WIRE_LEN) n.name = r.string();
    else if (field === 4 && wire === WIRE_LEN) n.opType = r.string();
    else if (field === 5 && wire === WIRE_LEN) n.attributes.push(readAttribute(r.message()));
    else if (field === 6 && wire === WIRE_LEN) n.docString = r.string();
    else if (field === 7 && wire === WIRE_LEN) n.domain = r.string();
    else n.extra.push(r.raw(field, wire, start));
  }
  return n;
}

function readAttribute(r: Reader): OnnxAttribute {
  const a: OnnxAttribute = { floats: [], ints: [], strings: [], tensors: [], graphs: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) a.name = r.string();
    else if (field === 2 && wire === WIRE_FIXED32) a.f = r.float();
    else if (field === 3 && wire === WIRE_VARINT) a.i = r.varintBig();
    else if (field === 4 && wire === WIRE_LEN) a.s = r.bytes();
    else if (field === 5 && wire === WIRE_LEN) a.t = readTensor(r.message());
    else if (field === 6 && wire === WIRE_LEN) a.g = readGraph(r.message());
    else if (field === 7 && wire === WIRE_FIXED32) a.floats.push(r.float());
    else if (field === 7 && wire === WIRE_LEN) {
      const p = r.message();
      while (!p.done) a.floats.push(p.float());
      a.floatsPacked = true;
    } else if (field === 8 && wire === WIRE_VARINT) a.ints.push(r.varintBig());
    else if (field === 8 && wire === WIRE_LEN) {
      const p = r.message();
      while (!p.done) a.ints.push(p.varintBig());
      a.intsPacked = true;
    } else if (field === 9 && wire === WIRE_LEN) a.strings.push(r.bytes());
    else if (field === 10 && wire === WIRE_LEN) a.tensors.push(readTensor(r.message()));
    else if (field === 11 && wire === WIRE_LEN) a.graphs.push(readGraph(r.message()));
    else if (field === 13 && wire === WIRE_LEN) a.docString = r.string();
    else if (field === 20 && wire === WIRE_VARINT) a.type = r.varint();
    else if (field === 21 && wire === WIRE_LEN) a.refAttrName = r.string();
    else a.extra.push(r.raw(field, wire, start));
  }
  return a;
}

export function readTensor(r: Reader): OnnxTensor {
  const t: OnnxTensor = { dims: [], externalData: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_VARINT) t.dims.push(r.int64());
    else if (field === 1 && wire === WIRE_LEN) {
      const p = r.message();
      while (!p.done) t.dims.push(p.int64());
      t.dimsPacked = true;
    } else if (field === 2 && wire === WIRE_VARINT) t.dataType = r.varint();
    else if (field === 8 && wire === WIRE_LEN) t.name = r.string();
    else if (field === 9 && wire === WIRE_LEN) t.rawData = r.bytes();
    else if (field === 12 && wire === WIRE_LEN) t.docString = r.string();
    else if (field === 13 && wire === WIRE_LEN) t.externalData.push(readEntry(r.message()));
    else if (field === 14 && wire === WIRE_VARINT) t.dataLocation = r.varint();
    else t.extra.push(r.raw(field, wire, start));
  }
  return t;
}

export function readValueInfo(r: Reader): OnnxValueInfo {
  const v: OnnxValueInfo = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) v.name = r.string();
    else if (field === 2 && wire === WIRE_LEN) v.type = readType(r.message());
    else if (field === 3 && wire === WIRE_LEN) v.docString = r.string();
    else v.extra.push(r.raw(field, wire, start));
  }
  return v;
}

function readType(r: Reader): OnnxType {
  const t: OnnxType = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) t.tensor = readTensorType(r.message());
    else if (field === 6 && wire === WIRE_LEN) t.denotation = r.string();
    else t.extra.push(r.raw(field, wire, start));
  }
  return t;
}

function readTensorType(r: Reader): OnnxTensorType {
  const t: OnnxTensorType = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_VARINT) t.elemType = r.varint();
    else if (field === 2 && wire === WIRE_LEN) t.shape = readShape(r.message());
    else t.extra.push(r.raw(field, wire, start));
  }
  return t;
}

function readShape(r: Reader): OnnxShape {
  const s: OnnxShape = { dims: [], extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_LEN) s.dims.push(readDim(r.message()));
    else s.extra.push(r.raw(field, wire, start));
  }
  return s;
}

function readDim(r: Reader): OnnxDim {
  const d: OnnxDim = { extra: [] };
  while (!r.done) {
    const { field, wire, start } = r.tag();
    if (field === 1 && wire === WIRE_VARINT) d.value = r.int64();
    else if (field === 2 && wire === WIRE_LEN) d.param = r.string();
    else if (field === 3 && wire === WIRE_LEN) d.denotation = r.string();
    else d.extra.push(r.raw(field, wire, start));
  }
  return d;
}
