/**
 * llama.cpp / repeng control vectors: GGUF files with `general.architecture = "controlvector"`,
 * `controlvector.model_hint` (the model's architecture), `controlvector.layer_count` (the number of
 * tensors) and one F32 1-D tensor `direction.N` per layer.
 *
 * Semantics, as the pinned llama.cpp applies them (`common/common.cpp` `common_control_vector_load`,
 * `src/llama-adapter.cpp` `llama_adapter_cvec`): `direction.N` is added to `l_out-N`, the output of
 * 0-based block N, i.e. `resid_post.N` (core/sites.ts); N = 0 is refused; every tensor is multiplied
 * by the file's strength; tensors naming the same layer and several files are summed; all must
 * have one width. repeng's `export_gguf` writes the same keys (layer_count as u32, llama.cpp's
 * cvector-generator as i32) with its layer ids, which are block-output indices too.
 *
 * Stricter than llama.cpp, with a clear error instead of a skipped file or silent zeros: the
 * architecture must be "controlvector", `layer_count` (when present) must equal the tensor count,
 * tensor names must be exactly `direction.<N>`, and values must be finite. Layers missing from a
 * file (repeng exports a subset) are simply not steered, as in llama.cpp. Layers beyond a model
 * are refused when a plugin prepares (llama.cpp ignores them).
 */
import { GgufError, readGgufHeader, readTensorF32, type GgufFile } from "../formats/gguf.ts";
import { encodeGguf } from "../formats/gguf-write.ts";
import { GGML_TYPE } from "../formats/ggml-types.ts";
import { writeFileSync } from "node:fs";
import { SteerkitError } from "../core/errors.ts";
import { fromLlamaCppDirection, parsePoint, pointName, toLlamaCppDirection } from "../core/sites.ts";
import { checkVector } from "./file.ts";

export const CONTROL_VECTOR_ARCH = "controlvector";

export interface ControlVector {
  /** `controlvector.model_hint` (the model's `general.architecture`), or null when absent. */
  readonly modelHint: string | null;
  /** Per layer N (`direction.N`, added at `resid_post.N`), already scaled by the strength. */
  readonly layers: ReadonlyMap<number, Float32Array>;
  readonly width: number;
}

/** Read one control-vector file, scaled by `strength` (default 1). `where` names it in errors. */
export function readControlVector(path: string, options: { strength?: number; where?: string } = {}): ControlVector {
  const where = options.where ?? path;
  const strength = options.strength ?? 1;
  const bad = (msg: string): never => {
    throw new SteerkitError("INVALID_ARTIFACT", `${where}: ${msg}`);
  };
  if (!Number.isFinite(strength)) bad(`strength must be finite, got ${strength}`);
  let file: GgufFile;
  try {
    file = readGgufHeader(path);
  } catch (e) {
    // GgufError names the path; the artifact's name is what may reach a request.
    if (e instanceof GgufError) return bad(`not a valid GGUF file: ${e.reason}`);
    throw e;
  }
  const arch = file.metadata.get("general.architecture");
  if (arch !== CONTROL_VECTOR_ARCH) bad(`general.architecture is ${JSON.stringify(typeof arch === "bigint" ? String(arch) : arch)}, expected "${CONTROL_VECTOR_ARCH}": not a control vector`);
  const hint = file.metadata.get(`${CONTROL_VECTOR_ARCH}.model_hint`);
  if (hint !== undefined && typeof hint !== "string") bad(`${CONTROL_VECTOR_ARCH}.model_hint must be a string`);
  const count = file.metadata.get(`${CONTROL_VECTOR_ARCH}.layer_count`);
  if (count !== undefined) {
    const n = typeof count === "bigint" ? Number(count) : count;
    if (typeof n !== "number" || !Number.isInteger(n)) bad(`${CONTROL_VECTOR_ARCH}.layer_count must be an integer`);
    if (n !== file.tensors.length) bad(`${CONTROL_VECTOR_ARCH}.layer_count says ${String(n)} layers but the file holds ${file.tensors.length} direction tensors`);
  }
  if (file.tensors.length === 0) bad("holds no direction tensors");
  const layers = new Map<number, Float32Array>();
  let width = -1;
  for (const t of file.tensors) {
    if (!/^direction\.\d+$/.test(t.name)) bad(`tensor "${t.name}" is not named direction.<layer>`);
    let layer: number;
    try {
      layer = fromLlamaCppDirection(t.name).layer;
    } catch (e) {
      return bad(`tensor "${t.name}": ${(e as Error).message}`);
    }
    if (t.type !== GGML_TYPE.F32) bad(`tensor "${t.name}" is not F32 (llama.cpp accepts only F32 directions)`);
    if (t.dims.length !== 1) bad(`tensor "${t.name}" has ${t.dims.length} dimensions; a direction is one-dimensional`);
    if (width >= 0 && t.elementCount !== width) bad(`tensor "${t.name}" has ${t.elementCount} values, the others ${width}`);
    width = t.elementCount;
    const v = readTensorF32(file, t);
    for (let i = 0; i < v.length; i++) if (!Number.isFinite(v[i]!)) bad(`tensor "${t.name}"[${i}] is ${v[i]}`);
    const acc = layers.get(layer) ?? new Float32Array(width);
    for (let i = 0; i < width; i++) acc[i] = acc[i]! + v[i]! * strength;
    layers.set(layer, acc);
  }
  return { modelHint: (hint as string | undefined) ?? null, layers, width };
}

