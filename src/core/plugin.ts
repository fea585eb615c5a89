/**
 * The plugin contract.
 *
 * A plugin is a plain object made by {@link definePlugin}: a name, an options schema (Standard
 * Schema v1), what it needs from a backend, and `create`, which turns validated options and the
 * model's shape into hooks. `definePlugin` returns a factory; calling the factory validates the
 * options at once, so a bad recipe fails before any model loads.
 *
 * Lifecycle: the factory runs when a chain is written down; `create` runs once per request (each
 * generation gets fresh plugin state, so concurrent requests never share it — cache expensive
 * things such as loaded SAE weights outside `create`); hooks run inside the forward pass.
 */
import type { AffineEdit, Capability, ModelInfo } from "./backend.ts";
import { CAPABILITIES } from "./backend.ts";
import { OptionsError } from "./errors.ts";
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
}

export interface ResidualContext extends StepContext {
  /** The canonical point being run (see sites.ts). */
  readonly point: HookPoint;
  /** Absolute position of each row of the residual. */
  readonly positions: ArrayLike<number>;
}

export interface LogitsContext extends StepContext {
  /** Every token of the sequence so far (prompt, then generated). */
  readonly tokens: readonly number[];
}

/** An affine residual edit `h' = h + (hU)V + c` at one point, without the point (see AffineEdit). */
export type AffineForm = Omit<AffineEdit, "point">;

/** State of one request, shared by the request and token middleware. */
export interface RequestContext {
  readonly model: ModelInfo;
  readonly promptTokens: readonly number[];
  /** Per-request scratch space for plugins, keyed by plugin name. */
  readonly state: Map<string, unknown>;
  /** Generated text so far (after the request ends: the final text). */
  readonly text: string;
  readonly tokens: readonly number[];
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

export interface PluginSetup {
  readonly model: ModelInfo;
  /** The model's detokenizer, for plugins that report tokens as text. */
  detokenize(tokens: ArrayLike<number>): string;
}

export interface PluginDefinition<S extends StandardSchemaV1> {
  /** Unique name; recipes refer to the plugin by it. Third-party names: `steerkit-plugin-<name>` or a scope. */
  readonly name: string;
  /** Standard Schema v1 validator for the options. */
  readonly options: S;
  /** What the plugin needs from the backend; checked before any weights load. */
  readonly needs: readonly Capability[] | ((options: StandardSchemaV1.InferOutput<S>) => readonly Capability[]);
  /** `pre` plugins run before, `post` plugins after the rest, which keep their order. */
  readonly enforce?: Enforce;
  readonly description?: string;
  create(options: StandardSchemaV1.InferOutput<S>, setup: PluginSetup): PluginHooks;
}

/** A plugin with validated options, ready to be put into a chain. */
export interface ConfiguredPlugin {
  readonly name: string;
  readonly enforce: Enforce | undefined;
  readonly options: unknown;
  readonly needs: readonly Capability[];
  create(setup: PluginSetup): PluginHooks;
}

/** What `definePlugin` returns: call it with options to configure the plugin. */
export interface PluginFactory<S extends StandardSchemaV1 = StandardSchemaV1> {
  (options: StandardSchemaV1.InferInput<S>): ConfiguredPlugin;
  readonly pluginName: string;
  readonly description: string | undefined;
  readonly schema: S;
}

const NAME = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/;

export function definePlugin<S extends StandardSchemaV1>(definition: PluginDefinition<S>): PluginFactory<S> {
  const { name } = definition;
  if (typeof name !== "string" || !NAME.test(name)) {
    throw new TypeError(`definePlugin: name must be a lowercase package-style name, got ${JSON.stringify(name)}`);
  }
  if (!isStandardSchema(definition.options)) {
    throw new TypeError(`definePlugin("${name}"): options must be a Standard Schema v1 validator (valibot, Effect Schema, zod, ...)`);
  }
  if (typeof definition.create !== "function") throw new TypeError(`definePlugin("${name}"): create must be a function`);
  if (definition.enforce !== undefined && definition.enforce !== "pre" && definition.enforce !== "post") {
    throw new TypeError(`definePlugin("${name}"): enforce must be "pre", "post" or absent, got ${JSON.stringify(definition.enforce)}`);
  }

  const factory = (input: StandardSchemaV1.InferInput<S>): ConfiguredPlugin => {
    const options = validateSync(definition.options, input, `plugin "${name}"`);
    const needs = typeof definition.needs === "function" ? definition.needs(options) : definition.needs;
    const unknown = needs.filter((n) => !CAPABILITIES.includes(n));
    if (unknown.length) {
      throw new OptionsError(`plugin "${name}"`, [{ path: "needs", message: `unknown capabilities ${unknown.join(", ")}; expected ${CAPABILITIES.join(", ")}` }]);
    }
    return Object.freeze({
      name,
      enforce: definition.enforce,
      options,
      needs: Object.freeze([...needs]),
      create: (setup: PluginSetup) => definition.create(options, setup),
    });
  };
  return Object.assign(factory, { pluginName: name, description: definition.description, schema: definition.options });
}
