/**
 * numpy `.npz` reader: the zip's central directory, then only the arrays asked for, as float32.
 *
 * Gemma Scope ships its SAEs as `params.npz` (`np.savez`: a zip of stored `.npy` members; `np.savez_compressed`
 * deflates them). The zip is read from its central directory (APPNOTE.TXT 4.3.12-4.3.16), never from the
 * local headers' sizes: numpy writes members with `force_zip64=True`, so local headers carry 0xFFFFFFFF and
 * the true sizes sit in the central directory (or its ZIP64 extra field). Members may be stored or deflated
 * (`inflateRawSync` from `node:zlib`, bounded by the declared size); each member's CRC-32 is checked.
 *
 * `.npy` (numpy `lib/format.py`, versions 1.0, 2.0, 3.0): magic `\x93NUMPY`, a header length (u16 in v1,
 * u32 in v2/v3), then a Python dict literal `{'descr': '<f4', 'fortran_order': False, 'shape': (a, b), }`.
 * Only little-endian `<f4` and `<f2` in C order are accepted: Fortran order, big-endian and object
 * arrays (pickles, `|O`) are refused, as is anything whose byte count does not match its shape.
 *
 * Every size read from the file is checked against the file size before anything is allocated from it.
 * Errors are {@link NpzError}s (INVALID_MODEL_FILE) naming the file as the caller labels it, and the array.
 */
import { closeSync, fstatSync, readSync } from "node:fs";
import { openRegularFile } from "./files.ts";
import { inflateRawSync } from "node:zlib";
import { SteerkitError } from "../core/errors.ts";
import { halfBitsToFloat32 } from "./half.ts";

export class NpzError extends SteerkitError {
  override name = "NpzError";
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super("INVALID_MODEL_FILE", `${file}: ${reason}`);
  }
}

interface Member {
  readonly name: string;
  readonly method: number;
  readonly crc: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly localHeaderOffset: number;
}

export interface NpzFile {
  readonly path: string;
  readonly label: string;
  readonly fileSize: number;
  /** Array names (member names without `.npy`), in the archive's order. */
  readonly names: readonly string[];
  readonly members: ReadonlyMap<string, Member>;
}

