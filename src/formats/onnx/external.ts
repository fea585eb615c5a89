/**
 * ONNX files on disk: the model proto plus its external data files (`model.onnx.data`), which
 * exports over 2 GiB (the protobuf limit) and most large ones use.
 */
import { closeSync, writeFileSync } from "node:fs";
import { openRegularFile, readRegularFile } from "../files.ts";
import { basename, dirname, isAbsolute, join, normalize } from "node:path";
import { decodeModel, OnnxDecodeError } from "./decode.ts";
import { encodeModel } from "./encode.ts";
import { halfBitsToFloat32 } from "../half.ts";
import { DataType, dataTypeSize, type OnnxModel, type OnnxTensor } from "./types.ts";
import { Reader, WIRE_FIXED32, WIRE_LEN, WIRE_VARINT } from "./wire.ts";
import { SteerkitError } from "../../core/errors.ts";

/** An ONNX file problem; the message names the file. */
export class OnnxFileError extends SteerkitError {
  override name = "OnnxFileError";
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super("INVALID_MODEL_FILE", `${file}: ${reason}`);
  }
}

export interface ExternalDataRef {
  location: string;
  offset: number;
  /** Byte length, or undefined for "to the end of the file". */
  length: number | undefined;
}

/** Where an initializer's bytes live when stored outside the proto, or null. */
export function externalDataRef(t: OnnxTensor): ExternalDataRef | null {
  if (t.dataLocation !== 1) return null;
  let location: string | undefined;
  let offset = 0;
  let length: number | undefined;
  for (const e of t.externalData) {
    if (e.key === "location") location = e.value;
    else if (e.key === "offset") offset = Number(e.value);
    else if (e.key === "length") length = Number(e.value);
  }
  if (location === undefined) throw new Error(`initializer "${t.name}" is marked external but has no "location"`);
  return { location, offset, length };
}

export interface OnnxFile {
  path: string;
  dir: string;
  /** The proto bytes (the model's byte slices are views into it). */
  bytes: Uint8Array;
  model: OnnxModel;
  /** External data files by their `location` string, memory-mapped. */
  externalFiles: Map<string, Uint8Array>;
}

/**
 * Read and decode an ONNX file and map every external data file it names. Errors name the file
 * and the reason: not a protobuf / no graph, an external file missing or too short.
 */
export function readOnnxFile(path: string): OnnxFile {
  const bytes = readRegularFile(
    path,
    (reason) => {
      throw new OnnxFileError(path, reason);
    },
    { expected: "an .onnx file" },
  );
  let model: OnnxModel;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    if (e instanceof OnnxDecodeError) throw new OnnxFileError(path, `not an ONNX model (${e.message})`);
    throw e;
  }
  const dir = dirname(path);
  const externalFiles = new Map<string, Uint8Array>();
  for (const t of model.graph!.initializers) {
    const ref = externalDataRef(t);
    if (ref === null) continue;
    let data = externalFiles.get(ref.location);
    if (data === undefined) {
      const file = resolveLocation(path, dir, ref.location);
      // Opened and checked before mapping: a FIFO or a device named as external data must not hang the load.
      const { fd, size } = openRegularFile(file, (reason) => {
        const what = reason === "no such file or directory" ? "not found" : reason;
        throw new OnnxFileError(path, `external data file "${ref.location}" (for initializer "${t.name}") at ${file}: ${what}`);
      });
      closeSync(fd);
      data = size === 0 ? new Uint8Array(0) : Bun.mmap(file, { shared: false });
      externalFiles.set(ref.location, data);
    }
    const need = ref.offset + (ref.length ?? 0);
    if (need > data.length) {
      throw new OnnxFileError(
        path,
        `external data file "${ref.location}" is ${data.length} bytes, initializer "${t.name}" needs bytes up to ${need}`,
      );
    }
  }
  return { path, dir, bytes, model, externalFiles };
}

function resolveLocation(modelPath: string, dir: string, location: string): string {
  const rel = normalize(location);
  if (isAbsolute(rel) || rel.startsWith("..")) {
    throw new OnnxFileError(modelPath, `external data location "${location}" leaves the model's directory`);
  }
  return join(dir, rel);
}

/**
 * The little-endian element bytes of a tensor, wherever they are stored: raw_data, an external
 * file, or the typed repeated fields (float_data, int32_data, int64_data) some exporters write.
 */
