/**
 * The hook chain: a request's configured plugins, checked against the backend, created, ordered
 * once (`pre`, then the order given, then `post`) and compiled into
 * - `residual`: the {@link ResidualHooks} a backend runs inside its forward pass,
 * - `logits`: what core runs on next-token logits before sampling,
 * - `request` / `token`: the per-request middleware, composed like Hono's.
 */
import { createArtifacts, type Artifacts } from "./artifacts.ts";
import type { AffineEdit, Capability, Model, ModelInfo, PositionRange, ResidualHooks } from "./backend.ts";
import { compose } from "./compose.ts";
import { CapabilityError, PluginError, SteerkitError } from "./errors.ts";
import type {
  AffineForm,
  ConfiguredPlugin,
  LogitsContext,
  Middleware,
  PluginHooks,
  PrepareInput,
  PreparedPlugin,
  RequestContext,
  ResidualContext,
  TokenContext,
} from "./plugin.ts";
import { inPositions, resolvePositions } from "./points.ts";
import { canonicalPoint, pointAt, pointIndex, pointName, type HookPoint } from "./sites.ts";
import type { Tensor } from "./tensor.ts";

export interface BackendCapabilities {
  readonly name: string;
  readonly capabilities: readonly Capability[];
}

/** Fail, naming plugin, backend and capability, when a backend cannot serve a plugin. Needs no model. */
export function checkCapabilities(plugins: readonly { readonly name: string; readonly needs: readonly Capability[] }[], backend: BackendCapabilities): void {
  for (const p of plugins) {
    const missing = p.needs.filter((n) => !backend.capabilities.includes(n));
    if (missing.length) throw new CapabilityError(p.name, backend.name, missing);
  }
}

/** Run order: `pre` plugins, the rest in the order given, then `post` (stable). */
export function orderPlugins<T extends { readonly enforce: ConfiguredPlugin["enforce"] }>(plugins: readonly T[]): T[] {
  const rank = (p: T) => (p.enforce === "pre" ? 0 : p.enforce === "post" ? 2 : 1);
  return plugins.map((p, i) => ({ p, i })).sort((a, b) => rank(a.p) - rank(b.p) || a.i - b.i).map((x) => x.p);
}

export interface ChainOptions {
  /** Let backends apply affine edits natively (default true). False forces every hook through JS. */
  readonly fastPath?: boolean;
  /** The request's prompt (resolves `"prompt"`/`"generated"` positions; hooks see it). Default: none. */
  readonly promptTokens?: readonly number[];
  /** The live array of generated tokens that hooks see as `generatedTokens`. Default: a new empty array. */
  readonly generatedTokens?: readonly number[];
  /** Artifacts for plugins prepared here (plugins given already prepared keep theirs). Default: none. */
  readonly artifacts?: Artifacts;
}

/** The model as preparing and compiling a chain need it. */
export type ChainModel = Pick<Model, "info" | "capabilities" | "detokenize"> & Partial<Pick<Model, "tokenize">>;

/** A plugin as a chain accepts it: configured (prepared on the spot) or already prepared. */
export type ChainPlugin = ConfiguredPlugin | PreparedPlugin;

const EMPTY_ARTIFACTS = createArtifacts();

function prepareInput(model: ChainModel, artifacts: Artifacts | undefined): PrepareInput {
  return {
    model: model.info,
    artifacts: artifacts ?? EMPTY_ARTIFACTS,
    tokenize: (text, o) => {
      if (!model.tokenize) throw new TypeError("this model offers no tokenizer to prepare with");
      return model.tokenize(text, o);
    },
    detokenize: (t) => model.detokenize(t),
  };
}

/**
 * Prepare plugins for a model: each plugin's `prepare` runs once per model, artifact store and
 * options (cached), so a server pays for loading an SAE once, not per request. Checks the plugins'
 * needs against the backend first. Errors name the plugin.
 * @example
 * ```ts
 * const plugins = await preparePlugins(model, await registry.resolve(recipe), { artifacts });
 * const events = stream(model, { messages, plugins }); // no async work left: bad input already failed
 * ```
 */
export async function preparePlugins(
  model: ChainModel,
  plugins: readonly ChainPlugin[],
  options: { readonly artifacts?: Artifacts } = {},
): Promise<PreparedPlugin[]> {
  checkCapabilities(plugins, { name: model.info.backend, capabilities: model.capabilities });
  return Promise.all(plugins.map((p) => (isPrepared(p) ? checkPreparedFor(p, model.info) : p.prepare(prepareInput(model, options.artifacts)))));
}

