/**
 * The backend conformance suite: what any {@link Model} must do for Steerkit's plugins to behave
 * the same on it as on llama.cpp, ONNX Runtime and the reference backend.
 *
 * It is a list of named checks, not tests, so it runs under any test runner. Each check calls
 * `open()` once for a fresh model, drives it through core (`generate`, `stream`, real
 * `definePlugin` plugins; the rollback check hands a sequence its own hooks), disposes it, and throws an Error naming what differed:
 *
 * ```ts
 * import { test } from "bun:test";
 * import { conformanceChecks } from "steerkit/testing";
 * const open = () => myAdapter.load("model.file", { contextLength: 128 });
 * for (const c of conformanceChecks) test(c.name, () => c.run(open));
 * ```
 *
 * Needs: all four capabilities, a model with at least 2 layers, a tokenizer (or `options.prompt`),
 * and a small context (64-256): one check fills it. Generations are greedy (EOS ignored) and 4
 * tokens long, so the suite takes seconds on a small model.
 *
 * Tolerances (max |logit difference| at any step, {@link DEFAULT_TOLERANCES}; override per backend
 * with `options.tolerance`). Measured on stories260K, whose logits reach ~20:
 * - `same`, 0 (bitwise): one computation done twice on one backend (in place vs replacement,
 *   interleaved vs alone, readers vs writers, a retry after a rollback, the same seed). Measured 0
 *   on all three backends; a GPU backend with non-deterministic reductions would set it.
 * - `nativeVsJs`, 1e-3: a backend's native affine path vs core's `applyAffine` in a JS hook on the
 *   same backend. Measured <= 1.3e-5 (rank-1 edits; float32 summation order).
 * - `reference`, 0.05: another backend on the same model ({@link referenceCheck}). llama.cpp keeps
 *   its KV cache in F16: measured 0.008 over these 4 steps (0.02 over 64 in test/parity); the ONNX
 *   conversion is float32 throughout and is held to 1e-3 in its test (measured 1e-5).
 */
import * as v from "valibot";
import type { AffineEdit, Model, ModelInfo, ResidualHooks, Sequence, SequenceOptions } from "../core/backend.ts";
import { applyAffine } from "../core/chain.ts";
import { PluginError, SteerkitError } from "../core/errors.ts";
import { generate, stream, type GenerateOptions } from "../core/generate.ts";
import { definePlugin, type AffineForm, type ConfiguredPlugin, type PluginHooks } from "../core/plugin.ts";
import { PositionsOption, resolvePositions, type PositionsSpec } from "../core/points.ts";
import { allPoints, parsePoint, pointIndex, pointName } from "../core/sites.ts";

export interface Tolerances {
  /** The same computation twice on one backend. */
  readonly same: number;
  /** Native affine edits vs the same edits in JS, on one backend. */
  readonly nativeVsJs: number;
  /** This backend vs a reference backend on the same model. */
  readonly reference: number;
}

export const DEFAULT_TOLERANCES: Tolerances = { same: 0, nativeVsJs: 1e-3, reference: 0.05 };

export interface ConformanceOptions {
  /** Prompt token ids (at least 4). Default: the model's tokens of "Once upon a time" with BOS. */
  readonly prompt?: readonly number[];
  readonly tolerance?: Partial<Tolerances>;
}

export interface ConformanceCheck {
  readonly name: string;
  /** Open a fresh model with `open` (this check disposes it), check it, throw an Error naming what differed. */
  run(open: () => Promise<Model>, options?: ConformanceOptions): Promise<void>;
}

/** Tokens each generation produces: enough to decode three times after the prefill, short enough to stay fast. */
const STEPS = 4;

// ---- runs ------------------------------------------------------------------------------------

interface Setup {
  readonly model: Model;
  readonly info: ModelInfo;
  readonly prompt: readonly number[];
  readonly tol: Tolerances;
}

interface Run {
  readonly tokens: number[];
  /** Logits each token was sampled from (index 0: after the prefill). */
  readonly logits: Float32Array[];
}

function check(name: string, body: (s: Setup) => Promise<void>): ConformanceCheck {
  return {
    name,
    async run(open, options = {}) {
      const model = await open();
      try {
        const prompt = options.prompt ?? model.tokenize("Once upon a time", { addBos: true });
        if (prompt.length < 4) throw new Error(`conformance: the prompt needs at least 4 tokens, got ${prompt.length}`);
        if (model.info.nLayers < 2) throw new Error(`conformance: the model needs at least 2 layers, got ${model.info.nLayers}`);
        await body({ model, info: model.info, prompt, tol: { ...DEFAULT_TOLERANCES, ...options.tolerance } });
      } finally {
        model.dispose();
      }
    },
  };
}