export interface NpyArray {
  readonly descr: "<f4" | "<f2";
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

const EOCD = 0x06054b50;
const ZIP64_LOCATOR = 0x07064b50;
const ZIP64_EOCD = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;
/** A deflate stream cannot expand by more than ~1032x; a larger declared size is a lie. */
const MAX_DEFLATE_RATIO = 1032;

/** Read an npz's central directory. `label` is how errors name the file (default: the path). */
export function openNpz(path: string, options: { label?: string } = {}): NpzFile {
  const label = options.label ?? path;
  const fail = (reason: string): never => {
    throw new NpzError(label, reason);
  };
  const { fd, size: fileSize } = openRegularFile(path, fail);
  try {
    if (fileSize < 22) fail(`not an npz (zip) file: ${fileSize} bytes, too short for a zip directory`);
    // The end record is in the last 22 + 65535 (comment) bytes; find its signature from the end.
    const tailLength = Math.min(fileSize, 22 + 65535);
    const tail = readAt(fd, fileSize - tailLength, tailLength, label);
    const tv = view(tail);
    let eocd = -1;
    for (let i = tailLength - 22; i >= 0; i--) {
      if (tv.getUint32(i, true) === EOCD && i + 22 + tv.getUint16(i + 20, true) <= tailLength) {
        eocd = i;
        break;
      }
    }
    if (eocd < 0) fail("not an npz (zip) file: no end-of-central-directory record (truncated or not a zip)");
    let count = tv.getUint16(eocd + 10, true);
    let dirSize = tv.getUint32(eocd + 12, true);
    let dirOffset = tv.getUint32(eocd + 16, true);
    const eocdAbs = fileSize - tailLength + eocd;
    if (count === 0xffff || dirSize === 0xffffffff || dirOffset === 0xffffffff) {
      // ZIP64: the locator sits just before the end record and points at the ZIP64 end record.
      if (eocdAbs < 20) fail("damaged zip: ZIP64 values without a ZIP64 locator");
      const loc = view(readAt(fd, eocdAbs - 20, 20, label));
      if (loc.getUint32(0, true) !== ZIP64_LOCATOR) fail("damaged zip: ZIP64 values without a ZIP64 locator");
      const recOffset = safeNumber(loc.getBigUint64(8, true), fail);
      if (recOffset + 56 > fileSize) fail("damaged zip: ZIP64 end record outside the file");
      const rec = view(readAt(fd, recOffset, 56, label));
      if (rec.getUint32(0, true) !== ZIP64_EOCD) fail("damaged zip: no ZIP64 end record where the locator points");
      count = safeNumber(rec.getBigUint64(32, true), fail);
      dirSize = safeNumber(rec.getBigUint64(40, true), fail);
      dirOffset = safeNumber(rec.getBigUint64(48, true), fail);
    }
    if (dirOffset + dirSize > fileSize) fail(`damaged zip: the central directory (${dirSize} bytes at ${dirOffset}) runs past the end of the file (${fileSize} bytes; truncated?)`);
    if (count * 46 > dirSize) fail(`damaged zip: ${count} entries cannot fit a ${dirSize}-byte central directory`);
    const dir = readAt(fd, dirOffset, dirSize, label);
    const dv = view(dir);
    const members = new Map<string, Member>();
    const names: string[] = [];
    let p = 0;
    for (let e = 0; e < count; e++) {
      if (p + 46 > dirSize || dv.getUint32(p, true) !== CENTRAL) fail(`damaged zip: central directory entry ${e} is malformed`);
      const flags = dv.getUint16(p + 8, true);
      const method = dv.getUint16(p + 10, true);
      const crc = dv.getUint32(p + 16, true);
      let compressedSize = dv.getUint32(p + 20, true);
      let size = dv.getUint32(p + 24, true);
      const nameLength = dv.getUint16(p + 28, true);
      const extraLength = dv.getUint16(p + 30, true);
      const commentLength = dv.getUint16(p + 32, true);
      let localHeaderOffset = dv.getUint32(p + 42, true);
      const end = p + 46 + nameLength + extraLength + commentLength;
      if (end > dirSize) fail(`damaged zip: central directory entry ${e} runs past the directory`);
      const rawName = dir.subarray(p + 46, p + 46 + nameLength);
      const name = new TextDecoder("utf-8", { fatal: false }).decode(rawName);
      if (flags & 1) fail(`member "${name}" is encrypted`);
      // ZIP64 extra (id 1): 8-byte values for each field that was 0xFFFFFFFF, in this order.
      for (let x = p + 46 + nameLength; x + 4 <= p + 46 + nameLength + extraLength; ) {
        const id = dv.getUint16(x, true);
        const len = dv.getUint16(x + 2, true);
        if (x + 4 + len > p + 46 + nameLength + extraLength) fail(`damaged zip: member "${name}" has a malformed extra field`);
        if (id === 1) {
          let q = x + 4;
          const next = (): number => {
            if (q + 8 > x + 4 + len) fail(`damaged zip: member "${name}" has a short ZIP64 extra field`);
            const v = safeNumber(dv.getBigUint64(q, true), fail);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = next();
          if (compressedSize === 0xffffffff) compressedSize = next();
          if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
        }
        x += 4 + len;
      }
      if (localHeaderOffset + 30 + compressedSize > fileSize) fail(`member "${name}" runs past the end of the file (truncated?)`);
      if (method !== 0 && method !== 8) fail(`member "${name}" uses compression method ${method}; only stored (0) and deflate (8) are supported`);
      const array = name.endsWith(".npy") ? name.slice(0, -4) : name;
      members.set(array, { name, method, crc, compressedSize, size, localHeaderOffset });
      names.push(array);
      p = end;
    }
    return { path, label, fileSize, names, members };
  } finally {
    closeSync(fd);
  }
}

/**
 * Read one array (`name` without `.npy`) as float32. With `shape`, it must be exactly that. Only this
 * member's bytes are read.
 */
export function readNpyArray(file: NpzFile, name: string, shape?: readonly number[]): NpyArray {
  const fail = (reason: string): never => {
    throw new NpzError(file.label, reason);
  };
  const m = file.members.get(name);
  if (!m) return fail(`has no array "${name}" (it has ${file.names.map((n) => `"${n}"`).join(", ") || "none"})`);
  const at = `array "${name}"`;
  const { fd } = openRegularFile(file.path, fail);
  let raw: Uint8Array;
  try {
    const size = fstatSync(fd).size;
    if (m.localHeaderOffset + 30 > size) fail(`${at}: its local header is past the end of the file (truncated?)`);
    const local = view(readAt(fd, m.localHeaderOffset, 30, file.label));
    if (local.getUint32(0, true) !== LOCAL) fail(`${at}: no local header where the directory points`);
    const dataStart = m.localHeaderOffset + 30 + local.getUint16(26, true) + local.getUint16(28, true);
    if (dataStart + m.compressedSize > size) fail(`${at}: its data runs past the end of the file (truncated?)`);
    const stored = readAt(fd, dataStart, m.compressedSize, file.label);
    if (m.method === 0) {
      if (m.size !== m.compressedSize) fail(`${at}: a stored member of ${m.compressedSize} bytes declares ${m.size} uncompressed`);
      raw = stored;
    } else {
      if (m.size > m.compressedSize * MAX_DEFLATE_RATIO + 1024) fail(`${at}: declares ${m.size} bytes from ${m.compressedSize} compressed, more than deflate can produce`);
      try {
        raw = new Uint8Array(inflateRawSync(stored, { maxOutputLength: Math.max(1, m.size) }));
      } catch (e) {
        // maxOutputLength stops a member that inflates past its declared size (zlib's ERR_BUFFER_TOO_LARGE).
        if ((e as { code?: string })?.code === "ERR_BUFFER_TOO_LARGE") return fail(`${at}: inflates to more than the ${m.size} bytes the directory says`);
        return fail(`${at}: cannot inflate (${(e as Error).message})`);
      }
      if (raw.byteLength !== m.size) fail(`${at}: inflates to ${raw.byteLength} bytes, the directory says ${m.size}`);
    }
  } finally {
    closeSync(fd);
  }
  if (crc32(raw) !== m.crc) fail(`${at}: CRC-32 mismatch (the file is damaged)`);
  return parseNpy(raw, shape, (r) => fail(`${at}: ${r}`));
}

/** Parse a `.npy` blob: header, then `<f4` or `<f2` C-order data, as float32. */
export function parseNpy(bytes: Uint8Array, shape: readonly number[] | undefined, fail: (reason: string) => never): NpyArray {
  const magic = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
  if (bytes.byteLength < 10 || magic.some((b, i) => bytes[i] !== b)) fail("not a .npy array (bad magic)");
  const major = bytes[6]!;
  const v = view(bytes);
  let headerLength: number;
  let start: number;
  if (major === 1) {
    headerLength = v.getUint16(8, true);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.byteLength < 12) fail(".npy header is truncated");
    headerLength = v.getUint32(8, true);
    start = 12;
  } else return fail(`.npy format version ${major}.${bytes[7]} is not supported (1.0, 2.0, 3.0 are)`);
  if (start + headerLength > bytes.byteLength) fail(`.npy header length ${headerLength} runs past the array's ${bytes.byteLength} bytes`);
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(bytes.subarray(start, start + headerLength));
  const dict = parseHeaderDict(header, fail);
  if (dict.descr === "|O" || dict.descr.startsWith("|O") || dict.descr.includes("O")) fail(`holds Python objects (descr "${dict.descr}", a pickle); refused`);
  if (dict.descr.startsWith(">")) fail(`is big-endian (descr "${dict.descr}"); only little-endian <f4 and <f2 are supported`);
  if (dict.descr !== "<f4" && dict.descr !== "<f2") fail(`has dtype "${dict.descr}"; only <f4 and <f2 are supported`);
  if (dict.fortranOrder) fail("is in Fortran order; only C order is supported");
  if (shape && (shape.length !== dict.shape.length || shape.some((d, i) => d !== dict.shape[i]))) {
    fail(`has shape [${dict.shape.join(", ")}], expected [${shape.join(", ")}]`);
  }
  const itemSize = dict.descr === "<f4" ? 4 : 2;
  let count = 1;
  for (const d of dict.shape) count *= d;
  const dataStart = start + headerLength;
  if (!Number.isSafeInteger(count * itemSize) || count * itemSize !== bytes.byteLength - dataStart) {
    fail(`shape [${dict.shape.join(", ")}] of ${dict.descr} needs ${count * itemSize} bytes, the array holds ${bytes.byteLength - dataStart}`);
  }
  const aligned = new Uint8Array(count * itemSize);
  aligned.set(bytes.subarray(dataStart));
  const data = itemSize === 4 ? new Float32Array(aligned.buffer) : halfBitsToFloat32(new Uint16Array(aligned.buffer));
  return { descr: dict.descr, shape: dict.shape, data };
}

/**
 * The header dict numpy writes (`format._write_array_header`: repr of a dict with exactly the keys
 * descr, fortran_order, shape), parsed with a strict pattern rather than evaluated.
 */
function parseHeaderDict(header: string, fail: (reason: string) => never): { descr: string; fortranOrder: boolean; shape: number[] } {
  const text = header.trim();
  if (!text.startsWith("{") || !text.endsWith("}")) fail(`.npy header is not a dict: ${JSON.stringify(text.slice(0, 80))}`);
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(text);
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) return fail(`.npy header lacks descr, fortran_order or shape: ${JSON.stringify(text.slice(0, 120))}`);
  const dims = shape[1]!
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "")
    .map((s) => (/^\d+L?$/.test(s) ? Number(s.replace("L", "")) : NaN));
  if (!dims.every((d) => Number.isSafeInteger(d))) fail(`.npy shape (${shape[1]}) is not a tuple of integers`);
  return { descr: descr[1]!, fortranOrder: fortran[1] === "True", shape: dims };
}

let crcTable: Uint32Array | null = null;

/** CRC-32 (IEEE, as zip uses). */
export function crc32(bytes: Uint8Array): number {
  const table = (crcTable ??= (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })());
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = table[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

function safeNumber(v: bigint, fail: (reason: string) => never): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return fail(`damaged zip: a ZIP64 value ${v} is out of range`);
  return Number(v);
}

function readAt(fd: number, position: number, length: number, label: string): Uint8Array {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw new NpzError(label, `ends early: wanted ${length} bytes at offset ${position} (truncated?)`);
    done += n;
  }
  return out;
}