/** `preparePlugins` without waiting: null when some plugin's preparation is async and not cached yet. */
export function preparePluginsSync(model: ChainModel, plugins: readonly ChainPlugin[], options: { readonly artifacts?: Artifacts } = {}): PreparedPlugin[] | null {
  checkCapabilities(plugins, { name: model.info.backend, capabilities: model.capabilities });
  const out: PreparedPlugin[] = [];
  for (const p of plugins) {
    const prepared = isPrepared(p) ? checkPreparedFor(p, model.info) : p.prepareSync(prepareInput(model, options.artifacts));
    if (!prepared) return null;
    out.push(prepared);
  }
  return out;
}

function isPrepared(p: ChainPlugin): p is PreparedPlugin {
  return typeof (p as PreparedPlugin).create === "function" && "model" in p;
}

function checkPreparedFor(p: PreparedPlugin, info: ModelInfo): PreparedPlugin {
  if (p.model !== info) throw new PluginError(p.name, "create", new Error(`was prepared for model "${p.model.name}" (${p.model.backend}), not for "${info.name}" (${info.backend})`));
  return p;
}

export interface CreatedPlugin {
  readonly name: string;
  readonly needs: readonly Capability[];
  readonly hooks: PluginHooks;
}

export interface Chain {
  readonly plugins: readonly CreatedPlugin[];
  readonly residual: ResidualHooks;
  readonly hasLogitsHooks: boolean;
  /** Tell hooks which step is about to run. */
  setStep(phase: "prefill" | "decode", step: number): void;
  /** Run the logits hooks on the logits of the row at `position`; throws a PluginError naming the plugin when one throws. */
  logits(logits: Float32Array, position: number): Float32Array;
  readonly request: (ctx: RequestContext, next: () => Promise<void>) => Promise<void>;
  readonly token: (ctx: TokenContext, next: () => Promise<void>) => Promise<void>;
}

interface ResidualEntry {
  readonly name: string;
  readonly onResidual: NonNullable<PluginHooks["onResidual"]>;
  readonly hooks: PluginHooks;
  /** Whether this plugin edits the residual at this point. */
  readonly writes: boolean;
}

/** Mutable step context shared by every hook of one request (no allocation per call). */
interface MutableContext {
  model: ModelInfo;
  phase: "prefill" | "decode";
  step: number;
  promptTokens: readonly number[];
  generatedTokens: readonly number[];
  point: HookPoint;
  positions: ArrayLike<number>;
  tokens: ArrayLike<number>;
  position: number;
}

/**
 * Compile a request's chain: create each plugin's hooks (in run order), check what they declare,
 * and build the {@link ResidualHooks} a backend runs. Plugins with an async `prepare` must be
 * prepared first ({@link preparePlugins}); `generate` and `stream` do that for you.
 */