/** Generate STEPS greedy tokens (EOS ignored, so every run has the same length) and keep each step's logits. */
async function greedy(s: Setup, plugins: readonly ConfiguredPlugin[], extra: Partial<GenerateOptions> = {}, model: Model = s.model): Promise<Run> {
  const logits: Float32Array[] = [];
  const result = await generate(model, {
    tokens: s.prompt,
    maxTokens: STEPS,
    temperature: 0,
    ignoreEos: true,
    seed: 0,
    ...extra,
    plugins: [...plugins, captureLogits(logits)],
  });
  return { tokens: result.tokens, logits };
}

function captureLogits(into: Float32Array[]): ConfiguredPlugin {
  return plugin("steerkit-conformance-logits", ["logits:read"], () => ({ onLogits: (l) => void into.push(new Float32Array(l)) }), "post");
}

/** A plugin whose hooks close over test state (options-free, so every call makes a fresh one). */
function plugin(name: string, needs: ConfiguredPlugin["needs"], create: (info: ModelInfo, promptTokens: readonly number[]) => PluginHooks, enforce?: "pre" | "post"): ConfiguredPlugin {
  return definePlugin({ name, options: v.object({}), needs, enforce, create: (_o, ctx) => create(ctx.model, ctx.promptTokens) })({});
}

// ---- comparisons -----------------------------------------------------------------------------

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): { diff: number; at: number } {
  let diff = a.length === b.length ? 0 : Infinity;
  let at = -1;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= diff)) {
      diff = d; // NaN sticks as the worst difference
      at = i;
      if (Number.isNaN(d)) break;
    }
  }
  return { diff, at };
}

/** Throw when two runs chose different tokens, or when any step's logits differ by more than `tol`. */
function sameRuns(what: string, a: Run, b: Run, tol: number, names: [string, string]): void {
  if (a.tokens.join() !== b.tokens.join()) throw new Error(`${what}: ${names[0]} generated [${a.tokens}], ${names[1]} [${b.tokens}]`);
  for (let step = 0; step < a.logits.length; step++) {
    const { diff, at } = maxDiff(a.logits[step]!, b.logits[step]!);
    if (diff > tol || Number.isNaN(diff)) {
      throw new Error(
        `${what}: logits of step ${step} differ by ${diff} (tolerance ${tol}) at token ${at}: ${names[0]} ${a.logits[step]![at]}, ${names[1]} ${b.logits[step]![at]}`,
      );
    }
  }
}

/** Throw unless `a` differs from `b` by more than `min` somewhere: an edit that changes nothing proves nothing. */
function differentRuns(what: string, a: Run, b: Run, min: number): void {
  const worst = Math.max(...a.logits.map((l, i) => maxDiff(l, b.logits[i]!).diff));
  if (!(worst > min)) throw new Error(`${what}: expected the logits to change by more than ${min}, largest change ${worst}`);
}

/** Smallest change an edit must make for a comparison built on it to mean something. */
const EFFECT = 0.05;

// ---- plugins the checks use ------------------------------------------------------------------

/** A deterministic pseudo-random vector in [-1, 1) (xorshift32), scaled to norm `length`. */
export function testVector(seed: number, n: number, length = 1): Float32Array {
  let x = seed >>> 0 || 1;
  const out = new Float32Array(n);
  let ss = 0;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x / 2 ** 31 - 1;
    ss += out[i]! * out[i]!;
  }
  const k = length / Math.sqrt(ss);
  for (let i = 0; i < n; i++) out[i] = out[i]! * k;
  return out;
}

/** Points spread over the model: embeddings, an early mid and post (a control vector on llama.cpp), and the last block's output. */
function spreadPoints(nLayers: number): string[] {
  return [...new Set(["resid_pre.0", "resid_mid.1", "resid_post.1", `resid_mid.${nLayers - 1}`, `resid_post.${nLayers - 1}`])];
}

/**
 * An affine edit `h + (hU)V + c` that declares its affine form (a backend may run it natively)
 * and applies it in JS with core's `applyAffine` (what `fastPath: false` runs).
 */
