/**
 * safetensors reader: the header, then only the tensors asked for, as float32.
 *
 * The format (huggingface/safetensors, `docs/` and the Rust crate's `SafeTensors::read_metadata`):
 * 8 bytes little-endian u64 `N`, `N` bytes of UTF-8 JSON (`name -> { dtype, shape, data_offsets:
 * [begin, end] }` relative to the end of the header, plus an optional `__metadata__` map of strings),
 * then the data. SAEs (SAELens, sparsify, Gemma Scope 2) ship in it, in F32, F16 or BF16.
 *
 * Every size read from the file is checked before anything is allocated from it: the header length
 * against the file size and the crate's own 100 MB limit, each tensor's byte range against the data
 * section and its shape x dtype, and ranges against each other (no overlaps). Reads are positioned
 * (`readSync` at an offset), so opening a multi-gigabyte file costs one header read, and a tensor
 * costs its own bytes only. Errors are {@link SafetensorsError}s naming the file (as the caller
 * names it: a loader passes a name relative to its artifact, never a server path) and the tensor.
 *
 * Written here rather than taken from npm: the packages there either read the whole file into
 * memory or stop at the header, and none converts BF16.
 */
import { closeSync, fstatSync, readSync } from "node:fs";
import { openRegularFile } from "../files.ts";
import { SteerkitError } from "../../core/errors.ts";
import { bf16BitsToFloat32, halfBitsToFloat32 } from "../half.ts";

/** A damaged or unsupported safetensors file; names the file and, where one is at fault, the tensor. */
export class SafetensorsError extends SteerkitError {
  override name = "SafetensorsError";
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super("INVALID_MODEL_FILE", `${file}: ${reason}`);
  }
}

/** The dtypes safetensors defines, with their element size in bytes (booleans and 8-bit floats are 1). */
const DTYPE_SIZE: Record<string, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
};

/** The dtypes this reader converts to float32. */
export type FloatDtype = "F32" | "F16" | "BF16";
const READABLE: readonly string[] = ["F32", "F16", "BF16"];

/** The safetensors crate refuses headers above this size (`MAX_HEADER_SIZE`). */
export const MAX_HEADER_BYTES = 100_000_000;

