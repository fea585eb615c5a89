/**
 * What every SAE loader shares: reading a small JSON config, reading weight tensors by name from a
 * safetensors or npz file (shape-checked, finite-checked, float32), and the one error shape.
 *
 * Errors carry a `label` the caller chose (the directory for the CLI, `SAE "name"` for a registered
 * artifact) and file names relative to the SAE directory, so a server never leaks its file layout.
 */
import { closeSync, readSync } from "node:fs";
import { openRegularFile } from "../formats/files.ts";
import { ArtifactError } from "../core/artifacts.ts";
import { SteerkitError } from "../core/errors.ts";
import { openNpz, readNpyArray, type NpzFile } from "../formats/npz.ts";
import { openSafetensors, readTensor, type SafetensorsFile } from "../formats/safetensors/read.ts";
import type { SaeInfo } from "./sae.ts";

/** A config file larger than this is not an SAE config. */
const MAX_CONFIG_BYTES = 4 << 20;

/** Throw the loaders' error: INVALID_ARTIFACT, prefixed with the label. */
export function saeFail(label: string, message: string): never {
  throw new ArtifactError("INVALID_ARTIFACT", `${label}: ${message}`);
}

/** Re-throw a reader's error (INVALID_MODEL_FILE, naming a relative file) with the label in front. */
export function withLabel<T>(label: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof SteerkitError) {
      if (e.message.startsWith(`${label}: `)) throw e;
      throw new SteerkitError(e.code, `${label}: ${e.message}`, { cause: e });
    }
    throw new ArtifactError("INVALID_ARTIFACT", `${label}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

/** Read a JSON object from `path` (named `file` in errors). */
export function readJsonObject(path: string, file: string, label: string): Record<string, unknown> {
  let text: string;
  const { fd, size } = openRegularFile(path, (reason) => saeFail(label, `cannot read ${file} (${reason})`), "a JSON file");
  try {
    if (size > MAX_CONFIG_BYTES) saeFail(label, `${file} is ${size} bytes, too large for an SAE config`);
    const buf = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, buf, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    text = new TextDecoder().decode(buf.subarray(0, done));
  } finally {
    closeSync(fd);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return saeFail(label, `${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return saeFail(label, `${file} must hold a JSON object`);
  return value as Record<string, unknown>;
}

/** Tensors by name from one weights file, whatever its format. */
export interface TensorSource {
  /** The file's name relative to the SAE directory. */
  readonly file: string;
  has(name: string): boolean;
  /** Stored shape, or null when absent. */
  shape(name: string): readonly number[] | null;
  /** Stored dtype as SaeInfo names it. */
  dtype(name: string): SaeInfo["dtype"];
  /** The tensor as float32, shape-checked and finite-checked. */
  read(name: string, shape: readonly number[]): Float32Array;
}

const SAFETENSORS_DTYPE: Record<string, SaeInfo["dtype"]> = { F32: "float32", F16: "float16", BF16: "bfloat16" };

export function safetensorsSource(path: string, file: string, label: string): TensorSource {
  const st: SafetensorsFile = withLabel(label, () => openSafetensors(path, { label: file }));
  return {
    file,
    has: (name) => st.tensors.has(name),
    shape: (name) => st.tensors.get(name)?.shape ?? null,
    dtype(name) {
      const d = st.tensors.get(name)?.dtype ?? "";
      return SAFETENSORS_DTYPE[d] ?? saeFail(label, `${file}: tensor "${name}" is ${d}; only F32, F16 and BF16 are supported`);
    },
    read: (name, shape) => checkFinite(withLabel(label, () => readTensor(st, name, shape)), shape, name, file, label),
  };
}

export function npzSource(path: string, file: string, label: string): TensorSource {
  const npz: NpzFile = withLabel(label, () => openNpz(path, { label: file }));
  const cache = new Map<string, ReturnType<typeof readNpyArray>>();
  // An npz member's shape and dtype are in its own header: reading it is reading the array.
  const get = (name: string) => {
    let a = cache.get(name);
    if (!a) {
      a = withLabel(label, () => readNpyArray(npz, name));
      cache.set(name, a);
    }
    return a;
  };
  return {
    file,
    has: (name) => npz.members.has(name),
    shape: (name) => (npz.members.has(name) ? get(name).shape : null),
    dtype: (name) => (get(name).descr === "<f2" ? "float16" : "float32"),
    read(name, shape) {
      const a = get(name);
      cache.delete(name); // handed to the SAE; do not keep a second reference
      if (shape.length !== a.shape.length || shape.some((d, i) => d !== a.shape[i])) {
        saeFail(label, `${file}: array "${name}" has shape [${a.shape.join(", ")}], expected [${shape.join(", ")}]`);
      }
      return checkFinite(a.data, shape, name, file, label);
    },
  };
}

function checkFinite(data: Float32Array, shape: readonly number[], name: string, file: string, label: string): Float32Array {
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      const index: number[] = [];
      let rest = i;
      for (let d = shape.length - 1; d >= 0; d--) {
        index.unshift(rest % shape[d]!);
        rest = Math.floor(rest / shape[d]!);
      }
      saeFail(label, `${file}: tensor "${name}" holds ${data[i]} at [${index.join(", ")}]`);
    }
  }
  return data;
}

/** `[rows, cols]` row-major -> `[cols, rows]` row-major (SAELens's W_enc [d_in, d_sae] -> latent-major). */
export function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0, o = r * cols; c < cols; c++) out[c * rows + r] = src[o + c]!;
  }
  return out;
}

/** Row L2 norms of a `[rows, cols]` matrix, clamped below as SAELens clamps them (1e-8). */
export function rowNorms(m: Float32Array, rows: number, cols: number, min = 1e-8): Float64Array {
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let ss = 0;
    for (let c = 0, o = r * cols; c < cols; c++) ss += m[o + c]! * m[o + c]!;
    out[r] = Math.max(Math.sqrt(ss), min);
  }
  return out;
}

/** A positive integer from a config field, or a clear error naming the field. */
export function positiveInt(value: unknown, field: string, file: string, label: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) saeFail(label, `${file}: ${field} must be a positive integer, got ${JSON.stringify(value)}`);
  return value as number;
}
