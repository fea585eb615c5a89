/**
 * Named artifacts: SAEs, direction files and control vectors registered by name, so recipes refer
 * to them by name and never by path.
 *
 * Registering is trusted configuration (code, the CLI's flags, the server's config): only there is
 * a path accepted. A recipe — which may come from an untrusted request — can only name what was
 * registered, and a plugin loads it in its `prepare` through {@link Artifacts.load}. Each artifact
 * is loaded once per store, on first use, and shared read-only by every request after that.
 *
 * A kind is a name and a loader ({@link defineArtifactKind}); the built-in `direction` kind is
 * here, the SAE and control-vector kinds live with their formats. Loader errors name the artifact,
 * not its path: they may reach a request, which must not learn the server's file layout.
 */
import { readRegularText } from "../formats/files.ts";
import { SteerkitError } from "./errors.ts";
import { parsePoint, pointName } from "./sites.ts";
import { controlVectorPoints, readControlVector } from "../directions/control-vector.ts";
import { readDirectionFile } from "../directions/file.ts";

/** Where an artifact comes from: a file or directory (trusted configuration only), or a value in memory. */
export type ArtifactSource = { readonly path: string } | { readonly value: unknown };

export interface ArtifactKind<T> {
  /** The kind's name, e.g. "direction", "sae". */
  readonly name: string;
  readonly description?: string;
  /** Read and check an artifact; errors name the file and what is wrong. */
  load(source: ArtifactSource, name: string): T | Promise<T>;
}

/**
 * Define a kind of artifact.
 * @example
 * ```ts
 * const vocabList = defineArtifactKind({
 *   name: "word-list",
 *   load: (src) => ("path" in src ? readFileSync(src.path, "utf8").split("\n") : (src.value as string[])),
 * });
 * artifacts.register("banned", vocabList, { path: "banned.txt" });
 * ```
 */
export function defineArtifactKind<T>(kind: ArtifactKind<T>): ArtifactKind<T> {
  if (typeof kind.name !== "string" || !/^[a-z][\w-]*$/.test(kind.name)) {
    throw new TypeError(`defineArtifactKind: name must be a lowercase identifier, got ${JSON.stringify(kind.name)}`);
  }
  if (typeof kind.load !== "function") throw new TypeError(`defineArtifactKind("${kind.name}"): load must be a function`);
  return Object.freeze({ ...kind });
}

export class ArtifactError extends SteerkitError {
  override name = "ArtifactError";
}

const NAME = /^[A-Za-z0-9][\w.-]{0,127}$/;

interface Entry {
  readonly kind: ArtifactKind<unknown>;
  readonly source: ArtifactSource;
  loaded?: Promise<unknown>;
}

/** Description of a registered artifact, as `list()` and a server's `/v1/artifacts` show it. */
export interface ArtifactInfo {
  readonly name: string;
  readonly kind: string;
  /** "file" or "memory": never the path itself (a request must not learn the server's file layout). */
  readonly source: "file" | "memory";
}

/**
 * A store of named artifacts.
 * @example
 * ```ts
 * const artifacts = createArtifacts().register("refusal", directionArtifact, { path: "refusal.json" });
 * const plugins = await createRegistry().resolve([{ plugin: "ablate-direction", options: { direction: "refusal" } }]);
 * await generate(model, { prompt, plugins, artifacts });
 * ```
 */
export class Artifacts {
  readonly #entries = new Map<string, Entry>();

  /** Register `name` (trusted configuration only). A name is bound once: registering it again with another source fails. */
  register<T>(name: string, kind: ArtifactKind<T>, source: ArtifactSource): this {
    if (typeof name !== "string" || !NAME.test(name)) {
      throw new ArtifactError("INVALID_ARTIFACT", `artifact name ${JSON.stringify(name)} is not valid: letters, digits, ".", "_" and "-", at most 128`);
    }
    if (!kind || typeof kind.load !== "function") throw new TypeError(`register("${name}"): expected an artifact kind made by defineArtifactKind`);
    const isPath = typeof source === "object" && source !== null && "path" in source && typeof source.path === "string";
    const isValue = typeof source === "object" && source !== null && "value" in source;
    if (!isPath && !isValue) throw new TypeError(`register("${name}"): source must be { path } or { value }`);
    const existing = this.#entries.get(name);
    if (existing) {
      if (existing.kind === kind && sameSource(existing.source, source)) return this;
      throw new ArtifactError("INVALID_ARTIFACT", `artifact "${name}" is already registered (as a ${existing.kind.name}); names are bound once`);
    }
    this.#entries.set(name, { kind: kind as ArtifactKind<unknown>, source });
    return this;
  }

  has(name: string, kind?: ArtifactKind<unknown>): boolean {
    const e = this.#entries.get(name);
    return e !== undefined && (kind === undefined || e.kind.name === kind.name);
  }

  list(): ArtifactInfo[] {
    return [...this.#entries].map(([name, e]) => ({ name, kind: e.kind.name, source: "path" in e.source ? "file" : "memory" }));
  }

  /** Load (once) the artifact `name` of `kind`. Fails with UNKNOWN_ARTIFACT naming what is registered. */
  load<T>(kind: ArtifactKind<T>, name: string): Promise<T> {
    const e = this.#entries.get(name);
    if (!e || e.kind.name !== kind.name) {
      const same = this.list().filter((a) => a.kind === kind.name).map((a) => a.name);
      const other = e ? ` ("${name}" is a ${e.kind.name})` : "";
      return Promise.reject(
        new ArtifactError("UNKNOWN_ARTIFACT", `no ${kind.name} named "${name}" is registered${other}; registered ${kind.name}s: ${same.join(", ") || "(none)"}`),
      );
    }
    if (!e.loaded) {
      e.loaded = Promise.resolve()
        .then(() => e.kind.load(e.source, name))
        .catch((err) => {
          e.loaded = undefined; // a file fixed on disk can be loaded by the next request
          if (err instanceof SteerkitError) throw err;
          throw new ArtifactError("INVALID_ARTIFACT", `${kind.name} "${name}": ${(err as Error)?.message ?? String(err)}`, { cause: err });
        });
    }
    return e.loaded as Promise<T>;
  }
}

function sameSource(a: ArtifactSource, b: ArtifactSource): boolean {
  if ("path" in a && "path" in b) return a.path === b.path;
  return "value" in a && "value" in b && a.value === b.value;
}

/** A new, empty artifact store. */
export function createArtifacts(): Artifacts {
  return new Artifacts();
}

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
