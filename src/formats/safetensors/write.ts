/**
 * A safetensors writer that lays files out byte for byte as Hugging Face's reference writer
 * (`safetensors/src/tensor.rs`, `prepare` + `serialize`, used by the Python `save_file` too):
 *
 *   8 bytes   u64 little-endian N = header length (after padding)
 *   N bytes   compact JSON `{"__metadata__":{...},"<name>":{"dtype","shape","data_offsets":[begin,end]},...}`
 *             padded with spaces to a multiple of 8, so every tensor starts 8-byte aligned
 *   rest      the tensors' bytes, back to back, in header order
 *
 * Order: tensors sorted by dtype, larger dtype ranks first (the Rust `Dtype` enum order, so wider
 * types come first and alignment holds), then by name; `__metadata__` (string to string) comes
 * first and only when given. Offsets are relative to the end of the header.
 *
 * Only the dtypes Steerkit writes are supported; the data must already be in that dtype's
 * little-endian encoding (Float32Array for F32; 16-bit patterns in a Uint16Array for F16/BF16).
 */
import { writeFileSync } from "node:fs";

export type SafetensorsDtype = "F16" | "BF16" | "I32" | "F32" | "F64" | "I64";

/** Ordinal in the Rust `Dtype` enum (BOOL = 0 ... U64 = 14; "increasing alignment order") and element size in bytes. */
const DTYPES: Record<SafetensorsDtype, { rank: number; size: number }> = {
  F16: { rank: 7, size: 2 },
  BF16: { rank: 8, size: 2 },
  I32: { rank: 9, size: 4 },
  F32: { rank: 11, size: 4 },
  F64: { rank: 12, size: 8 },
  I64: { rank: 13, size: 8 },
};

export interface TensorToWrite {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** The tensor's bytes in row-major order (a typed array of the dtype's encoding). */
  readonly data: ArrayBufferView;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Serialize tensors (and optional string metadata) to safetensors bytes. */
export function serializeSafetensors(tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): Uint8Array {
  if (!littleEndian) throw new Error("safetensors: writing from a big-endian host is not supported");
  const names = Object.keys(tensors);
  for (const name of names) {
    if (name === "__metadata__") throw new RangeError('safetensors: "__metadata__" is reserved and cannot name a tensor');
    const t = tensors[name]!;
    const info = DTYPES[t.dtype];
    if (!info) throw new RangeError(`safetensors: tensor "${name}" has unsupported dtype ${String(t.dtype)}`);
    if (!t.shape.every((d) => Number.isInteger(d) && d >= 0)) throw new RangeError(`safetensors: tensor "${name}" has a bad shape [${t.shape.join(", ")}]`);
    const want = t.shape.reduce((a, b) => a * b, 1) * info.size;
    if (t.data.byteLength !== want) throw new RangeError(`safetensors: tensor "${name}" [${t.shape.join(", ")}] ${t.dtype} needs ${want} bytes, got ${t.data.byteLength}`);
  }
  names.sort((a, b) => DTYPES[tensors[b]!.dtype].rank - DTYPES[tensors[a]!.dtype].rank || (a < b ? -1 : a > b ? 1 : 0));

  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    const meta: Record<string, string> = {};
    for (const key of Object.keys(metadata).sort()) {
      const value = metadata[key];
      if (typeof value !== "string") throw new TypeError(`safetensors: metadata "${key}" must be a string`);
      meta[key] = value;
    }
    header.__metadata__ = meta;
  }
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    header[name] = { dtype: t.dtype, shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const padded = json.length + ((8 - (json.length % 8)) % 8);
  const out = new Uint8Array(8 + padded + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(padded), true);
  out.set(json, 8);
  out.fill(0x20, 8 + json.length, 8 + padded);
  let at = 8 + padded;
  for (const name of names) {
    const d = tensors[name]!.data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

/** {@link serializeSafetensors} to a file. */
export function writeSafetensors(path: string, tensors: Readonly<Record<string, TensorToWrite>>, metadata?: Readonly<Record<string, string>>): void {
  writeFileSync(path, serializeSafetensors(tensors, metadata));
}
