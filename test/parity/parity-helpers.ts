/**
 * The shared pieces of the parity tests (the same model on llama.cpp and ONNX Runtime): a steering
 * chain that is both a JS hook and an affine edit, a greedy run recording every step's logits, and
 * the largest logits difference between two runs.
 */
import { expect } from "bun:test";
import * as v from "valibot";
import type { Model, Sequence } from "../../src/core/backend.ts";
import { compileChain, type ChainPlugin } from "../../src/core/chain.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import type { HookPoint } from "../../src/core/sites.ts";
import { addRows, argmax, normalize, projectOutRows } from "../../src/core/tensor.ts";

export const PROMPT = [1, 403, 407, 261, 378]; // "<s>Once upon a time"

/** A deterministic pseudo-random unit vector (xorshift), so the recipe is the same on both backends. */
export function unitVector(seed: number, n: number): Float32Array {
  let s = seed >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    out[i] = (s >>> 0) / 2 ** 32 - 0.5;
  }
  return normalize(out);
}

const ABLATE_AT: HookPoint = { site: "resid_mid", layer: 1 };
const ADD_AT: HookPoint = { site: "resid_post", layer: 2 };

/** Directional ablation at resid_mid.1 and an added vector at resid_post.2, as JS hooks and as affine edits. */
export const paritySteer = definePlugin({
  name: "parity-steer",
  options: v.object({ scale: v.number() }),
  needs: ["residual:write"],
  create({ scale }, { model }) {
    const d = model.dModel;
    const direction = unitVector(7, d);
    const add = unitVector(11, d).map((x) => x * scale);
    const minusDirection = direction.map((x) => -x);
    const same = (a: HookPoint, b: HookPoint) => a.site === b.site && a.layer === b.layer;
    return {
      points: [ABLATE_AT, ADD_AT],
      onResidual(x, ctx) {
        if (same(ctx.point, ABLATE_AT)) projectOutRows(x, direction);
        else addRows(x, add);
      },
      affine(point) {
        if (same(point, ABLATE_AT)) return { rank: 1, U: direction, V: minusDirection, c: null };
        if (same(point, ADD_AT)) return { rank: 0, U: null, V: null, c: add };
        return null;
      },
    };
  },
});

export interface Run {
  tokens: number[];
  /** Last-position logits of the prompt, then after each generated token. */
  logits: Float32Array[];
}

/**
 * Prefill `prompt` on a fresh sequence of `model` (any backend, with its own sequence options), then
 * decode `steps` greedy tokens; every step's logits copied. The one greedy loop of the tests.
 */
export async function greedySequence<O>(model: { createSequence(options: O): Sequence }, options: O, steps: number, prompt: readonly number[] = PROMPT): Promise<Run> {
  const seq = model.createSequence(options);
  try {
    let logits = (await seq.prefill([...prompt])).slice();
    const run: Run = { tokens: [], logits: [logits] };
    for (let i = 0; i < steps; i++) {
      const next = argmax(logits);
      run.tokens.push(next);
      logits = (await seq.decode(next)).slice();
      run.logits.push(logits);
    }
    return run;
  } finally {
    seq.free();
  }
}

/** {@link greedySequence} with `plugins` compiled into a chain (none when `chainOptions` is null); the chain must end without an error. */
export async function greedyChain(model: Model, plugins: ChainPlugin[], chainOptions: { fastPath: boolean } | null, steps: number, prompt: readonly number[] = PROMPT): Promise<Run> {
  const chain = chainOptions ? compileChain(plugins, model, chainOptions) : null;
  const run = await greedySequence(model, chain ? { hooks: chain.residual } : {}, steps, prompt);
  expect(chain?.residual.error ?? null).toBeNull();
  return run;
}

export async function greedy(model: Model, steering: { scale: number; fastPath: boolean } | null, steps: number): Promise<Run> {
  return greedyChain(model, [paritySteer({ scale: steering?.scale ?? 0 })], steering ? { fastPath: steering.fastPath } : null, steps);
}

export function maxLogitsDiff(a: Run, b: Run): number {
  let m = 0;
  for (let s = 0; s < a.logits.length; s++) {
    const x = a.logits[s]!;
    const y = b.logits[s]!;
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i]! - y[i]!));
  }
  return m;
}
