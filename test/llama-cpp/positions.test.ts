/**
 * Position-limited affine edits on the real model, through core's chain: the shim's native path
 * must edit exactly the rows the JS path (`fastPath: false`) and the reference backend edit, also
 * at the last block (which holds only the output rows) and across a prefill split into passes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import * as v from "valibot";
import type { AffineEdit, Model } from "../../src/core/backend.ts";
import { applyAffine, compileChain, type ChainPlugin } from "../../src/core/chain.ts";
import { generate } from "../../src/core/generate.ts";
import { definePlugin, type AffineForm } from "../../src/core/plugin.ts";
import { PositionsOption, resolvePositions, type PositionsSpec } from "../../src/core/points.ts";
import type { HookPoint } from "../../src/core/sites.ts";
import { argmax } from "../../src/core/tensor.ts";
import { DEFAULT_MODEL_PATH, LlamaSequence, loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { maxAbsDiff, randomVector } from "./hooks-helpers.ts";

const llama = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 256 });
/** Passes of 6 tokens: a 21-token prompt prefills as 6 + 6 + 6 + 3. */
const chunked = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 256, batchSize: 6 });
const reference = loadReferenceLlama(DEFAULT_MODEL_PATH, { contextLength: 256 });
afterAll(() => {
  llama.dispose();
  chunked.dispose();
  reference.dispose();
});
const D = llama.info.dModel;
const LAST = llama.info.nLayers - 1;
const PROMPT_TEXT = "Once upon a time, there was a little girl named Lily. She loved to play";
const PROMPT = llama.tokenize(PROMPT_TEXT);
const P = PROMPT.length;
const STEPS = 6;
/**
 * Native vs JS edit, max |logit difference|: additive edits agree exactly; rank-1 ones differ by
 * the shim's float32 sum for hU against applyAffine's float64 (measured up to 0.0016 when the edit is
 * early in the model, where its effect on the logits is 0.4 to 25).
 */
const NATIVE_TOLERANCE = 5e-3;
/** llama.cpp vs the reference backend (F16 KV cache vs F32; see reference-vs-llamacpp.test.ts). */
const REFERENCE_TOLERANCE = 0.05;

const Site = v.picklist(["resid_pre", "resid_mid", "resid_post"]);
/** One affine edit, additive (rank 0) or rank 1, at one point and positions; its JS hook is core's applyAffine. */
const positioned = definePlugin({
  name: "test-positioned-edit",
  options: v.object({ site: Site, layer: v.number(), rank: v.picklist([0, 1]), seed: v.number(), scale: v.number(), positions: PositionsOption() }),
  needs: ["residual:write"],
  create(o, { model, promptTokens }) {
    const point: HookPoint = { site: o.site, layer: o.layer };
    const d = model.dModel;
    const form: AffineForm =
      o.rank === 0
        ? { rank: 0, U: null, V: null, c: randomVector(d, o.seed, o.scale), positions: o.positions }
        : { rank: 1, U: randomVector(d, o.seed, o.scale), V: randomVector(d, o.seed + 1, o.scale), c: null, positions: o.positions };
    const edit: AffineEdit = { point, ...form, positions: resolvePositions(o.positions, promptTokens.length) };
    return {
      points: [point],
      onResidual: (x, ctx) => applyAffine(edit, x, undefined, ctx.positions),
      affine: () => form,
    };
  },
});

/** Reads one point and returns a replacement of garbage: harmless only if it is never written back. */
const replacingReader = definePlugin({
  name: "test-replacing-reader",
  options: v.object({ layer: v.number(), write: v.boolean() }),
  needs: (o) => [o.write ? "residual:write" : "residual:read"],
  create(o) {
    const state = { calls: 0 };
    return {
      points: [{ site: "resid_mid", layer: o.layer }],
      onResidual(x) {
        state.calls++;
        return { data: randomVector(x.data.length, 99, 3), dims: x.dims };
      },
      state,
    };
  },
});

interface Run {
  readonly tokens: number[];
  readonly logits: Float32Array[];
  readonly modes: ReadonlyMap<string, string> | null;
}

