/**
 * GGUF reader and validator.
 *
 * Every check llama.cpp's `gguf_init_from_file` makes is made here first, in TypeScript, because
 * llama.cpp answers a bad file by logging and, for some damage, aborting the whole process. A
 * Steerkit user gets a {@link GgufError} that names the file and the problem instead.
 *
 * The header is read with positioned reads in chunks, never the whole file: real GGUFs are
 * gigabytes, and the header (with a 150k-token vocabulary) is a few megabytes.
 *
 * No npm package fits: the GGUF readers on npm parse metadata only, skip the tensor-table checks,
 * or read the whole file into memory.
 */
import { closeSync, readSync } from "node:fs";
import { openRegularFile } from "./files.ts";
import { dequantize, GGML_TYPES, ggmlTypeName } from "./ggml-types.ts";
import { SteerkitError } from "../core/errors.ts";

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | GgufValue[];

export interface GgufTensorInfo {
  readonly name: string;
  /** ggml type id (see ggml-types.ts). */
  readonly type: number;
  /** ggml order: dims[0] is the fastest-varying (row length). */
  readonly dims: readonly number[];
  readonly elementCount: number;
  /** Absolute offset of the tensor's data in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface GgufFile {
  readonly path: string;
  readonly version: number;
  readonly fileSize: number;
  readonly alignment: number;
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: readonly GgufTensorInfo[];
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
  /**
   * The GGUF type id of each metadata value (0 u8 ... 12 f64; 9 array), and of each array's elements
   * under `elements`: llama.cpp refuses or misreads a key by its stored type, which the JS value loses.
   */
  readonly metadataTypes?: ReadonlyMap<string, { readonly type: number; readonly elements?: number }>;
  /**
   * Where each metadata value's encoded `type + value` lies in the file, [start, end): a rewriter
   * (abliterate) copies these bytes so every key it keeps stays byte-identical.
   */
  readonly metadataSpans?: ReadonlyMap<string, readonly [number, number]>;
}

/** GGUF metadata value type ids (gguf.h `enum gguf_type`). */
export const GGUF_TYPE = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7,
  STRING: 8, ARRAY: 9, UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

export class GgufError extends SteerkitError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super("INVALID_MODEL_FILE", `${file}: not a valid GGUF file: ${reason}`);
    this.name = "GgufError";
  }
}

const MAGIC = 0x46554747; // "GGUF" little-endian
const MAX_DIMS = 4; // GGML_MAX_DIMS
const MAX_NAME = 64; // GGML_MAX_NAME, including the terminating NUL
const DEFAULT_ALIGNMENT = 32;

const enum T {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
}
const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

/** Reads a file forward through a small window; fails with a position when the file ends early. */
class Cursor {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  private start = 0; // file offset of buf[0]
  private end = 0; // file offset one past the valid bytes
  pos = 0;
  private readonly decoder = new TextDecoder("utf-8", { fatal: false });

  constructor(
    private readonly fd: number,
    readonly size: number,
    private readonly fail: (reason: string) => never,
  ) {}

  get remaining(): number {
    return this.size - this.pos;
  }

  private ensure(n: number, what: string): number {
    if (this.pos + n > this.size) {
      this.fail(`file ends at byte ${this.size} while reading ${what} at byte ${this.pos} (needs ${n} bytes): truncated?`);
    }
    if (this.pos < this.start || this.pos + n > this.end) {
      if (n > this.buf.length) {
        this.buf = new Uint8Array(Math.max(n, this.buf.length * 2));
        this.view = new DataView(this.buf.buffer);
      }
      this.start = this.pos;
      this.end = this.pos + readSync(this.fd, this.buf, 0, Math.min(this.buf.length, this.size - this.pos), this.pos);
      if (this.end < this.pos + n) this.fail(`short read at byte ${this.pos}`);
    }
    const at = this.pos - this.start;
    this.pos += n;
    return at;
  }

