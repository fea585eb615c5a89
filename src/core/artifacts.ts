/**
 * Named artifacts: SAEs, direction files and control vectors registered by name, so recipes refer
 * to them by name and never by path.
 *
 * Registering is trusted configuration (code, the CLI's flags, the server's config): only there is
 * a path accepted. A recipe — which may come from an untrusted request — can only name what was
 * registered, and a plugin loads it in its `prepare` through {@link Artifacts.load}. Each artifact
 * is loaded once per store, on first use, and shared read-only by every request after that.
 *
 * A kind is a name and a loader ({@link defineArtifactKind}); kinds live with their formats
 * (`directionArtifact` in src/directions, `saeArtifact` in src/sae), so core knows none of them.
 * Loader errors name the artifact, not its path: they may reach a request, which must not learn
 * the server's file layout.
 */
import { SteerkitError } from "./errors.ts";

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