export function tensorBytes(t: OnnxTensor, externalFiles?: ReadonlyMap<string, Uint8Array>): Uint8Array {
  const ref = externalDataRef(t);
  if (ref !== null) {
    const file = externalFiles?.get(ref.location);
    if (file === undefined) throw new Error(`initializer "${t.name}": external data file "${ref.location}" is not loaded`);
    return file.subarray(ref.offset, ref.length === undefined ? undefined : ref.offset + ref.length);
  }
  if (t.rawData !== undefined) return t.rawData;
  const count = t.dims.reduce((a, b) => a * b, 1);
  const type = t.dataType ?? 0;
  const size = dataTypeSize(type);
  const out = new Uint8Array(count * size);
  const view = new DataView(out.buffer);
  let i = 0;
  for (const f of t.extra) {
    const r = new Reader(f.bytes);
    const { field, wire } = r.tag();
    const values = wire === WIRE_LEN ? r.message() : r;
    const one = wire !== WIRE_LEN;
    do {
      if (field === 4 && (wire === WIRE_FIXED32 || wire === WIRE_LEN)) {
        view.setFloat32(4 * i++, values.float(), true);
      } else if (field === 5 && (wire === WIRE_VARINT || wire === WIRE_LEN)) {
        const v = Number(values.varintBig());
        if (size === 4) view.setInt32(4 * i++, v, true);
        else if (size === 2) view.setUint16(2 * i++, v, true);
        else view.setUint8(i++, v);
      } else if (field === 7 && (wire === WIRE_VARINT || wire === WIRE_LEN)) {
        view.setBigInt64(8 * i++, values.varintBig(), true);
      } else break;
    } while (!one && !values.done);
  }
  if (count > 0 && i !== count && type !== DataType.STRING) {
    throw new Error(`initializer "${t.name}": found ${i} stored values, dims say ${count}`);
  }
  return out;
}

/** A tensor's values as float32 (converting float16). */
export function tensorFloat32(t: OnnxTensor, externalFiles?: ReadonlyMap<string, Uint8Array>): Float32Array {
  const b = tensorBytes(t, externalFiles);
  if (t.dataType === DataType.FLOAT) {
    const copy = new Uint8Array(b);
    return new Float32Array(copy.buffer, 0, copy.length / 4);
  }
  if (t.dataType === DataType.FLOAT16) {
    const aligned = b.byteOffset % 2 === 0 ? b : b.slice();
    return halfBitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, aligned.byteLength / 2));
  }
  throw new Error(`initializer "${t.name}": data type ${t.dataType} is not float32 or float16`);
}

export { floatToHalf, halfToFloat } from "../half.ts";

export interface SaveOptions {
  /**
   * Write initializers of at least `externalThreshold` bytes to this file (a name beside the
   * model, e.g. "model.onnx.data") instead of inside the proto. Needed past 2 GiB.
   */
  externalDataFile?: string;
  externalThreshold?: number;
}

/** Encode and write a model (and its external data file). The passed model is not modified. */
export function saveModel(path: string, m: OnnxModel, options: SaveOptions = {}): void {
  if (options.externalDataFile === undefined) {
    writeFileSync(path, encodeModel(m));
    return;
  }
  const location = basename(options.externalDataFile);
  const threshold = options.externalThreshold ?? 1024;
  const chunks: Uint8Array[] = [];
  let offset = 0;
  const initializers = m.graph!.initializers.map((t) => {
    if (t.rawData === undefined || t.rawData.length < threshold) return t;
    // 64-byte alignment lets a runtime map the file and use the weights in place.
    const pad = (64 - (offset % 64)) % 64;
    if (pad) chunks.push(new Uint8Array(pad));
    offset += pad;
    chunks.push(t.rawData);
    const entry = (key: string, value: string) => ({ key, value, extra: [] });
    const moved: OnnxTensor = {
      ...t,
      rawData: undefined,
      dataLocation: 1,
      externalData: [entry("location", location), entry("offset", String(offset)), entry("length", String(t.rawData.length))],
    };
    offset += t.rawData.length;
    return moved;
  });
  const out: OnnxModel = { ...m, graph: { ...m.graph!, initializers } };
  writeFileSync(path, encodeModel(out));
  const data = new Uint8Array(offset);
  let o = 0;
  for (const c of chunks) {
    data.set(c, o);
    o += c.length;
  }
  writeFileSync(join(dirname(path), location), data);
}