const affineEdit = definePlugin({
  name: "steerkit-conformance-affine",
  options: v.object({ rank: v.picklist([0, 1]), seed: v.number(), scale: v.number(), points: v.array(v.string()), positions: PositionsOption() }),
  needs: ["residual:write"],
  create(o, { model, promptTokens }) {
    const d = model.dModel;
    const U = o.rank ? testVector(o.seed + 1, d) : null;
    const V = o.rank ? testVector(o.seed + 2, d, 0.5) : null;
    const c = testVector(o.seed, d, o.scale);
    const form: AffineForm = { rank: o.rank, U, V, c, positions: o.positions };
    const points = o.points.map(parsePoint);
    const edit = { point: points[0]!, rank: o.rank, U, V, c, positions: resolvePositions(o.positions as PositionsSpec, promptTokens.length) };
    const scratch = new Float64Array(1);
    return {
      points,
      onResidual: (x, ctx) => applyAffine(edit, x, scratch, ctx.positions),
      affine: () => form,
    };
  },
});

/** A non-affine edit (JS only): `x += tanh(x) * w`, in place or as a returned replacement. */
const jsEdit = definePlugin({
  name: "steerkit-conformance-js",
  options: v.object({ seed: v.number(), points: v.array(v.string()), replace: v.optional(v.boolean(), false) }),
  needs: ["residual:write"],
  create(o, { model }) {
    const d = model.dModel;
    const w = testVector(o.seed, d, Math.sqrt(d) * 0.5);
    const f = (x: number, i: number) => x + Math.tanh(x) * w[i % d]!;
    return {
      points: o.points.map(parsePoint),
      onResidual(x) {
        if (o.replace) return { data: Float32Array.from(x.data, f), dims: [...x.dims] };
        for (let i = 0; i < x.data.length; i++) x.data[i] = f(x.data[i]!, i);
      },
    };
  },
});

interface Call {
  readonly phase: "prefill" | "decode";
  readonly step: number;
  readonly index: number;
  readonly positions: number[];
  readonly tokens: number[];
  readonly values: Float32Array;
}

/** Record every call at every point: a reader (`residual:read`) or a writer that edits nothing. */
function recorder(into: Call[], as: "reader" | "writer", enforce?: "pre" | "post"): ConfiguredPlugin {
  return plugin(`steerkit-conformance-${as}`, [as === "reader" ? "residual:read" : "residual:write"], (info) => ({
    points: allPoints(info.nLayers),
    onResidual(x, ctx) {
      const rows = ctx.positions.length;
      if (x.dims.length !== 2 || x.dims[0] !== rows || x.dims[1] !== info.dModel || x.data.length !== rows * info.dModel || ctx.tokens.length !== rows) {
        throw new Error(`${pointName(ctx.point)}: got a [${x.dims}] residual of ${x.data.length} values with ${rows} positions and ${ctx.tokens.length} token ids; expected [${rows}, ${info.dModel}]`);
      }
      const bad = x.data.findIndex((e) => !Number.isFinite(e));
      if (bad >= 0) throw new Error(`${pointName(ctx.point)}: value ${bad} of the residual is ${x.data[bad]}`);
      into.push({ phase: ctx.phase, step: ctx.step, index: pointIndex(ctx.point, info.nLayers), positions: Array.from(ctx.positions), tokens: Array.from(ctx.tokens), values: new Float32Array(x.data) });
    },
  }), enforce);
}

// ---- the checks ------------------------------------------------------------------------------

const hookPoints = check("every point is reached on prefill and decode, with the rows' positions and token ids", async (s) => {
  const { info, prompt } = s;
  const n = prompt.length;
  const last = 2 * info.nLayers;
  for (const as of ["writer", "reader"] as const) {
    const calls: Call[] = [];
    const run = await greedy(s, [recorder(calls, as)]);
    const fed = [...prompt, ...run.tokens];
    for (let step = 0; step < STEPS; step++) {
      const phase = step === 0 ? "prefill" : "decode";
      const from = step === 0 ? 0 : n + step - 1;
      const to = n + step;
      const here = calls.filter((c) => c.step === step && c.phase === phase);
      for (let index = 0; index <= last; index++) {
        const at = here.filter((c) => c.index === index);
        const where = `${as} at ${pointName(allPoints(info.nLayers)[index]!)}, ${phase} step ${step}`;
        const positions = at.flatMap((c) => c.positions);
        const tokens = at.flatMap((c) => c.tokens);
        // The last block may compute only the rows that produce logits (llama.cpp does): a suffix of the chunk.
        const lastBlock = index >= last - 1;
        const first = lastBlock && positions.length > 0 ? Math.max(from, to - positions.length) : from;
        const want = Array.from({ length: to - first }, (_, i) => first + i);
        if (positions.join() !== want.join()) throw new Error(`${where}: rows at positions [${positions}], expected [${want}]${lastBlock ? " (or a suffix of it)" : ""}`);
        const wantTokens = want.map((p) => fed[p]!);
        if (tokens.join() !== wantTokens.join()) throw new Error(`${where}: token ids [${tokens}], expected [${wantTokens}]`);
      }
      // A writer's edits feed later points, so a backend must run them in forward order.
      if (as === "writer") {
        const firstCall = (index: number) => here.findIndex((c) => c.index === index);
        for (let index = 1; index <= last; index++) {
          if (firstCall(index) < firstCall(index - 1)) throw new Error(`writer, ${phase} step ${step}: point ${pointName(allPoints(info.nLayers)[index]!)} ran before ${pointName(allPoints(info.nLayers)[index - 1]!)}`);
        }
      }
    }
  }
});

