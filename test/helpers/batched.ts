/**
 * What the batched-decoding tests of both adapters share (test/llama-cpp/batched.test.ts,
 * test/onnx/batched.test.ts): the test plugins, the prompts, one greedy run recording every logits
 * row, and a gate that lets a run wait for another to reach a step.
 */
import { expect } from "bun:test";
import * as v from "valibot";
import type { Model } from "../../src/core/backend.ts";
import { compileChain, type ChainPlugin } from "../../src/core/chain.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { argmax } from "../../src/core/tensor.ts";

/** A non-affine JS hook: squashes the residual (so no native or in-graph path can serve it). */
export const squash = definePlugin({
  name: "test-squash",
  options: v.object({ layers: v.array(v.number()), site: v.picklist(["resid_mid", "resid_post"]) }),
  needs: ["residual:write"],
  create: (o) => ({
    points: o.layers.map((layer) => ({ site: o.site, layer })),
    onResidual(x) {
      const d = x.data;
      for (let i = 0; i < d.length; i++) d[i] = 3 * Math.tanh(d[i]! / 3);
    },
  }),
});

/** Pushes a few tokens up: a logits plugin. */
export const bias = definePlugin({
  name: "test-bias",
  options: v.object({ tokens: v.array(v.number()), by: v.number() }),
  needs: ["logits:write"],
  create: (o) => ({
    onLogits(logits) {
      for (const t of o.tokens) logits[t] = logits[t]! + o.by;
    },
  }),
});

export const PROMPTS = ["Once upon a time, there was a little girl named Lily.", "The cat sat on the mat", "Tom had a big red ball and he", "One day", "She was very happy because her mom", "The sun"];

export interface Run {
  readonly tokens: number[];
  readonly logits: Float32Array[];
}

/** Prefill then `steps` greedy decodes through core's chain, recording every logits row. `before(k)` is awaited before decode k. */
export async function run(model: Model, prompt: string, plugins: readonly ChainPlugin[], steps: number, before?: (k: number) => Promise<void>): Promise<Run> {
  const tokens = model.tokenize(prompt);
  const chain = compileChain(plugins, model, { promptTokens: tokens });
  const seq = model.createSequence({ hooks: chain.residual });
  try {
    const logits = [Float32Array.from(await seq.prefill(tokens))];
    const out: number[] = [];
    for (let k = 0; k < steps; k++) {
      out.push(argmax(logits.at(-1)!));
      await before?.(k);
      logits.push(Float32Array.from(await seq.decode(out.at(-1)!)));
    }
    expect(chain.residual.error).toBeNull();
    return { tokens: out, logits };
  } finally {
    seq.free();
  }
}

/** Resolves once `counter.n` reaches `k` (counters are bumped by the runs they follow). */
export function gate() {
  const waiters: { k: number; resolve: () => void }[] = [];
  return {
    n: 0,
    bump() {
      this.n++;
      for (const w of waiters.splice(0)) (w.k <= this.n ? w.resolve() : waiters.push(w));
    },
    at(k: number): Promise<void> {
      return k <= this.n ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ k, resolve }));
    },
  };
}

/**
 * A model's batched view that owns the model: its dispose() frees the view, then the model (the
 * conformance suite opens and disposes one model per check).
 */
export function ownedBatchedView(model: Model, sequences: number): Model {
  if (!model.batched) throw new Error(`${model.info.name} cannot batch`);
  const view = model.batched({ sequences });
  return Object.assign(Object.create(view) as Model, {
    dispose() {
      view.dispose();
      model.dispose();
    },
  });
}
