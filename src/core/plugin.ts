/**
 * The plugin contract.
 *
 * A plugin is a plain object made by {@link definePlugin}: a name, an options schema (Standard
 * Schema v1), what it needs from a backend, which options only trusted configuration may set, an
 * optional `prepare` and `create`. `definePlugin` returns a factory; calling the factory validates
 * the options at once, so a bad recipe fails before any model loads.
 *
 * Lifecycle, from coldest to hottest:
 * - the factory runs when a chain is written down (options validated);
 * - `prepare` runs once per model, artifact store and options (possibly async: read an SAE or a
 *   direction, precompute); its result is cached and shared read-only by every request;
 * - `create` runs once per request, synchronously, with the prepared value: per-request state
 *   lives here, so concurrent requests never share it;
 * - hooks run inside the forward pass, synchronously, without allocating.
 */
import type { Artifacts } from "./artifacts.ts";
import type { AffineEdit, Capability, ModelInfo, TokenizeOptions } from "./backend.ts";
import { CAPABILITIES } from "./backend.ts";
import { OptionsError, PluginError, SteerkitError } from "./errors.ts";
import type { PositionsSpec } from "./points.ts";
import { isStandardSchema, validateSync, type StandardSchemaV1 } from "./schema.ts";
import type { HookPoint } from "./sites.ts";
import type { Tensor } from "./tensor.ts";

export type Enforce = "pre" | "post";

/** Passed to every hot-path hook. One object per request, updated in place (no allocation per call). */
export interface StepContext {
  readonly model: ModelInfo;
  /** "prefill" while the prompt is evaluated, then "decode" for each generated token. */
  readonly phase: "prefill" | "decode";
  /**
   * Generated tokens already in the sequence when this forward pass runs: 0 for the prompt
   * (prefill), n for the pass that feeds back the n-th generated token. Logits hooks see the step of
   * the pass that produced the logits, which choose generated token `step + 1`.
   */
  readonly step: number;
  /** The request's prompt, as token ids. */
  readonly promptTokens: readonly number[];
  /** The tokens generated so far (a live array: copy it to keep it). */
  readonly generatedTokens: readonly number[];
}

export interface ResidualContext extends StepContext {
  /** The canonical point being run (see sites.ts). */
  readonly point: HookPoint;
  /** Absolute position of each row of the residual. */
  readonly positions: ArrayLike<number>;
  /** Token id of each row of the residual (the token that row was computed from). */
  readonly tokens: ArrayLike<number>;
}

export interface LogitsContext extends StepContext {
  /** Absolute position of the row these logits were computed from (the last token so far). */
  readonly position: number;
}

/**
 * An affine residual edit `h' = h + (hU)V + c` at one point, as a plugin states it: positions are
 * symbolic (`"prompt"`, `"generated"`, `{ from }`) and core resolves them per request.
 */
export type AffineForm = Omit<AffineEdit, "point" | "positions"> & { readonly positions?: PositionsSpec };

/** State of one request, shared by the request and token middleware. */
export interface RequestContext {
  readonly model: ModelInfo;
  readonly promptTokens: readonly number[];
  /** Per-request scratch space for plugins, keyed by plugin name. */
  readonly state: Map<string, unknown>;
  /** Generated text so far (after the request ends: the final text). */
  readonly text: string;
  /** The tokens generated so far. */
  readonly generatedTokens: readonly number[];
  /**
   * Set by a middleware that answers without generating (when it does not call `next`):
   * this text becomes the result.
   */
  respond(text: string): void;
}

export interface TokenContext {
  readonly request: RequestContext;
  /** The sampled token and the text it adds (may be empty while a stop string or a UTF-8 sequence is incomplete). */
  readonly token: number;
  readonly text: string;
  /** 1-based index of this generated token. */
  readonly step: number;
}

export type Next = () => Promise<void>;
export type Middleware<C> = (ctx: C, next: Next) => void | Promise<void>;