const inPlaceVsReplacement = check("an edit in place equals the same edit returned as a replacement", async (s) => {
  const points = allPoints(s.info.nLayers).map(pointName);
  const plain = await greedy(s, []);
  const inPlace = await greedy(s, [jsEdit({ seed: 3, points })]);
  const replaced = await greedy(s, [jsEdit({ seed: 3, points, replace: true })]);
  differentRuns("the in-place edit", inPlace, plain, EFFECT);
  sameRuns("in place vs replacement", inPlace, replaced, s.tol.same, ["in place", "replacement"]);
});

const affineNativeVsJs = check("affine edits: the native path (fastPath) equals the JS path, additive, rank-1 and position-limited", async (s) => {
  const { info, prompt } = s;
  const points = spreadPoints(info.nLayers);
  const plain = await greedy(s, []);
  const cases: [string, v.InferInput<typeof affineEdit.schema>][] = [
    ["additive", { rank: 0, seed: 11, scale: 4, points }],
    ["rank-1", { rank: 1, seed: 21, scale: 1, points }],
    ["positions 2..prompt end+1", { rank: 1, seed: 31, scale: 4, points, positions: { from: 2, to: prompt.length + 1 } }],
    ["generated positions", { rank: 0, seed: 41, scale: 4, points, positions: "generated" }],
    ["prompt positions", { rank: 0, seed: 51, scale: 4, points, positions: "prompt" }],
  ];
  for (const [name, options] of cases) {
    const native = await greedy(s, [affineEdit(options)], { fastPath: true });
    const js = await greedy(s, [affineEdit(options)], { fastPath: false });
    differentRuns(`${name} edit`, js, plain, EFFECT);
    sameRuns(`${name} edit`, native, js, s.tol.nativeVsJs, ["native", "JS"]);
    if (options.positions === "generated") {
      // The prefill computes prompt rows only: an edit of generated rows must leave its logits alone.
      const { diff } = maxDiff(native.logits[0]!, plain.logits[0]!);
      if (diff > s.tol.nativeVsJs) throw new Error(`generated positions edit: changed the prefill's logits by ${diff}, though every prefill row is a prompt row`);
    }
  }
});

const readOnly = check("read-only plugins see what writers see and change nothing", async (s) => {
  const steer = () => affineEdit({ rank: 0, seed: 61, scale: 4, points: ["resid_post.1"] });
  const asReader: Call[] = [];
  const asWriter: Call[] = [];
  const read = await greedy(s, [steer(), recorder(asReader, "reader")]);
  const written = await greedy(s, [steer(), recorder(asWriter, "writer")]);
  sameRuns("logits with a reader vs with a writer that edits nothing", read, written, s.tol.same, ["reader", "writer"]);
  const key = (c: Call) => `${c.phase}/${c.step}/${c.index}/${c.positions}`;
  const byKey = new Map(asWriter.map((c) => [key(c), c]));
  if (asReader.length !== asWriter.length) throw new Error(`the reader was called ${asReader.length} times, the writer ${asWriter.length}`);
  for (const r of asReader) {
    const w = byKey.get(key(r));
    const where = `${pointName(allPoints(s.info.nLayers)[r.index]!)} (${r.phase} step ${r.step}, positions ${r.positions})`;
    if (!w) throw new Error(`the reader saw ${where}, the writer did not`);
    const { diff, at } = maxDiff(r.values, w.values);
    if (diff > s.tol.same || Number.isNaN(diff)) throw new Error(`at ${where} the reader saw ${r.values[at]} at value ${at}, the writer ${w.values[at]} (tolerance ${s.tol.same})`);
  }
  const plain = await greedy(s, []);
  const onlyReader = await greedy(s, [recorder([], "reader")]);
  sameRuns("a reader alone vs no plugin", onlyReader, plain, s.tol.same, ["reader", "no plugin"]);
});