/**
 * Several files with strengths, summed as llama.cpp sums them (`--control-vector-scaled a.gguf:0.8
 * b.gguf:-0.5`): every file must have the same width; layers missing from a file add nothing.
 */
export function sumControlVectors(files: readonly { readonly path: string; readonly strength?: number; readonly where?: string }[]): ControlVector {
  if (files.length === 0) throw new SteerkitError("INVALID_REQUEST", "give at least one control-vector file");
  const layers = new Map<number, Float32Array>();
  let width = -1;
  let modelHint: string | null = null;
  for (const f of files) {
    const cv = readControlVector(f.path, { strength: f.strength, where: f.where });
    if (width >= 0 && cv.width !== width) throw new SteerkitError("INVALID_ARTIFACT", `${f.where ?? f.path}: its directions have ${cv.width} values, the previous files' ${width}`);
    width = cv.width;
    modelHint ??= cv.modelHint;
    for (const [layer, v] of cv.layers) {
      const acc = layers.get(layer) ?? new Float32Array(width);
      for (let i = 0; i < width; i++) acc[i] = acc[i]! + v[i]!;
      layers.set(layer, acc);
    }
  }
  return { modelHint, layers, width };
}

/** A control vector as `direction` artifact contents: `resid_post.N` -> vector. */
export function controlVectorPoints(cv: ControlVector): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  for (const [layer, v] of [...cv.layers].sort((a, b) => a[0] - b[0])) out.set(pointName({ site: "resid_post", layer }), v);
  return out;
}

/**
 * Write per-point vectors as a control-vector GGUF. Every point must be a block output other than
 * block 0's (`resid_post.N`, N >= 1, or `resid_pre.N+1`), within `nLayers`; names are converted
 * with `toLlamaCppDirection`. The bytes follow repeng's `export_gguf` (u32 layer_count, tensors in
 * ascending layer order, 32-byte alignment).
 */
export function encodeControlVector(vectors: ReadonlyMap<string, Float32Array>, options: { modelHint: string; nLayers: number }): Uint8Array {
  const entries: { layer: number; name: string; v: Float32Array }[] = [];
  let width = -1;
  for (const [point, v] of vectors) {
    let name: string;
    try {
      name = toLlamaCppDirection(parsePoint(point), options.nLayers);
    } catch (e) {
      throw new SteerkitError("INVALID_REQUEST", `control vector: ${point}: ${(e as Error).message}`);
    }
    checkVector(v, point, (msg) => new SteerkitError("INVALID_REQUEST", `control vector: ${msg}`));
    if (width >= 0 && v.length !== width) throw new SteerkitError("INVALID_REQUEST", `control vector: ${point} has ${v.length} values, the others ${width}`);
    width = v.length;
    const layer = fromLlamaCppDirection(name).layer;
    if (entries.some((e) => e.layer === layer)) throw new SteerkitError("INVALID_REQUEST", `control vector: two vectors for ${name}`);
    entries.push({ layer, name, v });
  }
  if (entries.length === 0) throw new SteerkitError("INVALID_REQUEST", "control vector: no vectors to write");
  entries.sort((a, b) => a.layer - b.layer);
  return encodeGguf({
    metadata: [
      ["general.architecture", { type: "string", value: CONTROL_VECTOR_ARCH }],
      [`${CONTROL_VECTOR_ARCH}.model_hint`, { type: "string", value: options.modelHint }],
      [`${CONTROL_VECTOR_ARCH}.layer_count`, { type: "u32", value: entries.length }],
    ],
    tensors: entries.map((e) => ({ name: e.name, type: GGML_TYPE.F32, dims: [e.v.length], data: new Uint8Array(Float32Array.from(e.v).buffer) })),
  });
}

export function writeControlVector(path: string, vectors: ReadonlyMap<string, Float32Array>, options: { modelHint: string; nLayers: number }): void {
  writeFileSync(path, encodeControlVector(vectors, options));
}