export interface SafetensorsTensor {
  readonly name: string;
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Absolute byte offset of the data in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface SafetensorsFile {
  readonly path: string;
  /** How errors name the file. */
  readonly label: string;
  readonly fileSize: number;
  /** The `__metadata__` map (empty when absent). */
  readonly metadata: Readonly<Record<string, string>>;
  readonly tensors: ReadonlyMap<string, SafetensorsTensor>;
}

/**
 * Read and check a safetensors header. `label` is how errors name the file (default: the path).
 * @example
 * ```ts
 * const st = openSafetensors("sae_weights.safetensors");
 * const wEnc = readTensor(st, "W_enc", [dIn, dSae]);
 * ```
 */
export function openSafetensors(path: string, options: { label?: string } = {}): SafetensorsFile {
  const label = options.label ?? path;
  const fail = (reason: string): never => {
    throw new SafetensorsError(label, reason);
  };
  const { fd, size: fileSize } = openRegularFile(path, fail);
  try {
    if (fileSize < 8) fail(`not a safetensors file: ${fileSize} bytes, shorter than the 8-byte header length`);
    const head = readExactly(fd, 0, 8, label);
    const n = new DataView(head.buffer, head.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(fileSize - 8)) fail(`not a safetensors file: header length ${n} exceeds the file (${fileSize} bytes)`);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(`header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
    const headerLength = Number(n);
    if (headerLength < 2) fail(`not a safetensors file: header length ${headerLength}`);
    const bytes = readExactly(fd, 8, headerLength, label);
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
    } catch (e) {
      return fail(`not a safetensors file: the header is not UTF-8 JSON (${(e as Error).message})`);
    }
    if (typeof json !== "object" || json === null || Array.isArray(json)) return fail("not a safetensors file: the header is not a JSON object");
    const dataStart = 8 + headerLength;
    const dataSize = fileSize - dataStart;
    const tensors = new Map<string, SafetensorsTensor>();
    let metadata: Record<string, string> = {};
    for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
      if (name === "__metadata__") {
        metadata = checkMetadata(entry, fail);
        continue;
      }
      tensors.set(name, checkEntry(name, entry, dataStart, dataSize, fail));
    }
    // Ranges may leave gaps (we are lenient there) but must not overlap.
    const sorted = [...tensors.values()].sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < sorted.length; i++) {
      const prev = sorted[i - 1]!;
      const cur = sorted[i]!;
      if (cur.offset < prev.offset + prev.byteLength) fail(`tensors "${prev.name}" and "${cur.name}" overlap`);
    }
    return { path, label, fileSize, metadata, tensors };
  } finally {
    closeSync(fd);
  }
}

function checkMetadata(entry: unknown, fail: (r: string) => never): Record<string, string> {
  if (typeof entry !== "object" || entry === null || Array.isArray(entry)) return fail("__metadata__ must be an object of strings");
  for (const [k, v] of Object.entries(entry)) if (typeof v !== "string") fail(`__metadata__.${k} must be a string`);
  return entry as Record<string, string>;
}

function checkEntry(name: string, entry: unknown, dataStart: number, dataSize: number, fail: (r: string) => never): SafetensorsTensor {
  const at = `tensor "${name}"`;
  if (typeof entry !== "object" || entry === null) return fail(`${at}: expected { dtype, shape, data_offsets }`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !(dtype in DTYPE_SIZE)) return fail(`${at}: unknown dtype ${JSON.stringify(dtype)}`);
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return fail(`${at}: shape must be a list of non-negative integers, got ${JSON.stringify(shape)}`);
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    return fail(`${at}: data_offsets must be [begin, end], got ${JSON.stringify(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  if (end < begin) fail(`${at}: data_offsets [${begin}, ${end}] end before they begin`);
  if (end > dataSize) fail(`${at}: data_offsets [${begin}, ${end}] run past the end of the data (${dataSize} bytes; the file is truncated or damaged)`);
  let count = 1;
  for (const d of shape as number[]) count *= d;
  const expected = count * DTYPE_SIZE[dtype]!;
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    fail(`${at}: shape [${(shape as number[]).join(", ")}] of ${dtype} needs ${expected} bytes, data_offsets give ${end - begin}`);
  }
  return { name, dtype, shape: shape as number[], offset: dataStart + begin, byteLength: end - begin };
}

/**
 * Read one tensor as float32 (F32, F16 and BF16 are converted exactly). With `shape`, the tensor's
 * shape must be exactly that. Only this tensor's bytes are read.
 */
export function readTensor(file: SafetensorsFile, name: string, shape?: readonly number[]): Float32Array {
  const fail = (reason: string): never => {
    throw new SafetensorsError(file.label, reason);
  };
  const t = file.tensors.get(name);
  if (!t) return fail(`has no tensor "${name}" (it has ${[...file.tensors.keys()].map((k) => `"${k}"`).join(", ") || "none"})`);
  if (shape && (shape.length !== t.shape.length || shape.some((d, i) => d !== t.shape[i]))) {
    fail(`tensor "${name}" has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
  if (!READABLE.includes(t.dtype)) fail(`tensor "${name}" is ${t.dtype}; only ${READABLE.join(", ")} are supported`);
  const { fd } = openRegularFile(file.path, fail);
  try {
    // The file may have changed since its header was read: check again before reading.
    const size = fstatSync(fd).size;
    if (t.offset + t.byteLength > size) fail(`tensor "${name}" runs past the end of the file (truncated since it was opened)`);
    const bytes = readExactly(fd, t.offset, t.byteLength, file.label);
    return toFloat32(bytes, t.dtype as FloatDtype);
  } finally {
    closeSync(fd);
  }
}

/** Little-endian F32/F16/BF16 bytes -> a new Float32Array. */
export function toFloat32(bytes: Uint8Array, dtype: FloatDtype): Float32Array {
  // Copy into an aligned buffer first: a tensor's offset in the file need not be aligned.
  const aligned = new Uint8Array(bytes.byteLength);
  aligned.set(bytes);
  if (dtype === "F32") return new Float32Array(aligned.buffer, 0, bytes.byteLength / 4);
  const bits = new Uint16Array(aligned.buffer, 0, bytes.byteLength / 2);
  return dtype === "F16" ? halfBitsToFloat32(bits) : bf16BitsToFloat32(bits);
}

/** Read exactly `length` bytes at `position`, or fail naming the file. */
export function readExactly(fd: number, position: number, length: number, label: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw new SafetensorsError(label, `ends early: wanted ${length} bytes at offset ${position}, got ${done}`);
    done += n;
  }
  return out;
}