/** The model with every sequence it creates tracked, to see that core's request lifecycle frees them. */
function tracked(model: Model): { model: Model; live: Set<Sequence>; freed: Sequence[]; allFreed(): Promise<void> } {
  const live = new Set<Sequence>();
  const freed: Sequence[] = [];
  const waiters: (() => void)[] = [];
  const wrapper: Model = {
    info: model.info,
    capabilities: model.capabilities,
    tokenize: (t, o) => model.tokenize(t, o),
    detokenize: (t) => model.detokenize(t),
    applyChatTemplate: (m, o) => model.applyChatTemplate(m, o),
    dispose: () => model.dispose(),
    createSequence(o?: SequenceOptions) {
      const seq = model.createSequence(o);
      live.add(seq);
      return {
        id: seq.id,
        get length() {
          return seq.length;
        },
        prefill: (t) => seq.prefill(t),
        decode: (t) => seq.decode(t),
        reset: () => seq.reset(),
        free() {
          seq.free();
          if (live.delete(seq)) freed.push(seq);
          if (live.size === 0) for (const w of waiters.splice(0)) w();
        },
      };
    },
  };
  // Resolves once no sequence is alive (a cancelled stream frees its sequence when its pass ends).
  const allFreed = () => (live.size === 0 ? Promise.resolve() : new Promise<void>((resolve) => void waiters.push(resolve)));
  return { model: wrapper, live, freed, allFreed };
}

/** A plugin that calls `act` once, at the first point of the given step. */
function atStep(name: string, step: number, act: () => void): ConfiguredPlugin {
  return plugin(name, ["residual:read"], (info) => ({
    points: [{ site: "resid_mid", layer: info.nLayers - 1 }],
    onResidual(_x, ctx) {
      if (ctx.step === step) act();
    },
  }));
}

const abort = check("abort rejects with the signal's reason, frees the sequence, and the model keeps serving", async (s) => {
  const t = tracked(s.model);
  const baseline = await greedy(s, [], {}, t.model);
  for (const step of [0, 2]) {
    const controller = new AbortController();
    const reason = new Error(`conformance abort at step ${step}`);
    const run = greedy(s, [atStep("steerkit-conformance-abort", step, () => controller.abort(reason))], { signal: controller.signal }, t.model);
    const error = await run.then(() => null, (e: unknown) => e);
    if (error !== reason) throw new Error(`aborting at step ${step}: expected a rejection with the signal's reason, got ${error === null ? "a result" : String(error)}`);
  }
  // A cancelled stream aborts too.
  const events = stream(t.model, { tokens: s.prompt, maxTokens: STEPS, temperature: 0, ignoreEos: true });
  const reader = events.getReader();
  const first = await reader.read();
  if (first.value?.type !== "token") throw new Error(`a stream's first event is ${JSON.stringify(first.value)}, expected a token`);
  await reader.cancel();
  await t.allFreed(); // hangs (until the runner's timeout) if the cancelled generation never frees its sequence
  if (t.live.size > 0) throw new Error(`${t.live.size} sequence(s) still alive after aborted requests; ${t.freed.length} were freed`);
  for (const seq of t.freed) {
    const after = await seq.prefill(s.prompt).then(() => "resolved", () => "rejected");
    if (after !== "rejected") throw new Error(`sequence ${seq.id} was freed but prefill still ${after}`);
    seq.free(); // idempotent
  }
  sameRuns("after aborted requests", await greedy(s, [], {}, t.model), baseline, s.tol.same, ["after", "before"]);
});

/** How long a cancelled request may take to end while its middleware hangs (generous for a busy CI machine). */
const PROMPT_END_MS = 2000;

