/**
 * Encode {@link OnnxModel} to ModelProto bytes. Fields go out in field-number order (what the
 * protobuf C++ serializer, and so `onnx.save`, writes), with verbatim `extra` fields merged in by
 * number: a decoded real export re-encodes to the same bytes.
 */
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
  RawField,
} from "./types.ts";
import { WIRE_FIXED32, Writer } from "./wire.ts";

export function encodeModel(model: OnnxModel): Uint8Array {
  const w = new Writer();
  writeModel(w, model);
  return w.finish();
}

/** Writes verbatim fields before the first known field with a higher number. */
class Merge {
  private i = 0;
  private readonly sorted: RawField[];
  constructor(
    private readonly w: Writer,
    extra: RawField[],
  ) {
    this.sorted = isSorted(extra) ? extra : [...extra].sort((a, b) => a.field - b.field);
  }
  upTo(field: number): Writer {
    while (this.i < this.sorted.length && this.sorted[this.i]!.field < field) this.w.append(this.sorted[this.i++]!.bytes);
    return this.w;
  }
  end(): void {
    this.upTo(Number.MAX_SAFE_INTEGER);
  }
}

function isSorted(extra: RawField[]): boolean {
  for (let i = 1; i < extra.length; i++) if (extra[i]!.field < extra[i - 1]!.field) return false;
  return true;
}

function writeModel(w: Writer, m: OnnxModel): void {
  const x = new Merge(w, m.extra);
  if (m.irVersion !== undefined) x.upTo(1).varintField(1, m.irVersion);
  if (m.producerName !== undefined) x.upTo(2).stringField(2, m.producerName);
  if (m.producerVersion !== undefined) x.upTo(3).stringField(3, m.producerVersion);
  if (m.domain !== undefined) x.upTo(4).stringField(4, m.domain);
  if (m.modelVersion !== undefined) x.upTo(5).varintField(5, m.modelVersion);
  if (m.docString !== undefined) x.upTo(6).stringField(6, m.docString);
  if (m.graph !== undefined) x.upTo(7).messageField(7, (c) => writeGraph(c, m.graph!));
  x.upTo(8);
  for (const o of m.opsetImports) w.messageField(8, (c) => writeOpset(c, o));
  x.upTo(14);
  for (const e of m.metadataProps) w.messageField(14, (c) => writeEntry(c, e));
  x.end();
}

function writeOpset(w: Writer, o: OnnxOpset): void {
  const x = new Merge(w, o.extra);
  if (o.domain !== undefined) x.upTo(1).stringField(1, o.domain);
  if (o.version !== undefined) x.upTo(2).varintField(2, o.version);
  x.end();
}

function writeEntry(w: Writer, e: OnnxStringEntry): void {
  const x = new Merge(w, e.extra);
  if (e.key !== undefined) x.upTo(1).stringField(1, e.key);
  if (e.value !== undefined) x.upTo(2).stringField(2, e.value);
  x.end();
}

export function writeGraph(w: Writer, g: OnnxGraph): void {
  const x = new Merge(w, g.extra);
  x.upTo(1);
  for (const n of g.nodes) w.messageField(1, (c) => writeNode(c, n));
  if (g.name !== undefined) x.upTo(2).stringField(2, g.name);
  x.upTo(5);
  for (const t of g.initializers) w.messageField(5, (c) => writeTensor(c, t));
  if (g.docString !== undefined) x.upTo(10).stringField(10, g.docString);
  x.upTo(11);
  for (const v of g.inputs) w.messageField(11, (c) => writeValueInfo(c, v));
  x.upTo(12);
  for (const v of g.outputs) w.messageField(12, (c) => writeValueInfo(c, v));
  x.upTo(13);
  for (const v of g.valueInfo) w.messageField(13, (c) => writeValueInfo(c, v));
  x.end();
}

function writeNode(w: Writer, n: OnnxNode): void {
  const x = new Merge(w, n.extra);
  x.upTo(1);
  for (const s of n.inputs) w.stringField(1, s);
  x.upTo(2);
  for (const s of n.outputs) w.stringField(2, s);
  if (n.name !== undefined) x.upTo(3).stringField(3, n.name);
  if (n.opType !== undefined) x.upTo(4).stringField(4, n.opType);
  x.upTo(5);
  for (const a of n.attributes) w.messageField(5, (c) => writeAttribute(c, a));
  if (n.docString !== undefined) x.upTo(6).stringField(6, n.docString);
  if (n.domain !== undefined) x.upTo(7).stringField(7, n.domain);
  x.end();
}