/** What `create` returns: the hooks of one request. Every member is optional. */
export interface PluginHooks {
  /** Points `onResidual` runs at. Declared up front so a backend calls into JS only there. */
  readonly points?: readonly HookPoint[];
  /**
   * The points (of `points`) this plugin edits. Default: all of them when the plugin needs
   * `residual:write`, none otherwise. A point no plugin writes costs a backend less (ONNX serves
   * it as an extra output instead of cutting the graph; llama.cpp never writes it back).
   */
  readonly writes?: readonly HookPoint[];
  /**
   * Hot path: runs inside the backend's forward pass, synchronously, once per hooked point per
   * step. Edit `x.data` in place (return nothing) or return a replacement of the same dims.
   */
  onResidual?(x: Tensor, ctx: ResidualContext): Tensor | void;
  /**
   * The same edit as `onResidual`, as `h + (hU)V + c`, when it is one. A backend may then apply
   * it natively without calling JS per step. Return null at points where it is not affine.
   * It must equal `onResidual` (steerkit/testing has a helper that checks).
   */
  affine?(point: HookPoint): AffineForm | null;
  /** Runs on the next-token logits `[vocab]` before sampling. Edit in place or return a replacement. */
  onLogits?(logits: Float32Array, ctx: LogitsContext): Float32Array | void;
  /** Wraps the whole request. Not calling `next` skips generation (see `RequestContext.respond`). */
  onRequest?: Middleware<RequestContext>;
  /** Wraps the delivery of each token. Not calling `next` ends generation before this token. */
  onToken?: Middleware<TokenContext>;
}

/** What `prepare` gets: the model, the registered artifacts, and the model's tokenizer. */
export interface PrepareContext {
  readonly model: ModelInfo;
  /** Named artifacts (SAEs, directions, ...) a recipe may refer to by name. */
  readonly artifacts: Artifacts;
  tokenize(text: string, options?: TokenizeOptions): number[];
  detokenize(tokens: ArrayLike<number>): string;
  /** Throw an INVALID_OPTIONS error naming this plugin and the option at `path` (bad input, not a bug). */
  invalid(path: string, message: string): never;
}

/** What `create` gets: the model, the prepared value and the request's prompt. */
export interface CreateContext<P = unknown> {
  readonly model: ModelInfo;
  /** What `prepare` returned for this model and options (undefined for plugins without `prepare`). */
  readonly prepared: P;
  /** The request's prompt, as token ids. */
  readonly promptTokens: readonly number[];
  /** The model's detokenizer, for plugins that report tokens as text. */
  detokenize(tokens: ArrayLike<number>): string;
  /** Throw an INVALID_OPTIONS error naming this plugin and the option at `path`. */
  invalid(path: string, message: string): never;
}

type Options<S extends StandardSchemaV1> = StandardSchemaV1.InferOutput<S>;

export interface PluginDefinition<S extends StandardSchemaV1, P = undefined> {
  /** Unique name; recipes refer to the plugin by it. Third-party names: `steerkit-plugin-<name>` or a scope. */
  readonly name: string;
  /** Standard Schema v1 validator for the options. */
  readonly options: S;
  /** What the plugin needs from the backend; checked before any weights load. */
  readonly needs: readonly Capability[] | ((options: Options<S>) => readonly Capability[]);
  /**
   * Top-level options only trusted configuration may set (code, the CLI, a server's presets): a
   * file to write, a package to import, a callback. A recipe resolved as untrusted (a request to
   * a server) that sets one fails with UNTRUSTED_OPTION naming it.
   */
  readonly trustedOptions?: readonly string[];
  /** `pre` plugins run before, `post` plugins after the rest, which keep their order. */
  readonly enforce?: Enforce;
  readonly description?: string;
  /**
   * Once per model, artifact store and options: load artifacts, check them against the model,
   * precompute. May be async. The result is cached (a bounded number of option sets per model)
   * and shared read-only by every request: never mutate it in `create` or a hook.
   */
  prepare?(options: Options<S>, ctx: PrepareContext): P | Promise<P>;
  /** Once per request, synchronously: build this request's hooks (and per-request state). */
  create(options: Options<S>, ctx: CreateContext<P>): PluginHooks;
}

/** What a chain hands a configured plugin to prepare it (the plugin adds `invalid`, which names it). */
export type PrepareInput = Omit<PrepareContext, "invalid">;

/** A plugin with validated options, ready to be prepared for a model and put into a chain. */
export interface ConfiguredPlugin {
  readonly name: string;
  readonly enforce: Enforce | undefined;
  readonly options: unknown;
  readonly needs: readonly Capability[];
  /** Prepare for a model (cached: the same options on the same model and artifacts prepare once). */
  prepare(ctx: PrepareInput): Promise<PreparedPlugin>;
  /** `prepare`, when it can finish synchronously (no async `prepare`, or already cached); otherwise null. */
  prepareSync(ctx: PrepareInput): PreparedPlugin | null;
}

