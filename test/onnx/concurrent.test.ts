/**
 * Concurrent sequences on one ONNX model: requests with different recipes (in-graph affine edits,
 * a JS split, a positioned edit, a logits plugin, none) running interleaved give exactly what each
 * gives alone. This export (legacy past_N KV) is one the adapter does not batch; batched passes are
 * tested in batched.test.ts (see the README, "Concurrent sequences").
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { generate } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { ablateDirection, addVector } from "../../src/plugins/steering.ts";
import { wave } from "./helpers/hooks.ts";

const DIR = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
let model: OnnxRuntimeModel;
beforeAll(async () => {
  model = await onnx.load(DIR);
});
afterAll(() => model?.dispose());

const bias = definePlugin({
  name: "test-bias",
  options: v.object({ token: v.number() }),
  needs: ["logits:write"],
  create: (o) => ({
    onLogits(logits) {
      logits[o.token] = logits[o.token]! + 5;
    },
  }),
});
const squash = definePlugin({
  name: "test-squash",
  options: v.object({}),
  needs: ["residual:write"],
  create: () => ({
    points: [{ site: "resid_mid", layer: 2 }],
    onResidual(x) {
      for (let i = 0; i < x.data.length; i++) x.data[i] = 2 * Math.tanh(x.data[i]! / 2);
    },
  }),
});

describe("concurrent ONNX sequences", () => {
  test("mixed recipes, interleaved and joining late, equal each request run alone", async () => {
    const requests = [
      { tokens: [5, 17, 300, 42], plugins: [addVector({ points: ["resid_post.1", "resid_mid.3"], vector: Array.from(wave(32, 3)) })] },
      { tokens: [9, 8, 7], plugins: [ablateDirection({ points: "every", direction: Array.from(wave(32, 1, 2)) })] },
      { tokens: [100, 200], plugins: [squash({})] },
      { tokens: [5, 17, 300, 42], plugins: [addVector({ points: ["resid_post.2"], vector: Array.from(wave(32, 2)), positions: "generated" })] },
      { tokens: [61, 62, 63, 64, 65], plugins: [bias({ token: 77 })] },
      { tokens: [5, 17, 300, 42], plugins: [] },
    ].map((r, i) => ({ ...r, maxTokens: 10 + 3 * i, temperature: 0, ignoreEos: true }));
    const alone = [];
    for (const r of requests) alone.push((await generate(model, r)).tokens);
    const together = await Promise.all(requests.map(async (r, i) => {
      await Bun.sleep(i % 3); // some join after others have started
      return (await generate(model, r)).tokens;
    }));
    expect(together).toEqual(alone);
    // The recipes did something, so equality means each sequence kept its own steering.
    expect(new Set(alone.map((t) => JSON.stringify(t.slice(0, 10)))).size).toBeGreaterThan(3);
  });
});