const hungMiddleware = check("a hung async onToken or onRequest does not keep a cancelled request alive: it ends promptly and frees its sequence", async (s) => {
  const t = tracked(s.model);
  const baseline = await greedy(s, [], {}, t.model);
  const never = new Promise<void>(() => {});
  const cases: [string, PluginHooks][] = [
    ["onToken", { onToken: (ctx, next) => (ctx.step === 2 ? never : next()) }],
    ["onRequest before next", { onRequest: () => never }],
    ["onRequest after next", { onRequest: async (_ctx, next) => { await next(); await never; } }],
  ];
  for (const [where, hooks] of cases) {
    const controller = new AbortController();
    const reason = new Error(`conformance cancel with a hung ${where}`);
    const hung = plugin("steerkit-conformance-hung", [], () => hooks);
    const run = greedy(s, [hung], { signal: controller.signal }, t.model).then(() => null, (e: unknown) => e);
    setTimeout(() => controller.abort(reason), 50);
    const started = performance.now();
    const outcome = await Promise.race([run, new Promise((resolve) => setTimeout(() => resolve("still running"), PROMPT_END_MS + 50))]);
    const ms = performance.now() - started;
    if (outcome !== reason) throw new Error(`a hung ${where}, cancelled: expected a rejection with the signal's reason within ${PROMPT_END_MS} ms, got ${outcome === null ? "a result" : String(outcome)} after ${ms.toFixed(0)} ms`);
    if (t.live.size > 0) throw new Error(`a hung ${where}, cancelled: ${t.live.size} sequence(s) still alive`);
  }
  // A cancelled stream ends the same way, and a middleware that calls next() after the cancel finds nothing to run.
  let release!: () => void;
  let entered!: () => void;
  const late = new Promise<void>((resolve) => (release = resolve));
  const waiting = new Promise<void>((resolve) => (entered = resolve));
  let lateNext: Promise<unknown> | null = null;
  const slow = plugin("steerkit-conformance-slow", [], () => ({
    onToken: async (ctx, next) => {
      if (ctx.step === 2) {
        entered();
        await late;
        lateNext = next().then(() => "ok", (e: unknown) => e);
      } else await next();
    },
  }));
  const reader = stream(t.model, { tokens: s.prompt, maxTokens: STEPS, temperature: 0, ignoreEos: true, plugins: [slow] }).getReader();
  void reader.read();
  await waiting;
  await reader.cancel();
  const freed = await Promise.race([t.allFreed().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), PROMPT_END_MS))]);
  if (!freed) throw new Error(`a cancelled stream whose onToken hangs: ${t.live.size} sequence(s) still alive after ${PROMPT_END_MS} ms`);
  release();
  await new Promise((resolve) => setTimeout(resolve, 10));
  if (lateNext === null) throw new Error("the slow middleware never got past its wait, so this check proves nothing");
  const after = await (lateNext as Promise<unknown>);
  if (after !== "ok") throw new Error(`next() called after the cancel: expected it to do nothing, it gave ${String(after)}`);
  sameRuns("after cancelled requests with hung middleware", await greedy(s, [], {}, t.model), baseline, s.tol.same, ["after", "before"]);
});

const concurrent = check("two concurrent sequences with different chains do not leak into each other", async (s) => {
  const L = s.info.nLayers;
  const order: string[] = [];
  const chainA = () => [affineEdit({ rank: 0, seed: 71, scale: 4, points: ["resid_post.1"] }), jsEdit({ seed: 72, points: ["resid_mid.0"] }), atEveryStep("a", order)];
  const chainB = () => [affineEdit({ rank: 1, seed: 81, scale: 1, points: [`resid_mid.${L - 1}`] }), jsEdit({ seed: 82, points: [`resid_post.${L - 1}`, "resid_pre.0"] }), atEveryStep("b", order)];
  const a = await greedy(s, chainA());
  const b = await greedy(s, chainB());
  differentRuns("chain A vs chain B", a, b, EFFECT);
  order.length = 0;
  const [a2, b2] = await Promise.all([greedy(s, chainA()), greedy(s, chainB())]);
  const switches = order.filter((x, i) => i > 0 && x !== order[i - 1]).length;
  if (switches < 2) throw new Error(`the two generations did not interleave (steps ran in the order ${order.join("")}), so this check proves nothing`);
  sameRuns("chain A, interleaved vs alone", a2!, a, s.tol.same, ["interleaved", "alone"]);
  sameRuns("chain B, interleaved vs alone", b2!, b, s.tol.same, ["interleaved", "alone"]);
});

/** Log `label` once per forward pass (at the embeddings), to see how two requests interleave. */
function atEveryStep(label: string, order: string[]): ConfiguredPlugin {
  return plugin(`steerkit-conformance-order-${label}`, ["residual:read"], () => ({
    points: [{ site: "resid_pre", layer: 0 }],
    onResidual: () => void order.push(label),
  }));
}