/** A plugin prepared for one model: `create` makes a request's hooks. */
export interface PreparedPlugin {
  readonly name: string;
  readonly enforce: Enforce | undefined;
  readonly options: unknown;
  readonly needs: readonly Capability[];
  /** The model it was prepared for. */
  readonly model: ModelInfo;
  create(ctx: Omit<CreateContext, "prepared" | "model" | "invalid">): PluginHooks;
}

/** What `definePlugin` returns: call it with options to configure the plugin. */
export interface PluginFactory<S extends StandardSchemaV1 = StandardSchemaV1> {
  (options: StandardSchemaV1.InferInput<S>): ConfiguredPlugin;
  readonly pluginName: string;
  readonly description: string | undefined;
  readonly schema: S;
  readonly trustedOptions: readonly string[];
}

const NAME = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/;

/** Option sets per model whose prepared values are kept; older ones are prepared again when asked. */
export const PREPARE_CACHE_SIZE = 32;

/**
 * Define a plugin.
 * @example
 * ```ts
 * import * as v from "valibot";
 * import { definePlugin, PointsOption, resolvePoints } from "steerkit";
 *
 * export const scaleResidual = definePlugin({
 *   name: "steerkit-plugin-scale",
 *   options: v.object({ points: PointsOption(), factor: v.number() }),
 *   needs: ["residual:write"],
 *   create: (o, { model }) => ({
 *     points: resolvePoints(o.points, model),
 *     onResidual(x) {
 *       for (let i = 0; i < x.data.length; i++) x.data[i]! *= o.factor;
 *     },
 *     affine: () => null, // not of the form h + (hU)V + c with a fixed rank: JS only
 *   }),
 * });
 * const plugin = scaleResidual({ points: ["resid_post.2"], factor: 1.5 }); // validated here
 * ```
 */
export function definePlugin<S extends StandardSchemaV1, P = undefined>(definition: PluginDefinition<S, P>): PluginFactory<S> {
  const { name } = definition;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(`definePlugin: name must be a lowercase package-style name, got ${JSON.stringify(name)}`);
  }
  if (!isStandardSchema(definition.options)) {
    throw new TypeError(`definePlugin("${name}"): options must be a Standard Schema v1 validator (valibot, Effect Schema, zod, ...)`);
  }
  if (typeof definition.create !== "function") throw new TypeError(`definePlugin("${name}"): create must be a function`);
  if (definition.prepare !== undefined && typeof definition.prepare !== "function") throw new TypeError(`definePlugin("${name}"): prepare must be a function or absent`);
  if (definition.enforce !== undefined && definition.enforce !== "pre" && definition.enforce !== "post") {
    throw new TypeError(`definePlugin("${name}"): enforce must be "pre", "post" or absent, got ${JSON.stringify(definition.enforce)}`);
  }
  const trustedOptions = Object.freeze([...(definition.trustedOptions ?? [])]);
  if (!trustedOptions.every((k) => typeof k === "string" && k.length > 0)) {
    throw new TypeError(`definePlugin("${name}"): trustedOptions must be option names`);
  }
  const subject = `plugin "${name}"`;
  const invalid = (path: string, message: string): never => {
    throw new OptionsError(subject, [{ path, message }]);
  };
  const cache = new PrepareCache<PreparedPlugin>();

  const factory = (input: StandardSchemaV1.InferInput<S>): ConfiguredPlugin => {
    const options = validateSync(definition.options, input, subject);
    const needs = typeof definition.needs === "function" ? definition.needs(options) : definition.needs;
    const unknown = needs.filter((n) => !CAPABILITIES.includes(n));
    if (unknown.length) {
      throw new OptionsError(subject, [{ path: "needs", message: `unknown capabilities ${unknown.join(", ")}; expected ${CAPABILITIES.join(", ")}` }]);
    }
    const base = { name, enforce: definition.enforce, options, needs: Object.freeze([...needs]) };
    const prepared = (model: ModelInfo, value: P): PreparedPlugin =>
      Object.freeze({
        ...base,
        model,
        create: (ctx: Omit<CreateContext, "prepared" | "model" | "invalid">) =>
          definition.create(options, { ...ctx, model, prepared: value, invalid }),
      });

    /** Start preparing (or find the cached result); the sync value when it is already there. */
    const start = (ctx: PrepareInput): { value?: PreparedPlugin; promise: Promise<PreparedPlugin> } => {
      if (!definition.prepare) {
        const value = prepared(ctx.model, undefined as P);
        return { value, promise: Promise.resolve(value) };
      }
      return cache.get(ctx.model, ctx.artifacts, options, () => {
        let result: P | Promise<P>;
        try {
          result = definition.prepare!(options, { ...ctx, invalid });
        } catch (e) {
          throw wrapPrepareError(name, e);
        }
        if (result instanceof Promise) {
          return { promise: result.then((v) => prepared(ctx.model, v), (e) => Promise.reject(wrapPrepareError(name, e))) };
        }
        const value = prepared(ctx.model, result);
        return { value, promise: Promise.resolve(value) };
      });
    };
    return Object.freeze({
      ...base,
      prepare: (ctx: PrepareInput) => {
        try {
          return start(ctx).promise;
        } catch (e) {
          return Promise.reject(e);
        }
      },
      prepareSync: (ctx: PrepareInput) => start(ctx).value ?? null,
    });
  };
  return Object.assign(factory, { pluginName: name, description: definition.description, schema: definition.options, trustedOptions });
}