/**
 * Prefill the prompt, then decode STEPS tokens through core's chain of `plugins`: greedy ones, or
 * `forced` ones (to compare two backends' logits on the same text even where a near-tie would let
 * their greedy choices part).
 */
async function run(model: Model, plugins: readonly ChainPlugin[], fastPath = true, forced?: readonly number[]): Promise<Run> {
  const chain = compileChain(plugins, model, { fastPath, promptTokens: PROMPT });
  const seq = model.createSequence({ hooks: chain.residual });
  try {
    const modes = seq instanceof LlamaSequence ? seq.pointModes : null;
    const logits = [Float32Array.from(await seq.prefill(PROMPT))];
    const tokens: number[] = [];
    for (let i = 0; i < STEPS; i++) {
      tokens.push(forced ? forced[i]! : argmax(logits.at(-1)!));
      logits.push(Float32Array.from(await seq.decode(tokens.at(-1)!)));
    }
    expect(chain.residual.error).toBeNull();
    return { tokens, logits, modes };
  } finally {
    seq.free();
  }
}

function maxStepDiff(a: Run, b: Run): number {
  return Math.max(...a.logits.map((l, s) => maxAbsDiff(l, b.logits[s]!)));
}

describe("position-limited affine edits on stories260K", async () => {
  const baseline = await run(llama, []);

  const cases: { what: string; site: "resid_pre" | "resid_mid" | "resid_post"; layer: number; positions: PositionsSpec }[] = [
    { what: "generated rows only", site: "resid_post", layer: 2, positions: "generated" },
    { what: "prompt rows only", site: "resid_post", layer: 2, positions: "prompt" },
    { what: "a range starting mid-prompt", site: "resid_mid", layer: 1, positions: { from: 9 } },
    { what: "a bounded range inside the prompt", site: "resid_pre", layer: 0, positions: { from: 4, to: 14 } },
    { what: "a range over the prompt's end into generation", site: "resid_post", layer: 3, positions: { from: P - 2, to: P + 2 } },
    // The last block computes only the output row: the native path must place it at position P-1.
    { what: "only the last prompt row, at the last block", site: "resid_mid", layer: LAST, positions: { from: P - 1, to: P } },
    { what: "prompt rows at the last block's output", site: "resid_post", layer: LAST, positions: "prompt" },
  ];

  for (const rank of [0, 1] as const) {
    for (const c of cases) {
      const kind = rank === 0 ? "additive" : "rank-1";
      test(`${kind}, ${c.what} (${c.site}.${c.layer} ${JSON.stringify(c.positions)}): native = JS (one pass and passes of 6) = reference`, async () => {
        const plugins = [positioned({ site: c.site, layer: c.layer, rank, seed: 7 + c.layer, scale: rank === 0 ? 1 : 0.4, positions: c.positions })];
        const name = `${c.site}.${c.layer}`;
        const native = await run(llama, plugins);
        const js = await run(llama, plugins, false);
        expect(native.modes!.get(name)).toBe("native");
        expect(js.modes!.get(name)).toBe("js");
        // The edit does something (so agreeing below means something).
        expect(maxStepDiff(js, baseline)).toBeGreaterThan(0.1);
        expect(native.tokens).toEqual(js.tokens);
        expect(maxStepDiff(native, js)).toBeLessThan(NATIVE_TOLERANCE);

        const split = await run(chunked, plugins);
        const splitJs = await run(chunked, plugins, false);
        expect(split.modes!.get(name)).toBe("native");
        expect(split.tokens).toEqual(js.tokens);
        expect(maxStepDiff(split, splitJs)).toBeLessThan(NATIVE_TOLERANCE);
        expect(maxStepDiff(split, native)).toBeLessThan(NATIVE_TOLERANCE);

        const ref = await run(reference, plugins, true, native.tokens);
        expect(maxStepDiff(ref, native)).toBeLessThan(REFERENCE_TOLERANCE);
      });
    }
  }

  test('"generated" leaves the prefill bit-identical to no edit and changes the steps after it', async () => {
    const native = await run(llama, [positioned({ site: "resid_post", layer: 2, rank: 0, seed: 3, scale: 1, positions: "generated" })]);
    expect(Buffer.from(native.logits[0]!.buffer).equals(Buffer.from(baseline.logits[0]!.buffer))).toBe(true);
    expect(maxAbsDiff(native.logits[1]!, baseline.logits[1]!)).toBeGreaterThan(1e-2);
  });

  test("a range that selects none of this request's rows changes nothing", async () => {
    const native = await run(llama, [positioned({ site: "resid_mid", layer: 2, rank: 1, seed: 3, scale: 0.4, positions: { from: P + STEPS + 5 } })]);
    expect(native.modes!.get("resid_mid.2")).toBe("native");
    for (let s = 0; s <= STEPS; s++) expect(Buffer.from(native.logits[s]!.buffer).equals(Buffer.from(baseline.logits[s]!.buffer))).toBe(true);
  });

  test("control vectors serve only unrestricted additive edits at resid_post L >= 1", () => {
    const mode = (positions: PositionsSpec, rank: 0 | 1 = 0, layer = 2) => {
      const chain = compileChain([positioned({ site: "resid_post", layer, rank, seed: 1, scale: 1, positions })], llama, { promptTokens: PROMPT });
      const seq = llama.createSequence({ hooks: chain.residual });
      const m = seq.pointModes.get(`resid_post.${layer}`);
      seq.free();
      return m;
    };
    expect(mode("all")).toBe("cvec");
    expect(mode({ from: 0 })).toBe("cvec"); // every position: no restriction
    expect(mode("generated")).toBe("native");
    expect(mode("prompt")).toBe("native");
    expect(mode({ from: 3, to: 9 })).toBe("native");
    expect(mode("all", 1)).toBe("native");
    expect(mode("all", 0, 0)).toBe("native");
  });

  test("generate: positioned edits give the same greedy text natively, in JS and on the reference backend", async () => {
    const plain = await generate(llama, { prompt: PROMPT_TEXT, temperature: 0, maxTokens: 16 });
    for (const positions of ["generated", { from: 12, to: P + 3 }] as const) {
      const plugins = [
        positioned({ site: "resid_post", layer: 2, rank: 0, seed: 5, scale: 1.2, positions }),
        positioned({ site: "resid_mid", layer: 3, rank: 1, seed: 6, scale: 0.4, positions }),
      ];
      const request = { prompt: PROMPT_TEXT, temperature: 0, maxTokens: 16, plugins } as const;
      const native = await generate(llama, request);
      expect(native.tokens).not.toEqual(plain.tokens);
      expect((await generate(llama, { ...request, fastPath: false })).tokens).toEqual(native.tokens);
      expect((await generate(chunked, request)).tokens).toEqual(native.tokens);
      expect((await generate(reference, request)).tokens).toEqual(native.tokens);
    }
  });

  test("a read-only point whose hook returns a replacement does not change the output", async () => {
    const editor = positioned({ site: "resid_post", layer: 3, rank: 1, seed: 4, scale: 0.4, positions: { from: 5 } });
    const alone = await run(llama, [editor]);
    const reader = replacingReader({ layer: 2, write: false });
    const chain = compileChain([reader, editor], llama, { promptTokens: PROMPT });
    expect([...chain.residual.readOnly]).toEqual(["resid_mid.2"]);
    const both = await run(llama, [reader, editor]);
    expect(both.modes!.get("resid_mid.2")).toBe("js");
    expect(both.modes!.get("resid_post.3")).toBe("native");
    for (let s = 0; s <= STEPS; s++) expect(Buffer.from(both.logits[s]!.buffer).equals(Buffer.from(alone.logits[s]!.buffer))).toBe(true);
    // The same hook where it may write does change the output: the replacement is real.
    const writing = await run(llama, [replacingReader({ layer: 2, write: true }), editor]);
    expect(maxStepDiff(writing, alone)).toBeGreaterThan(1e-2);
  });
});