const seeded = check("the same seed gives the same tokens with temperature > 0", async (s) => {
  const steer = () => [affineEdit({ rank: 1, seed: 91, scale: 2, points: ["resid_post.1"] }), jsEdit({ seed: 92, points: ["resid_mid.0"] })];
  const sample = { temperature: 1.5, topK: 0, topP: 1, minP: 0, seed: 1234, maxTokens: 8 };
  const first = await greedy(s, steer(), sample);
  const second = await greedy(s, steer(), sample);
  sameRuns("two runs with seed 1234", first, second, s.tol.same, ["first", "second"]);
});

const hookErrors = check("a hook error is a PluginError naming the plugin; the sequence rolls back and the model keeps serving", async (s) => {
  const t = tracked(s.model);
  const baseline = await greedy(s, [], {}, t.model);
  for (const step of [0, 2]) {
    const failing = atStep("steerkit-conformance-failing", step, () => {
      throw new Error(`planned failure at step ${step}`);
    });
    const error = await greedy(s, [failing], {}, t.model).then(() => null, (e: unknown) => e);
    if (!(error instanceof PluginError) || error.plugin !== "steerkit-conformance-failing" || error.code !== "PLUGIN_FAILED" || !error.message.includes(`planned failure at step ${step}`)) {
      throw new Error(`a hook failing at step ${step}: expected a PluginError naming "steerkit-conformance-failing", got ${error === null ? "a result" : String(error)}`);
    }
  }
  if (t.live.size > 0) throw new Error(`${t.live.size} sequence(s) still alive after failed requests`);
  sameRuns("after failed requests", await greedy(s, [], {}, t.model), baseline, s.tol.same, ["after", "before"]);

  // The failed call must leave the sequence as it was: once its owner clears the error, the retry
  // computes what a sequence that never failed computes. Hand-built hooks, because a compiled
  // chain's error is final (core ends the request).
  const next = baseline.tokens[0]!;
  const good = flakyHooks(s.info);
  const bad = flakyHooks(s.info);
  const seqGood = s.model.createSequence({ hooks: good });
  const seqBad = s.model.createSequence({ hooks: bad });
  try {
    await seqGood.prefill(s.prompt);
    const expected = new Float32Array(await seqGood.decode(next));
    await seqBad.prefill(s.prompt);
    bad.fail = true;
    await seqBad.decode(next).catch(() => {}); // a backend may throw the hook's error or leave it to its caller
    bad.fail = false;
    if (bad.error?.message !== "flaky") throw new Error(`after a hook failed, hooks.error is ${String(bad.error)}`);
    if (seqBad.length !== s.prompt.length) throw new Error(`a decode whose hook failed left the sequence at length ${seqBad.length}, expected ${s.prompt.length} (rolled back)`);
    bad.error = null;
    const { diff, at } = maxDiff(await seqBad.decode(next), expected);
    if (diff > s.tol.same || Number.isNaN(diff)) throw new Error(`decoding again after a failed decode: logits differ by ${diff} at token ${at} from a sequence that never failed (tolerance ${s.tol.same})`);
  } finally {
    seqGood.free();
    seqBad.free();
  }
});

/** ResidualHooks that fail on demand at an early and at the last block, and whose error can be cleared. */
function flakyHooks(info: ModelInfo): ResidualHooks & { fail: boolean; error: Error | null } {
  const hooks: ResidualHooks & { fail: boolean; error: Error | null } = {
    points: [{ site: "resid_mid", layer: 1 }, { site: "resid_post", layer: info.nLayers - 1 }],
    affine: new Map(),
    writes: true,
    readOnly: new Set(),
    fail: false,
    error: null,
    run(_point, x) {
      if (hooks.fail) hooks.error ??= new Error("flaky");
      return x;
    },
  };
  return hooks;
}

async function rejection(p: () => Promise<unknown>): Promise<unknown> {
  try {
    await p();
  } catch (e) {
    return e;
  }
  return null;
}

function expectCode(what: string, error: unknown, code: string): void {
  if (!(error instanceof SteerkitError) || error.code !== code) throw new Error(`${what}: expected a SteerkitError with code ${code}, got ${error === null ? "success" : String(error)}`);
}