function wrapPrepareError(name: string, e: unknown): Error {
  return e instanceof SteerkitError ? e : new PluginError(name, "prepare", e);
}

interface CacheEntry<T> {
  value?: T;
  promise: Promise<T>;
}

/**
 * Prepared values per model (weakly held), artifact store (weakly held) and options: by a stable
 * JSON key for JSON-like options (recipes from a server build a fresh options object per request),
 * by identity otherwise (options holding functions or typed arrays). Bounded per model and store,
 * least recently used out first; a failed preparation is not cached.
 */
class PrepareCache<T> {
  readonly #byModel = new WeakMap<ModelInfo, WeakMap<object, Map<string, CacheEntry<T>>>>();
  readonly #byIdentity = new WeakMap<object, WeakMap<ModelInfo, WeakMap<object, CacheEntry<T>>>>();

  get(model: ModelInfo, artifacts: object, options: unknown, make: () => CacheEntry<T>): CacheEntry<T> {
    const key = stableKey(options);
    if (key === null) {
      const o = options as object;
      let m = this.#byIdentity.get(o);
      if (!m) this.#byIdentity.set(o, (m = new WeakMap()));
      let a = m.get(model);
      if (!a) m.set(model, (a = new WeakMap()));
      let entry = a.get(artifacts);
      if (!entry) {
        entry = track(make(), () => a!.delete(artifacts));
        a.set(artifacts, entry);
      }
      return entry;
    }
    let m = this.#byModel.get(model);
    if (!m) this.#byModel.set(model, (m = new WeakMap()));
    let lru = m.get(artifacts);
    if (!lru) m.set(artifacts, (lru = new Map()));
    let entry = lru.get(key);
    if (entry) {
      lru.delete(key); // most recently used goes last
      lru.set(key, entry);
      return entry;
    }
    entry = track(make(), () => lru!.get(key) === entry && lru!.delete(key));
    lru.set(key, entry);
    while (lru.size > PREPARE_CACHE_SIZE) lru.delete(lru.keys().next().value!);
    return entry;
  }
}

/** Record the value when the promise settles; forget the entry when it fails. */
function track<T>(entry: CacheEntry<T>, forget: () => void): CacheEntry<T> {
  entry.promise.then(
    (v) => void (entry.value = v),
    () => forget(),
  );
  return entry;
}

/** JSON with sorted keys, or null when the value holds something JSON cannot key (functions, typed arrays, cycles). */
function stableKey(value: unknown): string | null {
  const seen = new Set<object>();
  let ok = true;
  const walk = (v: unknown): unknown => {
    if (!ok) return null;
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") return Number.isFinite(v) ? v : String(v);
    if (v === undefined) return undefined;
    if (typeof v !== "object" || ArrayBuffer.isView(v) || seen.has(v)) {
      ok = false;
      return null;
    }
    seen.add(v);
    const out = Array.isArray(v) ? v.map(walk) : Object.fromEntries(Object.keys(v).sort().map((k) => [k, walk((v as Record<string, unknown>)[k])]));
    seen.delete(v);
    return out;
  };
  const json = JSON.stringify(walk(value));
  return ok ? json : null;
}