  u32(what: string): number {
    return this.view.getUint32(this.ensure(4, what), true);
  }
  u64(what: string): bigint {
    return this.view.getBigUint64(this.ensure(8, what), true);
  }
  /** A u64 that must fit a JS number (counts, lengths, offsets). */
  count(what: string): number {
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) this.fail(`${what} is ${v}, larger than any file`);
    return Number(v);
  }
  string(what: string): string {
    const len = this.count(`${what} length`);
    if (len > this.remaining) this.fail(`${what} claims ${len} bytes but only ${this.remaining} remain`);
    const at = this.ensure(len, what);
    return this.decoder.decode(this.buf.subarray(at, at + len));
  }
  scalar(type: number, what: string): GgufScalar {
    const at = this.ensure(SCALAR_SIZE[type]!, what);
    const v = this.view;
    switch (type) {
      case T.U8: return v.getUint8(at);
      case T.I8: return v.getInt8(at);
      case T.U16: return v.getUint16(at, true);
      case T.I16: return v.getInt16(at, true);
      case T.U32: return v.getUint32(at, true);
      case T.I32: return v.getInt32(at, true);
      case T.F32: return v.getFloat32(at, true);
      case T.BOOL: {
        const b = v.getUint8(at);
        if (b > 1) this.fail(`${what} is a bool with value ${b}`);
        return b === 1;
      }
      case T.U64: return v.getBigUint64(at, true);
      case T.I64: return v.getBigInt64(at, true);
      case T.F64: return v.getFloat64(at, true);
    }
    return this.fail(`${what} has unknown type ${type}`);
  }
}

/** Read and validate a GGUF file's header and tensor table (not the tensor data). */
export function readGgufHeader(path: string): GgufFile {
  const fail = (reason: string): never => {
    throw new GgufError(path, reason);
  };
  const { fd, size } = openRegularFile(path, fail, "a .gguf file");
  try {
    return parse(path, new Cursor(fd, size, fail), fail);
  } finally {
    closeSync(fd);
  }
}

