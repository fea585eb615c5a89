/**
 * Test helper: rewrite a GGUF file's bytes, keeping every metadata entry it does not touch byte for
 * byte (so its exact types survive and llama.cpp still accepts the file), and re-laying out the
 * tensor table and data. Used to make variants of the embedded model: other weight types (F16,
 * BF16, Q8_0), other metadata, added or missing tensors for the error tests.
 */
import { float32ToHalfBits } from "../../src/formats/half.ts";
import { GGML_TYPES } from "../../src/formats/ggml-types.ts";
import { encodeGguf, type GgufTyped } from "../../src/formats/gguf-write.ts";

export type MetaEdit =
  | { type: "string"; value: string }
  | { type: "f32"; value: number }
  | { type: "u32"; value: number }
  /** A value's raw GGUF bytes (type id + value), for types the others do not spell (arrays). */
  | { type: "raw"; bytes: Uint8Array }
  | null;

export interface TensorEntry {
  name: string;
  type: number;
  /** ggml order. */
  dims: number[];
  data: Uint8Array;
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

interface Parsed {
  version: number;
  /** Each entry's key and its raw `type + value` bytes, kept exact. */
  kvs: { key: string; raw: Uint8Array }[];
  tensors: TensorEntry[];
  alignment: number;
}

function parse(src: Uint8Array): Parsed {
  const v = new DataView(src.buffer, src.byteOffset, src.byteLength);
  let p = 4;
  const version = v.getUint32(p, true);
  p += 4;
  const nT = Number(v.getBigUint64(p, true));
  const nKv = Number(v.getBigUint64(p + 8, true));
  p += 16;
  const str = () => {
    const n = Number(v.getBigUint64(p, true));
    const s = new TextDecoder().decode(src.subarray(p + 8, p + 8 + n));
    p += 8 + n;
    return s;
  };
  const skipValue = (type: number) => {
    if (type === 8) str();
    else if (type === 9) {
      const et = v.getUint32(p, true);
      const n = Number(v.getBigUint64(p + 4, true));
      p += 12;
      for (let i = 0; i < n; i++) skipValue(et);
    } else p += SCALAR_SIZE[type]!;
  };
  const kvs: Parsed["kvs"] = [];
  let alignment = 32;
  for (let i = 0; i < nKv; i++) {
    const key = str();
    const start = p;
    const type = v.getUint32(p, true);
    p += 4;
    if (key === "general.alignment") alignment = v.getUint32(p, true);
    skipValue(type);
    kvs.push({ key, raw: src.slice(start, p) });
  }
  const infos: { name: string; type: number; dims: number[]; offset: number }[] = [];
  for (let i = 0; i < nT; i++) {
    const name = str();
    const nd = v.getUint32(p, true);
    p += 4;
    const dims: number[] = [];
    for (let d = 0; d < nd; d++, p += 8) dims.push(Number(v.getBigUint64(p, true)));
    const type = v.getUint32(p, true);
    const offset = Number(v.getBigUint64(p + 4, true));
    p += 12;
    infos.push({ name, type, dims, offset });
  }
  const dataStart = Math.ceil(p / alignment) * alignment;
  const tensors = infos.map((t) => {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const { blockSize: bs, typeSize: ts } = GGML_TYPES.get(t.type)!;
    const start = dataStart + t.offset;
    return { name: t.name, type: t.type, dims: t.dims, data: src.slice(start, start + (n / bs) * ts) };
  });
  return { version, kvs, tensors, alignment };
}

export interface RewriteOptions {
  metadata?: Record<string, MetaEdit>;
  /** Map each tensor to its replacement, or null to drop it. */
  tensors?: (t: TensorEntry) => TensorEntry | null;
  /** Rename metadata keys (values keep their exact bytes), e.g. to move `llama.*` to another architecture. */
  renameKey?: (key: string) => string;
  /** Tensors to add after the existing ones. */
  append?: TensorEntry[];
}

export function rewriteGguf(srcBytes: Uint8Array, options: RewriteOptions): Uint8Array {
  const src = parse(srcBytes);
  const metadata: [string, GgufTyped][] = src.kvs
    .filter((kv) => !(options.metadata && kv.key in options.metadata))
    .map((kv) => [options.renameKey?.(kv.key) ?? kv.key, { type: "raw", bytes: kv.raw }]);
  for (const [key, edit] of Object.entries(options.metadata ?? {})) if (edit) metadata.push([key, edit]);
  const tensors = src.tensors.map((t) => (options.tensors ? options.tensors(t) : t)).filter((t): t is TensorEntry => t !== null);
  tensors.push(...(options.append ?? []));
  return encodeGguf({ version: src.version, alignment: src.alignment, metadata, tensors });
}

export function withMetadataString(src: Uint8Array, key: string, value: string): Uint8Array {
  return rewriteGguf(src, { metadata: { [key]: { type: "string", value } } });
}

function f32Of(t: TensorEntry): Float32Array {
  if (t.type !== 0) throw new Error(`${t.name} is not F32`);
  return new Float32Array(t.data.slice().buffer);
}

/** ggml's reference Q8_0 quantisation (`quantize_row_q8_0_ref`): d = amax/127, q = round(x/d). */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  const out = new Uint8Array((x.length / 32) * 34);
  const v = new DataView(out.buffer);
  const dBits = new Uint16Array(1);
  for (let b = 0; b < x.length / 32; b++) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[b * 32 + j]!));
    const d = amax / 127;
    const id = d ? 1 / d : 0;
    float32ToHalfBits(new Float32Array([d]), dBits);
    v.setUint16(b * 34, dBits[0]!, true);
    for (let j = 0; j < 32; j++) v.setInt8(b * 34 + 2 + j, Math.round(x[b * 32 + j]! * id));
  }
  return out;
}