export function compileChain(configured: readonly ChainPlugin[], model: ChainModel, options: ChainOptions = {}): Chain {
  const preparedPlugins = preparePluginsSync(model, configured, options);
  if (!preparedPlugins) {
    const pending = configured.filter((p) => !isPrepared(p) && !p.prepareSync(prepareInput(model, options.artifacts))).map((p) => p.name);
    throw new PluginError(pending[0] ?? "?", "prepare", new Error("prepares asynchronously: await preparePlugins(model, plugins) before compiling a chain"));
  }
  const nLayers = model.info.nLayers;
  const promptTokens = options.promptTokens ?? [];
  const ordered = orderPlugins(preparedPlugins);
  const plugins: CreatedPlugin[] = ordered.map((p) => {
    let hooks: PluginHooks;
    try {
      hooks = p.create({ promptTokens, detokenize: (t) => model.detokenize(t) });
    } catch (e) {
      if (e instanceof SteerkitError) throw e;
      throw new PluginError(p.name, "create", e);
    }
    if (typeof hooks !== "object" || hooks === null) throw new PluginError(p.name, "create", new TypeError("create must return an object of hooks"));
    checkDeclarations(p, hooks);
    return { name: p.name, needs: p.needs, hooks };
  });

  const ctx: MutableContext = {
    model: model.info,
    phase: "prefill",
    step: 0,
    promptTokens,
    generatedTokens: options.generatedTokens ?? [],
    point: { site: "resid_pre", layer: 0 },
    positions: [],
    tokens: [],
    position: 0,
  };
  const residual = new ChainResidualHooks(plugins, model.info, ctx, options.fastPath ?? true);
  const logitPlugins = plugins.filter((p) => p.hooks.onLogits);

  return {
    plugins,
    residual,
    hasLogitsHooks: logitPlugins.length > 0,
    setStep(phase, step) {
      ctx.phase = phase;
      ctx.step = step;
    },
    logits(logits, position) {
      ctx.position = position;
      let cur = logits;
      for (const p of logitPlugins) {
        let r: Float32Array | void;
        try {
          r = p.hooks.onLogits!(cur, ctx as LogitsContext);
        } catch (e) {
          throw new PluginError(p.name, "onLogits", e);
        }
        if (r !== undefined) {
          if (!(r instanceof Float32Array) || r.length !== logits.length) {
            throw new PluginError(p.name, "onLogits", new TypeError(`returned ${describe(r)}, expected a Float32Array of ${logits.length}`));
          }
          cur = r;
        }
      }
      return cur;
    },
    request: compose(namedMiddleware(plugins, "onRequest")),
    token: compose(namedMiddleware(plugins, "onToken")),
  };

  function checkDeclarations(p: PreparedPlugin, hooks: PluginHooks): void {
    const fail = (msg: string) => {
      throw new PluginError(p.name, "create", new TypeError(msg));
    };
    if (hooks.onResidual && !hooks.points?.length) fail("has onResidual but declares no points");
    if (hooks.points?.length && !hooks.onResidual) fail("declares points but has no onResidual");
    if (hooks.onResidual && !p.needs.some((n) => n.startsWith("residual:"))) fail("has onResidual but does not declare residual:read or residual:write in needs");
    if (hooks.onLogits && !p.needs.some((n) => n.startsWith("logits:"))) fail("has onLogits but does not declare logits:read or logits:write in needs");
    for (const point of [...(hooks.points ?? []), ...(hooks.writes ?? [])]) {
      try {
        canonicalPoint(point, nLayers);
      } catch (e) {
        fail(`point ${JSON.stringify(point)}: ${(e as Error).message}`);
      }
    }
    if (hooks.writes !== undefined) {
      if (!Array.isArray(hooks.writes)) fail("writes must be a list of points");
      if (hooks.writes.length && !p.needs.includes("residual:write")) fail("declares writes but does not declare residual:write in needs");
      const declared = new Set((hooks.points ?? []).map((q) => pointIndex(q, nLayers)));
      for (const w of hooks.writes) if (!declared.has(pointIndex(w, nLayers))) fail(`writes ${pointName(w)}, which is not one of its points`);
    }
  }
}

class ChainResidualHooks implements ResidualHooks {
  readonly points: readonly HookPoint[];
  readonly affine: ReadonlyMap<string, AffineEdit>;
  readonly writes: boolean;
  readonly readOnly: ReadonlySet<string>;
  error: Error | null = null;
  private readonly byIndex: (ResidualEntry[] | undefined)[];

  constructor(
    plugins: readonly CreatedPlugin[],
    info: ModelInfo,
    private readonly ctx: MutableContext,
    fastPath: boolean,
  ) {
    const n = info.nLayers;
    this.byIndex = new Array(2 * n + 1);
    for (const p of plugins) {
      const { hooks } = p;
      if (!hooks.onResidual) continue;
      const written = hooks.writes
        ? new Set(hooks.writes.map((w) => pointIndex(w, n)))
        : p.needs.includes("residual:write")
          ? null // every point
          : new Set<number>();
      const seen = new Set<number>();
      for (const point of hooks.points!) {
        const i = pointIndex(point, n);
        if (seen.has(i)) continue; // resid_pre L and resid_post L-1 are one place: run once
        seen.add(i);
        const writes = written === null || written.has(i);
        (this.byIndex[i] ??= []).push({ name: p.name, onResidual: hooks.onResidual.bind(hooks), hooks, writes });
      }
    }
    const points: HookPoint[] = [];
    const affine = new Map<string, AffineEdit>();
    const readOnly = new Set<string>();
    const promptLength = ctx.promptTokens.length;
    this.byIndex.forEach((entries, i) => {
      if (!entries) return;
      const point = pointAt(i, n);
      points.push(point);
      if (!entries.some((e) => e.writes)) readOnly.add(pointName(point));
      else if (fastPath) {
        const edit = composeAffine(entries, point, info.dModel, promptLength);
        if (edit) affine.set(pointName(point), edit);
      }
    });
    this.points = points;
    this.affine = affine;
    this.readOnly = readOnly;
    this.writes = readOnly.size < points.length;
  }