function parse(path: string, c: Cursor, fail: (reason: string) => never): GgufFile {
  if (c.size < 24) fail(`file is ${c.size} bytes, smaller than a GGUF header (24 bytes)`);
  const magic = c.u32("magic");
  if (magic !== MAGIC) {
    if (magic === 0x47475546) fail("magic is byte-swapped: a big-endian GGUF, which this machine cannot use");
    const text = String.fromCharCode(magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, (magic >>> 24) & 0xff);
    fail(`magic is ${JSON.stringify(text)} (0x${magic.toString(16).padStart(8, "0")}), expected "GGUF"`);
  }
  const version = c.u32("version");
  if (version === 1) fail("GGUF version 1 is no longer supported (expected 2 or 3)");
  if (version === 0 || version > 3) fail(`GGUF version ${version} is not supported (expected 2 or 3)`);

  const nTensors = c.count("tensor count");
  const nKv = c.count("metadata count");
  // Each tensor entry is at least 8 (name len) + 4 (n_dims) + 4 (type) + 8 (offset) bytes; each kv at least 8 + 4.
  if (nTensors * 24 > c.remaining) fail(`header claims ${nTensors} tensors, more than the file can hold`);
  if (nKv * 12 > c.remaining) fail(`header claims ${nKv} metadata entries, more than the file can hold`);

  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, { type: number; elements?: number }>();
  const metadataSpans = new Map<string, readonly [number, number]>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`);
    if (key.length === 0) fail(`metadata key #${i} is empty`);
    if (metadata.has(key)) fail(`metadata key "${key}" appears twice`);
    const typeAt = c.pos;
    const type = c.u32(`type of "${key}"`);
    const at = c.pos;
    metadata.set(key, readValue(c, type, `metadata "${key}"`, fail));
    metadataSpans.set(key, [typeAt, c.pos]);
    // An array's element type is the u32 right after its type (read again from the window, no I/O).
    if (type === T.ARRAY) {
      const end = c.pos;
      c.pos = at;
      metadataTypes.set(key, { type, elements: c.u32("array element type") });
      c.pos = end;
    } else metadataTypes.set(key, { type });
  }

  let alignment = DEFAULT_ALIGNMENT;
  const align = metadata.get("general.alignment");
  if (align !== undefined) {
    if (typeof align !== "number" || !Number.isInteger(align)) fail(`general.alignment must be a u32, got ${describe(align)}`);
    if (align <= 0 || (align & (align - 1)) !== 0) fail(`general.alignment ${align} is not a power of 2`);
    alignment = align;
  }

  const raw: { name: string; type: number; dims: number[]; elementCount: number; rel: number; byteLength: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor #${i} name`);
    if (new TextEncoder().encode(name).length >= MAX_NAME) fail(`tensor name "${name}" is longer than ${MAX_NAME - 1} bytes`);
    if (names.has(name)) fail(`tensor "${name}" appears twice`);
    names.add(name);
    const nDims = c.u32(`tensor "${name}" dimension count`);
    if (nDims < 1 || nDims > MAX_DIMS) fail(`tensor "${name}" has ${nDims} dimensions, expected 1..${MAX_DIMS}`);
    const dims: number[] = [];
    let elementCount = 1;
    for (let d = 0; d < nDims; d++) {
      const n = c.count(`tensor "${name}" dimension ${d}`);
      dims.push(n);
      elementCount *= n;
    }
    if (!Number.isSafeInteger(elementCount)) fail(`tensor "${name}" has too many elements (${dims.join("x")})`);
    const type = c.u32(`tensor "${name}" type`);
    const info = GGML_TYPES.get(type);
    if (!info) fail(`tensor "${name}" has unknown or removed ggml type ${type}`);
    if (dims[0]! % info!.blockSize !== 0) {
      fail(`tensor "${name}" of type ${info!.name} has rows of ${dims[0]} elements, not a multiple of its block size ${info!.blockSize}`);
    }
    const byteLength = (elementCount / info!.blockSize) * info!.typeSize;
    const rel = c.count(`tensor "${name}" offset`);
    raw.push({ name, type, dims, elementCount, rel, byteLength });
  }

  const dataOffset = nTensors > 0 ? pad(c.pos, alignment) : c.pos;
  let expected = 0;
  const tensors: GgufTensorInfo[] = [];
  for (const t of raw) {
    // llama.cpp requires tensors to be laid out in table order, each padded to the alignment.
    if (t.rel !== expected) fail(`tensor "${t.name}" starts at data offset ${t.rel}, expected ${expected}`);
    const end = dataOffset + t.rel + t.byteLength;
    if (end > c.size) {
      fail(`tensor "${t.name}" (${ggmlTypeName(t.type)} ${t.dims.join("x")}) ends at byte ${end}, past the end of the file (${c.size} bytes): truncated?`);
    }
    expected += pad(t.byteLength, alignment);
    tensors.push({ name: t.name, type: t.type, dims: t.dims, elementCount: t.elementCount, offset: dataOffset + t.rel, byteLength: t.byteLength });
  }
  return { path, version, fileSize: c.size, alignment, metadata, tensors, dataOffset, metadataTypes, metadataSpans };
}

function readValue(c: Cursor, type: number, what: string, fail: (reason: string) => never): GgufValue {
  if (type === T.STRING) return c.string(what);
  if (type === T.ARRAY) {
    const elemType = c.u32(`${what} element type`);
    const n = c.count(`${what} length`);
    if (elemType === T.ARRAY) fail(`${what} is an array of arrays, which GGUF does not allow`);
    const minSize = elemType === T.STRING ? 8 : SCALAR_SIZE[elemType];
    if (minSize === undefined) fail(`${what} has elements of unknown type ${elemType}`);
    if (n * minSize! > c.remaining) fail(`${what} claims ${n} elements, more than the file can hold`);
    const out: GgufValue[] = new Array(n);
    for (let i = 0; i < n; i++) out[i] = readValue(c, elemType, what, fail);
    return out;
  }
  if (SCALAR_SIZE[type] === undefined) fail(`${what} has unknown type ${type}`);
  return c.scalar(type, what);
}

function pad(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

function describe(v: GgufValue | undefined): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return `${typeof v} ${JSON.stringify(typeof v === "bigint" ? v.toString() : v)}`;
}

