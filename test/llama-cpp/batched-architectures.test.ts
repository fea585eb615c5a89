/**
 * Batched decoding on every architecture the random-GGUF generator writes: the batched eval callback
 * (sk_eval_batch) must find the same points as the one-context one (block-0 input per architecture,
 * the mid-block prefix or phi3's unnamed sum), so a batch of differently steered sequences (a JS hook
 * plus native affine edits at resid_mid and resid_post, native edits only, none) gives each sequence
 * the greedy tokens of its own context. Also the architecture rules that are not about tokens:
 * parallel blocks (phi2) refuse resid_mid in a batch too, and a hooked point the graph never produces
 * fails that sequence's call, not the others'.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import type { Model } from "../../src/core/backend.ts";
import { generate } from "../../src/core/generate.ts";
import type { ChainPlugin as Plugin } from "../../src/core/chain.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { parsePoint } from "../../src/core/sites.ts";
import { addVector, ablateDirection } from "../../src/plugins/index.ts";
import { loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { RANDOM_GGUF_ARCHITECTURES, writeRandomGguf } from "../../src/testing/random-gguf.ts";
import { makeHooks, randomVector } from "./hooks-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-batched-arch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PROMPT = "Once upon a time";
const TOKENS = 10;

/** A non-affine JS hook (no native path can serve it): squashes the residual. */
const squash = definePlugin({
  name: "test-squash",
  options: v.object({ points: v.array(v.string()) }),
  needs: ["residual:write"],
  create(o) {
    return {
      points: o.points.map(parsePoint),
      onResidual(x) {
        const d = x.data;
        for (let i = 0; i < d.length; i++) d[i] = 2 * Math.tanh(d[i]! / 2);
      },
    };
  },
});

/** Three recipes, mixed in one batch: JS + native at resid_mid and resid_post, native only (resid_pre.0 too), none. */
function recipes(d: number, last: number): Plugin[][] {
  const dir = Array.from(randomVector(d, 7, 1));
  return [
    [
      squash({ points: ["resid_mid.1", `resid_post.${last}`] }),
      addVector({ points: ["resid_post.1"], vector: Array.from(randomVector(d, 3, 0.6)), scale: 2 }),
      ablateDirection({ points: [`resid_mid.${last}`], direction: dir }),
    ],
    [
      addVector({ points: ["resid_pre.0", "resid_mid.1", `resid_post.${last}`], vector: Array.from(randomVector(d, 4, 0.6)), scale: 2 }),
      ablateDirection({ points: ["resid_post.1"], direction: dir }),
    ],
    [],
  ];
}

const request = (plugins: Plugin[]) => ({ prompt: PROMPT, temperature: 0, maxTokens: TOKENS, ignoreEos: true, plugins });

describe.each([...RANDOM_GGUF_ARCHITECTURES])("batched decoding on a random %s", (arch) => {
  test("mixed steering (JS hook + native affine at resid_mid and resid_post) in one batch = one context each", async () => {
    const gguf = join(dir, `${arch}.gguf`);
    writeRandomGguf(gguf, { arch, seed: 1 });
    const single = loadModel(gguf, { threads: 1, contextLength: 64 });
    // Steps of 6 tokens: the prompts are spread over several steps, beside the others' rows.
    const batched = single.batched({ sequences: 3, stepTokens: 6 });
    try {
      const { dModel, nLayers } = single.info;
      const mixes = recipes(dModel, nLayers - 1);
      const expected: number[][] = [];
      for (const plugins of mixes) expected.push((await generate(single, request(plugins))).tokens);
      const got = await Promise.all(mixes.map((plugins) => generate(batched as Model, request(plugins))));
      for (let i = 0; i < mixes.length; i++) expect({ recipe: i, tokens: got[i]!.tokens }).toEqual({ recipe: i, tokens: expected[i]! });
      // The steering changed the text, so equal tokens are not just three unsteered runs.
      expect(expected[0]).not.toEqual(expected[2]);
      expect(expected[1]).not.toEqual(expected[2]);
    } finally {
      batched.dispose();
      single.dispose();
    }
  });
});

describe("architecture rules in a batch", () => {
  test("phi2 (parallel blocks) refuses resid_mid in a batch as in one context; resid_post still steers", async () => {
    const gguf = join(dir, "phi2.gguf");
    writeRandomGguf(gguf, { arch: "phi2", seed: 1 });
    const single = loadModel(gguf, { threads: 1, contextLength: 64 });
    const batched = single.batched({ sequences: 2, stepTokens: 8 });
    try {
      expect(() => batched.createSequence({ hooks: makeHooks([{ site: "resid_mid", layer: 1 }], () => {}) })).toThrow(/phi2 model .* has no resid_mid\.1/);
      const plugins = [addVector({ points: ["resid_post.1"], vector: Array.from(randomVector(single.info.dModel, 3, 0.6)), scale: 2 })];
      const alone = (await generate(single, request(plugins))).tokens;
      expect((await generate(batched as Model, request(plugins))).tokens).toEqual(alone);
    } finally {
      batched.dispose();
      single.dispose();
    }
  });

  test("a hooked point the graph never produces fails that sequence's call (undone); the other sequence in the pass is unharmed", async () => {
    const gguf = join(dir, "gemma2-wrong.gguf");
    writeRandomGguf(gguf, { arch: "gemma2", seed: 1 });
    const wrong = loadModel(gguf, { threads: 1, contextLength: 64, residualTensors: { mid: "ffn_inp" } });
    const batched = wrong.batched({ sequences: 2, stepTokens: 16 });
    try {
      const tokens = wrong.tokenize(PROMPT);
      const missing = batched.createSequence({ hooks: makeHooks([{ site: "resid_mid", layer: 1 }], () => {}) });
      const fine = batched.createSequence({ hooks: makeHooks([{ site: "resid_post", layer: 1 }], () => {}) });
      const [a, b] = await Promise.allSettled([missing.prefill(tokens), fine.prefill(tokens)]);
      expect(a.status).toBe("rejected");
      const e = (a as PromiseRejectedResult).reason as Error & { code?: string };
      expect(e.code).toBe("UNSUPPORTED_MODEL");
      expect(e.message).toMatch(/^gemma2 model .*: llama\.cpp's graph produced no tensor for resid_mid\.1 \(looked for ffn_inp-1\), so its hook could not run; the forward pass was undone$/);
      expect(missing.length).toBe(0);
      expect(b.status).toBe("fulfilled");
      expect(fine.length).toBe(tokens.length);
    } finally {
      batched.dispose();
      wrong.dispose();
    }
  });
});