  run(point: HookPoint, x: Tensor, positions: ArrayLike<number>, tokens: ArrayLike<number>): Tensor {
    if (this.error) return x;
    const layer = point.layer;
    const index =
      point.site === "resid_pre" ? (layer === 0 ? 0 : 2 * layer) : 1 + 2 * layer + (point.site === "resid_mid" ? 0 : 1);
    const entries = this.byIndex[index];
    if (!entries) return x;
    const ctx = this.ctx;
    ctx.point = point;
    ctx.positions = positions;
    ctx.tokens = tokens;
    let cur = x;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      try {
        const r = entry.onResidual(cur, ctx as ResidualContext);
        if (r !== undefined) {
          if (r === null || !(r.data instanceof Float32Array) || r.data.length !== x.data.length) {
            throw new TypeError(`returned ${describe(r)}, expected a tensor of ${x.dims.join("x")}`);
          }
          cur = r;
        }
      } catch (e) {
        this.error = new PluginError(entry.name, `onResidual at ${pointName(point)}`, e);
        return x;
      }
    }
    return cur;
  }
}

function describe(v: unknown): string {
  if (v === null) return "null";
  if (ArrayBuffer.isView(v)) return `${v.constructor.name}(${(v as Float32Array).length})`;
  if (typeof v === "object" && v && "data" in v) return `a tensor of ${(v as Tensor).data?.length} values`;
  return typeof v;
}

/**
 * Compose the affine forms of every hook at a point, in chain order, into one edit; null when any
 * hook there is not affine, or when their positions differ (one edit has one position range; such
 * a point runs in JS). Applying e1 then e2:
 *   h2 = h + h·[U1 | U2 + U1(V1U2)]·[V1; V2] + (c1 + (c1U2)V2 + c2)
 */
function composeAffine(entries: readonly ResidualEntry[], point: HookPoint, d: number, promptLength: number): AffineEdit | null {
  let U: Float32Array | null = null;
  let V: Float32Array | null = null;
  let c: Float32Array | null = null;
  let k = 0;
  let positions: PositionRange | null | undefined;
  for (const e of entries) {
    const form = e.hooks.affine?.(point) ?? null;
    if (!form) return null;
    checkForm(e.name, form, point, d);
    const range = resolvePositions(form.positions ?? "all", promptLength);
    if (positions === undefined) positions = range;
    else if (!sameRange(positions, range)) return null;
    const k2 = form.rank;
    if (k2 > 0) {
      const U2 = form.U!;
      const V2 = form.V!;
      // U2' = U2 + U1 (V1 U2)
      const U2p = new Float32Array(U2);
      if (k > 0) {
        const V1U2 = new Float32Array(k * k2);
        for (let a = 0; a < k; a++)
          for (let b = 0; b < k2; b++) {
            let s = 0;
            for (let i = 0; i < d; i++) s += V![a * d + i]! * U2[i * k2 + b]!;
            V1U2[a * k2 + b] = s;
          }
        for (let i = 0; i < d; i++)
          for (let b = 0; b < k2; b++) {
            let s = 0;
            for (let a = 0; a < k; a++) s += U![i * k + a]! * V1U2[a * k2 + b]!;
            U2p[i * k2 + b] = U2p[i * k2 + b]! + s;
          }
      }
      // c += (c U2) V2, using the c before this edit
      if (c) {
        for (let b = 0; b < k2; b++) {
          let s = 0;
          for (let i = 0; i < d; i++) s += c[i]! * U2[i * k2 + b]!;
          if (s !== 0) for (let i = 0; i < d; i++) c[i] = c[i]! + s * V2[b * d + i]!;
        }
      }
      const K = k + k2;
      const Un = new Float32Array(d * K);
      for (let i = 0; i < d; i++) {
        for (let a = 0; a < k; a++) Un[i * K + a] = U![i * k + a]!;
        for (let b = 0; b < k2; b++) Un[i * K + k + b] = U2p[i * k2 + b]!;
      }
      const Vn = new Float32Array(K * d);
      if (V) Vn.set(V, 0);
      Vn.set(V2, k * d);
      U = Un;
      V = Vn;
      k = K;
    }
    if (form.c) {
      c ??= new Float32Array(d);
      for (let i = 0; i < d; i++) c[i] = c[i]! + form.c[i]!;
    }
  }
  return { point, rank: k, U, V, c, positions: positions ?? null };
}