const badInput = check("bad token ids are INVALID_REQUEST and past the context CONTEXT_OVERFLOW; the sequence stays usable", async (s) => {
  const { model, info, prompt } = s;
  const n = prompt.length;
  const seq = model.createSequence();
  try {
    expectCode("prefill([])", await rejection(() => seq.prefill([])), "INVALID_REQUEST");
    expectCode(`a token id of ${info.vocabSize}`, await rejection(() => seq.prefill([prompt[0]!, info.vocabSize])), "INVALID_REQUEST");
    expectCode("a token id of -1", await rejection(() => seq.decode(-1)), "INVALID_REQUEST");
    expectCode("a token id of 1.5", await rejection(() => seq.decode(1.5)), "INVALID_REQUEST");
    expectCode(`${info.contextLength + 1} tokens`, await rejection(() => seq.prefill(new Array(info.contextLength + 1).fill(prompt[1]!))), "CONTEXT_OVERFLOW");
    if (seq.length !== 0) throw new Error(`refused prefills left the sequence at length ${seq.length}, expected 0`);
    const expected = new Float32Array(await seq.prefill(prompt));
    expectCode(`${n} cached + ${info.contextLength - n + 1} new tokens`, await rejection(() => seq.prefill(new Array(info.contextLength - n + 1).fill(prompt[1]!))), "CONTEXT_OVERFLOW");
    if (seq.length !== n) throw new Error(`a refused prefill changed the sequence's length from ${n} to ${seq.length}`);
    seq.reset();
    const again = await seq.prefill(prompt);
    const { diff } = maxDiff(again, expected);
    if (diff > s.tol.same) throw new Error(`after reset, the same prompt gave logits ${diff} away from the first time`);
  } finally {
    seq.free();
  }
  expectCode("generate with a prompt as long as the context", await rejection(() => generate(model, { tokens: new Array(info.contextLength).fill(prompt[1]!), maxTokens: 1 })), "CONTEXT_OVERFLOW");
  // The context fills up during generation: generation stops there, it does not fail.
  const long = Array.from({ length: info.contextLength - 2 }, (_, i) => prompt[i % n]!);
  const result = await generate(model, { tokens: long, maxTokens: 8, temperature: 0, ignoreEos: true });
  if (result.finishReason !== "context" || result.tokens.length !== 2) {
    throw new Error(`a prompt 2 tokens short of the context: expected 2 tokens and finishReason "context", got ${result.tokens.length} and "${result.finishReason}"`);
  }
});

const badEdits = check("malformed affine edits are refused with PLUGIN_FAILED before they reach the forward pass", async (s) => {
  const d = s.info.dModel;
  const point = { site: "resid_post", layer: 1 } as const;
  const nan = new Float32Array(d);
  nan[3] = Number.NaN;
  const edits: [string, AffineEdit][] = [
    ["a NaN in c", { point, rank: 0, U: null, V: null, c: nan }],
    ["V of the wrong size", { point, rank: 1, U: new Float32Array(d), V: new Float32Array(d - 1), c: null }],
  ];
  for (const [what, edit] of edits) {
    const hooks: ResidualHooks = { points: [point], affine: new Map([["resid_post.1", edit]]), writes: true, readOnly: new Set(), error: null, run: (_p, x) => x };
    // Refused when the sequence is created or at its first prefill: either is before any row is computed with it.
    const error = await rejection(async () => {
      const seq = s.model.createSequence({ hooks });
      try {
        await seq.prefill(s.prompt);
      } finally {
        seq.free();
      }
    });
    expectCode(`an affine edit with ${what}`, error, "PLUGIN_FAILED");
  }
});

/** Every check, in a useful order (the basic ones first). */
export const conformanceChecks: readonly ConformanceCheck[] = [hookPoints, badInput, inPlaceVsReplacement, affineNativeVsJs, readOnly, abort, hungMiddleware, concurrent, seeded, hookErrors, badEdits];

/**
 * A further check for a backend that runs a model another backend also runs (a llama GGUF on the
 * reference backend, say): the same greedy tokens, and logits within `tolerance.reference`,
 * unsteered and with an affine and a JS edit.
 */
export function referenceCheck(openReference: () => Promise<Model>): ConformanceCheck {
  return check("agrees with the reference backend, unsteered and steered", async (s) => {
    const reference = await openReference();
    try {
      const chains: [string, ConfiguredPlugin[]][] = [
        ["unsteered", []],
        ["steered", [affineEdit({ rank: 1, seed: 101, scale: 4, points: spreadPoints(s.info.nLayers) }), jsEdit({ seed: 102, points: ["resid_mid.1"] })]],
      ];
      for (const [name, plugins] of chains) {
        const ours = await greedy(s, plugins);
        const theirs = await greedy(s, plugins, {}, reference);
        sameRuns(`${name}, vs ${reference.info.backend}`, ours, theirs, s.tol.reference, [s.info.backend, reference.info.backend]);
      }
    } finally {
      reference.dispose();
    }
  });
}
