import { afterAll, describe, expect, test } from "bun:test";
import * as v from "valibot";
import { generate, stream } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { DEFAULT_MODEL_PATH, loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { randomVector } from "./hooks-helpers.ts";

const model = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 256 });
afterAll(() => model.dispose());
const D = model.info.dModel;

/** Adds a fixed vector at one point; offers the same edit as an affine form for the fast path. */
const steer = definePlugin({
  name: "test-steer",
  options: v.object({ layer: v.number(), site: v.picklist(["resid_pre", "resid_mid", "resid_post"]), seed: v.number(), scale: v.number() }),
  needs: ["residual:write"],
  create: (o) => {
    const c = randomVector(D, o.seed, o.scale);
    return {
      points: [{ site: o.site, layer: o.layer }],
      onResidual(x) {
        for (let off = 0; off < x.data.length; off += D) for (let i = 0; i < D; i++) x.data[off + i]! += c[i]!;
      },
      affine: () => ({ rank: 0, U: null, V: null, c }),
    };
  },
});

describe("core generate on the llama.cpp adapter", () => {
  test("greedy generation continues the known story", async () => {
    const r = await generate(model, { prompt: "Once upon a time", temperature: 0, maxTokens: 12 });
    expect(r.promptTokens).toEqual([1, 403, 407, 261, 378]);
    expect(r.text).toStartWith(", there was a little girl named Lily.");
  });

  test("same seed gives the same text, with steering on", async () => {
    const opts = { prompt: "Once upon a time", temperature: 0.9, maxTokens: 30, plugins: [steer({ layer: 2, site: "resid_post", seed: 5, scale: 0.4 })] } as const;
    const a = await generate(model, { ...opts, seed: 1234 });
    const b = await generate(model, { ...opts, seed: 1234 });
    expect(b.tokens).toEqual(a.tokens);
    expect(b.text).toBe(a.text);
  });

  test("steering changes the text, and the fast path matches the JS path", async () => {
    const base = await generate(model, { prompt: "Once upon a time", temperature: 0, maxTokens: 24 });
    for (const [site, layer] of [["resid_post", 2], ["resid_mid", 1], ["resid_pre", 0]] as const) {
      const plugins = [steer({ layer, site, seed: 9, scale: 1.5 })];
      const fast = await generate(model, { prompt: "Once upon a time", temperature: 0, maxTokens: 24, plugins });
      const js = await generate(model, { prompt: "Once upon a time", temperature: 0, maxTokens: 24, plugins, fastPath: false });
      expect(fast.tokens).toEqual(js.tokens);
      expect(fast.tokens).not.toEqual(base.tokens);
    }
  });

  test("two generations at once with different chains equal their runs alone", async () => {
    const reqA = { prompt: "Once upon a time", temperature: 0, maxTokens: 20, plugins: [steer({ layer: 1, site: "resid_post", seed: 1, scale: 1.5 })], fastPath: false };
    const reqB = { prompt: "Once upon a time", temperature: 0, maxTokens: 20, plugins: [steer({ layer: 3, site: "resid_mid", seed: 2, scale: 1.5 })] };
    const reqC = { prompt: "Once upon a time", temperature: 0, maxTokens: 20 };
    const alone = [await generate(model, reqA), await generate(model, reqB), await generate(model, reqC)];
    const together = await Promise.all([generate(model, reqA), generate(model, reqB), generate(model, reqC)]);
    for (let i = 0; i < 3; i++) expect(together[i]!.tokens).toEqual(alone[i]!.tokens);
    expect(alone[0]!.tokens).not.toEqual(alone[2]!.tokens);
  });

  test("aborting mid-generation rejects and frees the sequence", async () => {
    const before = model.liveSequences;
    const controller = new AbortController();
    let seen = 0;
    const events = stream(model, { prompt: "Once upon a time", temperature: 0, maxTokens: 100, signal: controller.signal });
    const reading = (async () => {
      for await (const ev of events) {
        if (ev.type === "token" && ++seen === 3) controller.abort(new Error("user stopped"));
      }
    })();
    await expect(reading).rejects.toThrow("user stopped");
    expect(seen).toBe(3);
    expect(model.liveSequences).toBe(before);
  });
});
