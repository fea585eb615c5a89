/**
 * steerkit/testing: what a plugin author needs to test a plugin without a native backend.
 *
 * - `referenceLlama`: a deterministic pure-TypeScript llama backend (same math as llama.cpp, every
 *   hook point, affine edits applied natively in TS), and `loadTestModel()` to open the embedded
 *   stories260K model with it.
 * - `runPlugin`: run plugins over a few greedy steps and get back the result and a trace of every
 *   residual (before and after the chain) and every logits vector (before and after).
 * - `checkAffine`: check that a plugin's declared affine form gives the same logits as its JS hook.
 * - `conformanceChecks`: what a backend author runs against their `Model` (conformance.ts).
 */
import type { Model } from "../core/backend.ts";
import { generate, type GenerateOptions, type GenerationResult } from "../core/generate.ts";
import { definePlugin } from "../core/plugin.ts";
import type { ChainPlugin } from "../core/chain.ts";
import { allPoints, pointName } from "../core/sites.ts";
import { DEFAULT_MODEL_PATH } from "../default-model.ts";
import { referenceLlama } from "./reference-llama.ts";
import * as v from "valibot";

export { referenceLlama, DEFAULT_MODEL_PATH };

let cached: Promise<Model> | undefined;

/** The embedded stories260K model on the reference backend (opened once per process). */
export function loadTestModel(): Promise<Model> {
  return (cached ??= referenceLlama.load(DEFAULT_MODEL_PATH));
}

export interface ResidualTrace {
  readonly step: number;
  readonly phase: "prefill" | "decode";
  /** Canonical point name, e.g. "resid_post.2". */
  readonly point: string;
  readonly positions: number[];
  /** `[rows, dModel]` copies, before the first and after the last plugin at this point. */
  readonly before: Float32Array;
  readonly after: Float32Array;
}

export interface LogitsTrace {
  readonly step: number;
  readonly before: Float32Array;
  readonly after: Float32Array;
}

export interface PluginRun {
  readonly result: GenerationResult;
  readonly residuals: ResidualTrace[];
  readonly logits: LogitsTrace[];
  /** Residual traces where the chain changed something. */
  readonly changed: ResidualTrace[];
}

export interface RunPluginOptions extends Omit<GenerateOptions, "plugins"> {
  /** Model to run on (default: `loadTestModel()`). */
  readonly model?: Model;
}

/**
 * Run `plugins` (one or a chain) greedily for a few steps (default: 4 tokens of "Once upon a time")
 * and record what they did at every point of the model.
 * @example
 * ```ts
 * const run = await runPlugin(clampNorm({ layer: 2, maxNorm: 5 }), { maxTokens: 4 });
 * expect(run.changed.every((t) => t.point === "resid_post.2")).toBe(true);
 * ```
 */
export async function runPlugin(plugins: ChainPlugin | readonly ChainPlugin[], options: RunPluginOptions = {}): Promise<PluginRun> {
  const { model: given, ...rest } = options;
  const model = given ?? (await loadTestModel());
  const chain: readonly ChainPlugin[] = Array.isArray(plugins) ? plugins : [plugins as ChainPlugin];
  const residuals: ResidualTrace[] = [];
  const logits: LogitsTrace[] = [];
  const pending = new Map<string, Omit<ResidualTrace, "after">>();
  let pendingLogits: Float32Array | null = null;

  // Two probes around the chain: `pre` and registered first, `post` and registered last, so they
  // see the residual before every plugin and after every plugin, whatever the plugins' enforce.
  const before = definePlugin({
    name: "steerkit-testing-before",
    enforce: "pre",
    options: v.object({}),
    needs: ["residual:read", "logits:read"],
    create: ({}, { model: info }) => ({
      points: allPoints(info.nLayers),
      onResidual(x, ctx) {
        const key = pointName(ctx.point);
        pending.set(key, { step: ctx.step, phase: ctx.phase, point: key, positions: Array.from(ctx.positions), before: new Float32Array(x.data) });
      },
      onLogits(l) {
        pendingLogits = new Float32Array(l);
      },
    }),
  });
  const after = definePlugin({
    name: "steerkit-testing-after",
    enforce: "post",
    options: v.object({}),
    needs: ["residual:read", "logits:read"],
    create: ({}, { model: info }) => ({
      points: allPoints(info.nLayers),
      onResidual(x, ctx) {
        const b = pending.get(pointName(ctx.point))!;
        residuals.push({ ...b, after: new Float32Array(x.data) });
      },
      onLogits(l, ctx) {
        logits.push({ step: ctx.step, before: pendingLogits!, after: new Float32Array(l) });
      },
    }),
  });

  const result = await generate(model, {
    prompt: "Once upon a time",
    maxTokens: 4,
    temperature: 0,
    seed: 0,
    ...rest,
    plugins: [before({}), ...chain, after({})],
  });
  const changed = residuals.filter((r) => r.before.some((x, i) => x !== r.after[i]));
  return { result, residuals, logits, changed };
}

export interface AffineCheck {
  /** Largest absolute logit difference between the native affine path and the JS path. */
  readonly maxAbsDiff: number;
  readonly fast: GenerationResult;
  readonly js: GenerationResult;
}

/**
 * Run the same chain through the backend's native affine path and through JS hooks, and compare
 * the last logits. A plugin's `affine` must match its `onResidual`; this shows whether it does.
 * @example
 * ```ts
 * const check = await checkAffine(addVector({ points: ["resid_post.2"], vector, positions: "generated" }));
 * expect(check.maxAbsDiff).toBeLessThan(1e-4);
 * expect(check.fast.tokens).toEqual(check.js.tokens);
 * ```
 */
export async function checkAffine(plugins: ChainPlugin | readonly ChainPlugin[], options: RunPluginOptions = {}): Promise<AffineCheck> {
  const { model: given, ...rest } = options;
  const model = given ?? (await loadTestModel());
  const chain: readonly ChainPlugin[] = Array.isArray(plugins) ? plugins : [plugins as ChainPlugin];
  let last: Float32Array | null = null;
  const capture = definePlugin({
    name: "steerkit-testing-logits",
    enforce: "post",
    options: v.object({}),
    needs: ["logits:read"],
    create: () => ({ onLogits: (l) => void (last = new Float32Array(l)) }),
  });
  const run = async (fastPath: boolean) => {
    const result = await generate(model, { prompt: "Once upon a time", maxTokens: 4, temperature: 0, seed: 0, ...rest, fastPath, plugins: [...chain, capture({})] });
    return { result, logits: last! };
  };
  const fast = await run(true);
  const js = await run(false);
  let maxAbsDiff = 0;
  for (let i = 0; i < fast.logits.length; i++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(fast.logits[i]! - js.logits[i]!));
  return { maxAbsDiff, fast: fast.result, js: js.result };
}

export { conformanceChecks, referenceCheck, testVector, DEFAULT_TOLERANCES, type ConformanceCheck, type ConformanceOptions, type Tolerances } from "./conformance.ts";
export {
  encodeRandomGguf, randomGguf, randomGgufConfig, writeRandomGguf, RANDOM_GGUF_ARCHITECTURES, MORE_RANDOM_GGUF_ARCHITECTURES,
  type RandomGguf, type RandomGgufArchitecture, type RandomGgufConfig, type RandomGgufOptions, type RandomTensor,
} from "./random-gguf.ts";