function sameRange(a: PositionRange | null, b: PositionRange | null): boolean {
  return a === b || (a !== null && b !== null && a.from === b.from && a.to === b.to);
}

function checkForm(plugin: string, f: AffineForm, point: HookPoint, d: number): void {
  const bad = (msg: string) => {
    throw new PluginError(plugin, `affine at ${pointName(point)}`, new RangeError(msg));
  };
  if (!Number.isInteger(f.rank) || f.rank < 0) bad(`rank must be an integer >= 0, got ${f.rank}`);
  if (f.rank > 0) {
    if (!(f.U instanceof Float32Array) || f.U.length !== d * f.rank) bad(`U must be a Float32Array of ${d}x${f.rank}, got ${describe(f.U)}`);
    if (!(f.V instanceof Float32Array) || f.V.length !== f.rank * d) bad(`V must be a Float32Array of ${f.rank}x${d}, got ${describe(f.V)}`);
  }
  if (f.c !== null && (!(f.c instanceof Float32Array) || f.c.length !== d)) bad(`c must be a Float32Array of ${d} or null, got ${describe(f.c)}`);
}

/** Wrap each plugin's middleware so its own errors name it; errors from deeper in the chain pass through. */
function namedMiddleware<K extends "onRequest" | "onToken">(plugins: readonly CreatedPlugin[], hook: K) {
  type C = K extends "onRequest" ? RequestContext : TokenContext;
  const out: Middleware<C>[] = [];
  for (const p of plugins) {
    const fn = p.hooks[hook] as Middleware<C> | undefined;
    if (!fn) continue;
    out.push(async (ctx, next) => {
      let fromNext = false;
      let calls = 0;
      const twice = () => new PluginError(p.name, hook, new Error("called next() more than once"));
      try {
        await fn.call(p.hooks, ctx, async () => {
          if (++calls > 1) throw twice();
          try {
            await next();
          } catch (e) {
            fromNext = true;
            throw e;
          }
        });
      } catch (e) {
        if (fromNext || (e instanceof PluginError && e.plugin === p.name)) throw e;
        throw new PluginError(p.name, hook, e);
      }
      // A second call whose error the plugin caught still breaks the contract.
      if (calls > 1) throw twice();
    });
  }
  return out;
}

/**
 * Apply an affine edit `h' = h + (hU)V + c` in place to every row of `x` whose position is in the
 * edit's range: the reference implementation that backends without a native path, the reference
 * backend and tests share. `positions[i]` is row i's position (needed only when the edit has a
 * range). Pass a `scratch` of at least `edit.rank` values to keep a hot path allocation-free.
 */
export function applyAffine(
  edit: AffineEdit,
  x: Tensor,
  scratch: Float64Array = new Float64Array(edit.rank),
  positions?: ArrayLike<number>,
): void {
  const { rank: k, U, V, c } = edit;
  const range = edit.positions ?? null;
  if (range && !positions) throw new RangeError(`applyAffine: the edit at ${pointName(edit.point)} is limited to positions; pass the rows' positions`);
  const d = x.dims[x.dims.length - 1]!;
  const data = x.data;
  for (let off = 0, r = 0; off < data.length; off += d, r++) {
    if (range && !inPositions(range, positions![r]!)) continue;
    if (k > 0 && U && V) {
      for (let a = 0; a < k; a++) {
        let s = 0;
        for (let i = 0; i < d; i++) s += data[off + i]! * U[i * k + a]!;
        scratch[a] = s;
      }
      for (let a = 0; a < k; a++) {
        const s = scratch[a]!;
        if (s === 0) continue;
        const vo = a * d;
        for (let i = 0; i < d; i++) data[off + i] = data[off + i]! + s * V[vo + i]!;
      }
    }
    if (c) for (let i = 0; i < d; i++) data[off + i] = data[off + i]! + c[i]!;
  }
}
