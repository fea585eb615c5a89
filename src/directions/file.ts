/**
 * The Steerkit direction file: directions as safetensors, so Python (safetensors, torch, numpy) reads
 * them as easily as Steerkit does, with their provenance in the header.
 *
 * Layout (a plain safetensors file, written by `writeSafetensors`):
 * - one F32 tensor of shape `[d_model]` per point, named by its canonical point name
 *   (`resid_post.3`, `resid_mid.0`, `resid_pre.0`); or a single tensor named `direction` meaning
 *   one vector for every point;
 * - `__metadata__` (all strings, all optional when reading): `format` = "steerkit-directions",
 *   `format_version` = "1", `model`, `backend`, `d_model`, `n_layers`, `method` ("mean-diff" or
 *   "pca-diff"), `positions` ("last", "mean", "post-instruction"), `prompt_format` ("text" or
 *   "chat"), `prompt_set_a_sha256` / `prompt_set_b_sha256` (sha256 of the JSON array of the set's
 *   prompts, UTF-8), `prompt_set_a_size` / `prompt_set_b_size`, and `mean_norms`: a JSON object
 *   point -> mean L2 norm of the residual rows the direction was extracted from, which `add-vector`
 *   uses for norm-relative scaling (`relativeTo: "mean-norm"`).
 *
 * Reading checks what a plugin relies on: tensor names are points, every vector has the same width,
 * finite values and a non-zero norm; `mean_norms` names only points the file has, with finite
 * positive norms. Errors name the artifact (`where`), never the path.
 */
import { openSafetensors, readTensor } from "../formats/safetensors/read.ts";
import { writeSafetensors, type TensorToWrite } from "../formats/safetensors/write.ts";
import { SteerkitError } from "../core/errors.ts";
import type { Direction } from "./artifact.ts";
import { canonicalName } from "./points.ts";

export const DIRECTION_FORMAT = "steerkit-directions";
export const SHARED_TENSOR = "direction";

/** Directions to write: by point name (or `direction` for one shared vector), plus header strings. */
export interface DirectionFileContents {
  readonly vectors: ReadonlyMap<string, Float32Array>;
  readonly metadata?: Readonly<Record<string, string>>;
  /** Mean residual norm per point (written as `mean_norms`). */
  readonly meanNorms?: ReadonlyMap<string, number>;
}

/** Write a direction file. Vectors are checked as the reader will check them. */
export function writeDirectionFile(path: string, contents: DirectionFileContents): void {
  const tensors: Record<string, TensorToWrite> = {};
  let width = -1;
  for (const [name, v] of contents.vectors) {
    const key = name === SHARED_TENSOR ? name : canonicalName(name);
    checkVector(v, `"${name}"`, (msg) => new SteerkitError("INVALID_REQUEST", `direction file: ${msg}`));
    if (width >= 0 && v.length !== width) throw new SteerkitError("INVALID_REQUEST", `direction file: "${name}" has ${v.length} values, the others ${width}`);
    width = v.length;
    tensors[key] = { dtype: "F32", shape: [v.length], data: Float32Array.from(v) };
  }
  if (width < 0) throw new SteerkitError("INVALID_REQUEST", "direction file: no vectors to write");
  const metadata: Record<string, string> = { format: DIRECTION_FORMAT, format_version: "1", ...contents.metadata };
  if (contents.meanNorms) metadata.mean_norms = JSON.stringify(Object.fromEntries(contents.meanNorms));
  writeSafetensors(path, tensors, metadata);
}

/** Read a direction file as a `direction` artifact. `where` names it in errors (e.g. `direction "refusal"`). */
export function readDirectionFile(path: string, where: string): Direction {
  const bad = (msg: string): never => {
    throw new SteerkitError("INVALID_ARTIFACT", `${where}: ${msg}`);
  };
  const file = openSafetensors(path, { label: where });
  const format = file.metadata.format;
  if (format !== undefined && format !== DIRECTION_FORMAT) bad(`its header says format "${format}", expected "${DIRECTION_FORMAT}"`);
  const byPoint = new Map<string, Float32Array>();
  let shared: Float32Array | null = null;
  let width = -1;
  for (const [name, t] of file.tensors) {
    if (t.shape.length !== 1) bad(`tensor "${name}" has shape [${t.shape.join(", ")}]; a direction is one-dimensional`);
    const v = readTensor(file, name);
    checkVector(v, `tensor "${name}"`, (msg) => new SteerkitError("INVALID_ARTIFACT", `${where}: ${msg}`));
    if (width >= 0 && v.length !== width) bad(`tensor "${name}" has ${v.length} values, the others ${width}`);
    width = v.length;
    if (name === SHARED_TENSOR) {
      shared = v;
      continue;
    }
    let point: string;
    try {
      point = canonicalName(name);
    } catch {
      return bad(`tensor "${name}" is not named by a point such as "resid_post.3" (or "${SHARED_TENSOR}" for one vector for every point)`);
    }
    if (byPoint.has(point)) bad(`tensors "${name}" and another name the same point ${point}`);
    byPoint.set(point, v);
  }
  if (width < 0) bad("holds no tensors");
  const meanNorms = file.metadata.mean_norms === undefined ? undefined : parseNorms(file.metadata.mean_norms, byPoint, shared !== null, bad);
  return { vector: shared, byPoint, width, meanNorms, metadata: { ...file.metadata } };
}

function parseNorms(text: string, byPoint: ReadonlyMap<string, Float32Array>, hasShared: boolean, bad: (msg: string) => never): Map<string, number> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return bad("header mean_norms is not JSON");
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) return bad("header mean_norms must be a JSON object of point -> number");
  const out = new Map<string, number>();
  for (const [key, n] of Object.entries(value)) {
    let point: string;
    try {
      point = canonicalName(key);
    } catch {
      return bad(`header mean_norms names "${key}", which is not a point`);
    }
    if (!hasShared && !byPoint.has(point)) bad(`header mean_norms names ${point}, which has no tensor`);
    if (typeof n !== "number" || !Number.isFinite(n) || n <= 0) bad(`header mean_norms.${key} is ${JSON.stringify(n)}, expected a finite number > 0`);
    out.set(point, n as number);
  }
  return out;
}

/** Finite values and a non-zero norm, or an error from `fail`. */
export function checkVector(v: ArrayLike<number>, at: string, fail: (msg: string) => Error): void {
  if (v.length === 0) throw fail(`${at} is empty`);
  let ss = 0;
  for (let i = 0; i < v.length; i++) {
    const x = v[i]!;
    if (!Number.isFinite(x)) throw fail(`${at}[${i}] is ${x}, expected a finite number`);
    ss += x * x;
  }
  if (!(ss > 0)) throw fail(`${at} is the zero vector`);
}