/** The model with every 2-D weight stored as F16 (norms stay F32, as llama.cpp's converter keeps them). */
export function toF16(src: Uint8Array): Uint8Array {
  return rewriteGguf(src, {
    tensors: (t) => {
      if (t.dims.length < 2) return t;
      const bits = float32ToHalfBits(f32Of(t));
      return { ...t, type: 1, data: new Uint8Array(bits.buffer) };
    },
  });
}

/** The model with every 2-D weight stored as BF16 (round to nearest even on the top 16 bits). */
export function toBF16(src: Uint8Array): Uint8Array {
  return rewriteGguf(src, {
    tensors: (t) => {
      if (t.dims.length < 2) return t;
      const u = new Uint32Array(f32Of(t).buffer);
      const out = Uint16Array.from(u, (x) => (x + 0x7fff + ((x >>> 16) & 1)) >>> 16);
      return { ...t, type: 30, data: new Uint8Array(out.buffer) };
    },
  });
}

/** The model with every 2-D weight whose rows are whole 32-blocks stored as Q8_0 (others stay F32). */
export function toQ8_0(src: Uint8Array): Uint8Array {
  return rewriteGguf(src, {
    tensors: (t) => (t.dims.length < 2 || t.dims[0]! % 32 !== 0 ? t : { ...t, type: 8, data: quantizeQ8_0(f32Of(t)) }),
  });
}

/** The model under another llama-family architecture name: `llama.*` keys moved to `<arch>.*`. */
export function asArchitecture(src: Uint8Array, arch: string, options: Omit<RewriteOptions, "renameKey"> = {}): Uint8Array {
  return rewriteGguf(src, {
    ...options,
    renameKey: (k) => (k.startsWith("llama.") ? `${arch}.${k.slice("llama.".length)}` : k),
    metadata: { ...options.metadata, "general.architecture": { type: "string", value: arch } },
  });
}

/**
 * `src` with the tokenizer of `vocab`: every `tokenizer.*` key and `general.name` (which selects
 * llama.cpp's per-token attributes) taken from `vocab` byte for byte, the rest and the tensors from
 * `src`. The vocabularies must have the same size for the tensors to fit.
 */
export function withTokenizerOf(src: Uint8Array, vocab: Uint8Array): Uint8Array {
  const own = (key: string) => key.startsWith("tokenizer.") || key === "general.name";
  const base = parse(src);
  const metadata: [string, GgufTyped][] = [
    ...base.kvs.filter((kv) => !own(kv.key)).map((kv): [string, GgufTyped] => [kv.key, { type: "raw", bytes: kv.raw }]),
    ...parse(vocab).kvs.filter((kv) => own(kv.key)).map((kv): [string, GgufTyped] => [kv.key, { type: "raw", bytes: kv.raw }]),
  ];
  return encodeGguf({ version: base.version, alignment: base.alignment, metadata, tensors: base.tensors });
}
