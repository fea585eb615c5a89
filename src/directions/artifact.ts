/**
 * The `direction` artifact kind: a residual direction registered by name, one vector for every
 * point or one per point, read from JSON, a Steerkit direction file (.safetensors) or a llama.cpp /
 * repeng control vector (.gguf). `add-vector`, `ablate-direction` and `logger` load it in `prepare`.
 */
import { ArtifactError, defineArtifactKind } from "../core/artifacts.ts";
import { parsePoint, pointName } from "../core/sites.ts";
import { readRegularText } from "../formats/files.ts";
import { controlVectorPoints, readControlVector } from "./control-vector.ts";
import { readDirectionFile } from "./file.ts";

/**
 * A loaded `direction` artifact: one vector for every point, or one per point (canonical point
 * names, e.g. per-layer refusal directions).
 */
export interface Direction {
  /** The vector used at points without their own, or null when every point must have its own. */
  readonly vector: Float32Array | null;
  /** Per-point vectors by canonical point name. */
  readonly byPoint: ReadonlyMap<string, Float32Array>;
  readonly width: number;
  /**
   * Mean L2 norm of the residual rows each direction was extracted from, by canonical point name
   * (direction files written by `steerkit directions extract`); `add-vector`'s norm-relative scale
   * needs it.
   */
  readonly meanNorms?: ReadonlyMap<string, number>;
  /** The file's header strings (safetensors `__metadata__`), when it has any. */
  readonly metadata?: Readonly<Record<string, string>>;
}

/** A direction file larger than this is refused before it is read (one vector per point of a wide model fits). */
export const MAX_DIRECTION_FILE_BYTES = 256 * 1024 * 1024;

/**
 * The `direction` kind, read by file extension:
 * - `.safetensors`: a Steerkit direction file (`src/directions/file.ts`: one F32 tensor per point,
 *   named by the point, or one named `direction` for every point; provenance and mean residual
 *   norms in the header);
 * - `.gguf`: a llama.cpp / repeng control vector (`direction.N` -> `resid_post.N`, strength 1; sum
 *   several with strengths through `sumControlVectors` and register the result as a value);
 * - anything else: JSON, an array of numbers (one direction for every point) or an object of point
 *   name -> array of numbers.
 * An in-memory value takes the JSON shapes (arrays may be Float32Arrays). Every vector has the same
 * width, only finite values and a non-zero norm.
 */
export const directionArtifact = defineArtifactKind<Direction>({
  name: "direction",
  description: "a residual direction: one vector, or one per point (JSON, Steerkit .safetensors, or a control-vector .gguf)",
  load(source, name) {
    let value: unknown;
    // Named, not by path: the message may reach a request, which must not learn the server's files.
    const where = `direction "${name}"`;
    if ("path" in source) {
      const ext = source.path.toLowerCase().slice(source.path.lastIndexOf("."));
      if (ext === ".safetensors") return readDirectionFile(source.path, where);
      if (ext === ".gguf") {
        const cv = readControlVector(source.path, { where });
        return { vector: null, byPoint: controlVectorPoints(cv), width: cv.width, metadata: cv.modelHint === null ? {} : { model_hint: cv.modelHint } };
      }
      const text = readRegularText(
        source.path,
        (reason) => {
          throw new ArtifactError("INVALID_ARTIFACT", `${where}: cannot read its file (${reason})`);
        },
        { expected: "a direction JSON file", maxBytes: MAX_DIRECTION_FILE_BYTES },
      );
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new ArtifactError("INVALID_ARTIFACT", `${where}: its file is not valid JSON: ${(e as Error).message}`);
      }
    } else value = source.value;
    return parseDirection(value, where);
  },
});

function parseDirection(value: unknown, where: string): Direction {
  const bad = (msg: string): never => {
    throw new ArtifactError("INVALID_ARTIFACT", `${where}: ${msg}`);
  };
  const vec = (v: unknown, at: string): Float32Array => {
    if (!(Array.isArray(v) || v instanceof Float32Array) || v.length === 0) return bad(`${at} must be a non-empty array of numbers`);
    const out = Float32Array.from(v as ArrayLike<number>);
    for (let i = 0; i < out.length; i++) {
      if (typeof (v as ArrayLike<unknown>)[i] !== "number" || !Number.isFinite(out[i]!)) return bad(`${at}[${i}] is ${String((v as ArrayLike<unknown>)[i])}, expected a finite number`);
    }
    let ss = 0;
    for (let i = 0; i < out.length; i++) ss += out[i]! * out[i]!;
    if (!(ss > 0)) bad(`${at} is the zero vector`);
    return out;
  };
  if (Array.isArray(value) || value instanceof Float32Array) {
    const v = vec(value, "the direction");
    return { vector: v, byPoint: new Map(), width: v.length };
  }
  if (typeof value !== "object" || value === null) return bad(`expected an array of numbers or an object of point name -> array, got ${value === null ? "null" : typeof value}`);
  const byPoint = new Map<string, Float32Array>();
  let width = -1;
  const entries = value instanceof Map ? [...(value as Map<string, unknown>)] : Object.entries(value);
  for (const [key, v] of entries) {
    let name: string;
    try {
      const p = parsePoint(key);
      // resid_pre.L is resid_post.(L-1) (sites.ts); the layer is checked against a model later.
      name = pointName(p.site === "resid_pre" && p.layer > 0 ? { site: "resid_post", layer: p.layer - 1 } : p);
    } catch {
      return bad(`key "${key}" is not a point name such as "resid_post.3"`);
    }
    const x = vec(v, `"${key}"`);
    if (width >= 0 && x.length !== width) bad(`"${key}" has ${x.length} values, the others ${width}`);
    width = x.length;
    byPoint.set(name, x);
  }
  if (byPoint.size === 0) bad("holds no directions");
  return { vector: null, byPoint, width };
}