// ---- typed metadata access -------------------------------------------------------------------

function missing(file: GgufFile, key: string, expected: string, got: GgufValue | undefined): GgufError {
  return new GgufError(file.path, `metadata "${key}" must be ${expected}, got ${describe(got)}`);
}

export function metaString(file: GgufFile, key: string): string;
export function metaString(file: GgufFile, key: string, fallback: string | null): string | null;
export function metaString(file: GgufFile, key: string, fallback?: string | null): string | null {
  const v = file.metadata.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v !== "string") throw missing(file, key, "a string", v);
  return v;
}

export function metaNumber(file: GgufFile, key: string): number;
export function metaNumber(file: GgufFile, key: string, fallback: number | null): number | null;
export function metaNumber(file: GgufFile, key: string, fallback?: number | null): number | null {
  const v = file.metadata.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v !== "number") throw missing(file, key, "a number", v);
  return v;
}

export function metaArray(file: GgufFile, key: string): GgufValue[];
export function metaArray(file: GgufFile, key: string, fallback: null): GgufValue[] | null;
export function metaArray(file: GgufFile, key: string, fallback?: null): GgufValue[] | null {
  const v = file.metadata.get(key);
  if (v === undefined && fallback !== undefined) return fallback;
  if (!Array.isArray(v)) throw missing(file, key, "an array", v);
  return v;
}

/** The architecture prefix of the model's keys (`general.architecture`, e.g. "llama"). */
export function architecture(file: GgufFile): string {
  return metaString(file, "general.architecture");
}

export function findTensor(file: GgufFile, name: string): GgufTensorInfo {
  const t = file.tensors.find((x) => x.name === name);
  if (!t) throw new GgufError(file.path, `tensor "${name}" is missing`);
  return t;
}

/**
 * The encoded `type + value` bytes of one metadata entry, as the file holds them: rewriters copy
 * these so every key they keep stays byte-identical (the JS value loses the stored type).
 * @example
 * ```ts
 * const bytes = readRawMetadata(readGgufHeader("model.gguf"), "tokenizer.ggml.tokens");
 * encodeGgufHeader({ metadata: [["tokenizer.ggml.tokens", { type: "raw", bytes }]] });
 * ```
 */
export function readRawMetadata(file: GgufFile, key: string): Uint8Array {
  const span = file.metadataSpans?.get(key);
  if (!span) throw new GgufError(file.path, `no byte span for metadata "${key}"`);
  const bytes = new Uint8Array(span[1] - span[0]);
  const { fd } = openRegularFile(file.path, (reason) => {
    throw new GgufError(file.path, reason);
  });
  try {
    const n = readSync(fd, bytes, 0, bytes.length, span[0]);
    if (n !== bytes.length) throw new GgufError(file.path, `metadata "${key}" read ${n} of ${bytes.length} bytes: file changed or truncated`);
  } finally {
    closeSync(fd);
  }
  return bytes;
}

/** The raw bytes of one tensor (one positioned read). */
export function readTensorBytes(file: GgufFile, tensor: GgufTensorInfo): Uint8Array {
  const out = new Uint8Array(tensor.byteLength);
  const { fd } = openRegularFile(file.path, (reason) => {
    throw new GgufError(file.path, reason);
  });
  try {
    const n = readSync(fd, out, 0, out.length, tensor.offset);
    if (n !== out.length) throw new GgufError(file.path, `tensor "${tensor.name}" read ${n} of ${out.length} bytes: file changed or truncated`);
  } finally {
    closeSync(fd);
  }
  return out;
}

/** One tensor as float32 (dequantised from F16, BF16 or Q8_0), in ggml order (dims[0] fastest). */
export function readTensorF32(file: GgufFile, tensor: GgufTensorInfo): Float32Array {
  try {
    return dequantize(tensor.type, readTensorBytes(file, tensor), tensor.elementCount);
  } catch (e) {
    if (e instanceof GgufError) throw e;
    throw new GgufError(file.path, `tensor "${tensor.name}": ${(e as Error).message}`);
  }
}
