/**
 * GGUF writing: the header (metadata and tensor table) and whole small files. The benchmark model
 * generator, the test-fixture generators and the tests that damage or patch GGUFs all write through
 * this, so there is one encoder to keep in step with the reader (gguf.ts).
 */

/** A metadata value with its GGUF type. `raw` is an already-encoded `type + value` (kept byte-exact when patching). */
export type GgufTyped =
  | { readonly type: "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "u64" | "i64" | "f32" | "f64"; readonly value: number }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly of: "u32" | "i32" | "f32" | "string"; readonly value: readonly (number | string)[] }
  | { readonly type: "raw"; readonly bytes: Uint8Array };

export interface GgufTensorSpec {
  readonly name: string;
  /** ggml type id (ggml-types.ts). */
  readonly type: number;
  /** ggml order: dims[0] fastest. */
  readonly dims: readonly number[];
  readonly byteLength: number;
}

const TYPE_ID = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;

/** Grows a byte buffer as values are appended (headers with 150k-token vocabularies are megabytes). */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly enc = new TextEncoder();

  /** Reserve n bytes and return their offset; may regrow `buf` and `view`, so read them after calling. */
  private room(n: number): number {
    if (this.length + n > this.buf.length) {
      const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  u32(n: number): void {
    const at = this.room(4);
    this.view.setUint32(at, n, true);
  }
  u64(n: number | bigint): void {
    const at = this.room(8);
    this.view.setBigUint64(at, BigInt(n), true);
  }
  bytes(b: Uint8Array): void {
    const at = this.room(b.length);
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = this.enc.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(type: Exclude<keyof typeof TYPE_ID, "array">, x: number | boolean | string): void {
    if (type === "string") return this.string(x as string);
    const size = { u8: 1, i8: 1, bool: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, u64: 8, i64: 8, f64: 8 }[type];
    const at = this.room(size);
    const v = this.view;
    const n = x as number;
    switch (type) {
      case "u8": return v.setUint8(at, n);
      case "i8": return v.setInt8(at, n);
      case "bool": return v.setUint8(at, x ? 1 : 0);
      case "u16": return v.setUint16(at, n, true);
      case "i16": return v.setInt16(at, n, true);
      case "u32": return v.setUint32(at, n, true);
      case "i32": return v.setInt32(at, n, true);
      case "f32": return v.setFloat32(at, n, true);
      case "u64": return v.setBigUint64(at, BigInt(n), true);
      case "i64": return v.setBigInt64(at, BigInt(n), true);
      case "f64": return v.setFloat64(at, n, true);
    }
  }
  pad(alignment: number): void {
    this.room((alignment - (this.length % alignment)) % alignment);
  }
  done(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

export interface GgufHeaderSpec {
  readonly metadata: readonly (readonly [string, GgufTyped])[];
  readonly tensors?: readonly GgufTensorSpec[];
  readonly version?: number;
  /** Data alignment (write `general.alignment` yourself when it is not 32). */
  readonly alignment?: number;
}

export interface EncodedGgufHeader {
  /** Header bytes, padded to the alignment: tensor data starts right after. */
  readonly header: Uint8Array;
  /** Offset of each tensor's data from the start of the data section. */
  readonly offsets: readonly number[];
  /** Bytes of the data section, padding included. */
  readonly dataSize: number;
}

/** Encode magic, version, metadata and tensor table, laying tensors out in order as llama.cpp requires. */
export function encodeGgufHeader(spec: GgufHeaderSpec): EncodedGgufHeader {
  const alignment = spec.alignment ?? 32;
  const tensors = spec.tensors ?? [];
  const w = new ByteWriter();
  w.u32(0x46554747);
  w.u32(spec.version ?? 3);
  w.u64(tensors.length);
  w.u64(spec.metadata.length);
  for (const [key, v] of spec.metadata) {
    w.string(key);
    if (v.type === "raw") {
      w.bytes(v.bytes);
    } else if (v.type === "array") {
      w.u32(TYPE_ID.array);
      w.u32(TYPE_ID[v.of]);
      w.u64(v.value.length);
      for (const x of v.value) w.scalar(v.of, x);
    } else {
      w.u32(TYPE_ID[v.type]);
      w.scalar(v.type, v.value);
    }
  }
  const pad = (n: number) => Math.ceil(n / alignment) * alignment;
  const offsets: number[] = [];
  let dataSize = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(t.type);
    w.u64(dataSize);
    offsets.push(dataSize);
    dataSize += pad(t.byteLength);
  }
  if (tensors.length > 0) w.pad(alignment);
  return { header: w.done(), offsets, dataSize };
}

/** A whole GGUF in memory: header, then each tensor's bytes at its aligned offset. */
export function encodeGguf(spec: Omit<GgufHeaderSpec, "tensors"> & { readonly tensors?: readonly (Omit<GgufTensorSpec, "byteLength"> & { readonly data: Uint8Array })[] }): Uint8Array {
  const tensors = (spec.tensors ?? []).map((t) => ({ ...t, byteLength: t.data.length }));
  const { header, offsets, dataSize } = encodeGgufHeader({ ...spec, tensors });
  const out = new Uint8Array(header.length + dataSize);
  out.set(header);
  tensors.forEach((t, i) => out.set(t.data, header.length + offsets[i]!));
  return out;
}