function writeAttribute(w: Writer, a: OnnxAttribute): void {
  const x = new Merge(w, a.extra);
  if (a.name !== undefined) x.upTo(1).stringField(1, a.name);
  if (a.f !== undefined) {
    x.upTo(2).tag(2, WIRE_FIXED32);
    w.float(a.f);
  }
  if (a.i !== undefined) x.upTo(3).varintField(3, a.i);
  if (a.s !== undefined) x.upTo(4).bytesField(4, a.s);
  if (a.t !== undefined) x.upTo(5).messageField(5, (c) => writeTensor(c, a.t!));
  if (a.g !== undefined) x.upTo(6).messageField(6, (c) => writeGraph(c, a.g!));
  x.upTo(7);
  if (a.floats.length > 0) {
    if (a.floatsPacked) {
      w.messageField(7, (c) => {
        for (const f of a.floats) c.float(f);
      });
    } else {
      for (const f of a.floats) {
        w.tag(7, WIRE_FIXED32);
        w.float(f);
      }
    }
  }
  x.upTo(8);
  if (a.ints.length > 0) {
    if (a.intsPacked) {
      w.messageField(8, (c) => {
        for (const i of a.ints) c.varintBig(i);
      });
    } else {
      for (const i of a.ints) w.varintField(8, i);
    }
  }
  x.upTo(9);
  for (const s of a.strings) w.bytesField(9, s);
  x.upTo(10);
  for (const t of a.tensors) w.messageField(10, (c) => writeTensor(c, t));
  x.upTo(11);
  for (const g of a.graphs) w.messageField(11, (c) => writeGraph(c, g));
  if (a.docString !== undefined) x.upTo(13).stringField(13, a.docString);
  if (a.type !== undefined) x.upTo(20).varintField(20, a.type);
  if (a.refAttrName !== undefined) x.upTo(21).stringField(21, a.refAttrName);
  x.end();
}

export function writeTensor(w: Writer, t: OnnxTensor): void {
  const x = new Merge(w, t.extra);
  x.upTo(1);
  if (t.dims.length > 0) {
    if (t.dimsPacked) {
      w.messageField(1, (c) => {
        for (const d of t.dims) c.varint(d);
      });
    } else {
      for (const d of t.dims) w.varintField(1, d);
    }
  }
  if (t.dataType !== undefined) x.upTo(2).varintField(2, t.dataType);
  if (t.name !== undefined) x.upTo(8).stringField(8, t.name);
  if (t.rawData !== undefined) x.upTo(9).bytesField(9, t.rawData);
  if (t.docString !== undefined) x.upTo(12).stringField(12, t.docString);
  x.upTo(13);
  for (const e of t.externalData) w.messageField(13, (c) => writeEntry(c, e));
  if (t.dataLocation !== undefined) x.upTo(14).varintField(14, t.dataLocation);
  x.end();
}

function writeValueInfo(w: Writer, v: OnnxValueInfo): void {
  const x = new Merge(w, v.extra);
  if (v.name !== undefined) x.upTo(1).stringField(1, v.name);
  if (v.type !== undefined) x.upTo(2).messageField(2, (c) => writeType(c, v.type!));
  if (v.docString !== undefined) x.upTo(3).stringField(3, v.docString);
  x.end();
}

function writeType(w: Writer, t: OnnxType): void {
  const x = new Merge(w, t.extra);
  if (t.tensor !== undefined) x.upTo(1).messageField(1, (c) => writeTensorType(c, t.tensor!));
  if (t.denotation !== undefined) x.upTo(6).stringField(6, t.denotation);
  x.end();
}

function writeTensorType(w: Writer, t: OnnxTensorType): void {
  const x = new Merge(w, t.extra);
  if (t.elemType !== undefined) x.upTo(1).varintField(1, t.elemType);
  if (t.shape !== undefined) x.upTo(2).messageField(2, (c) => writeShape(c, t.shape!));
  x.end();
}

function writeShape(w: Writer, s: OnnxShape): void {
  const x = new Merge(w, s.extra);
  x.upTo(1);
  for (const d of s.dims) w.messageField(1, (c) => writeDim(c, d));
  x.end();
}

function writeDim(w: Writer, d: OnnxDim): void {
  const x = new Merge(w, d.extra);
  if (d.value !== undefined) x.upTo(1).varintField(1, d.value);
  if (d.param !== undefined) x.upTo(2).stringField(2, d.param);
  if (d.denotation !== undefined) x.upTo(3).stringField(3, d.denotation);
  x.end();
}
