/**
 * Every architecture on three backends: llama.cpp (the oracle), the reference backend and the
 * converter's ONNX export, on the project's seeded random-weight GGUFs (src/testing/random-gguf.ts,
 * laid out as llama.cpp's converter writes each architecture). Per architecture:
 *
 * - greedy tokens identical for 32 steps on all three, unsteered and steered (an ablation at
 *   resid_mid.0 and an addition at resid_post.(n-2), through native affine edits and through JS hooks);
 * - logits within a tolerance measured per architecture (below: llama.cpp keeps K/V in F16 and
 *   rounds GELU's input to F16, the other two compute in float32);
 * - every residual point exists in the converted graph at every layer, and reading all of them
 *   gives the same values on the reference backend, on ONNX and on llama.cpp (the same hook meaning
 *   on all three: resid_pre.0 after gemma's embedding scale and gpt2's positions, resid_mid.L after
 *   the attention add, resid_post.L the block output).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import type { Model } from "../../src/core/backend.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { allPoints, pointName, type HookPoint } from "../../src/core/sites.ts";
import { addRows, normalize, projectOutRows } from "../../src/core/tensor.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { RANDOM_GGUF_ARCHITECTURES, writeRandomGguf } from "../../src/testing/random-gguf.ts";
import { makeHooks, maxAbsDiff } from "../onnx/helpers/hooks.ts";
import { greedyChain } from "./parity-helpers.ts";

const STEPS = 32;
const PROMPT = [1, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140];
/**
 * Max |logit difference| against llama.cpp over every step, unsteered and steered. Measured
 * (2026-11-30, reference / ONNX alike; logits reach 6-12): llama 0.030, phi3 0.019, gemma2 0.006,
 * gemma3 0.0075, gpt2 0.0057, qwen2 0.010, qwen3 0.0095; (2026-12-01) mistral3 0.026, smollm3 0.011
 * (residual points: both 0.0047).
 */
const LLAMA_CPP_TOLERANCE: Record<(typeof RANDOM_GGUF_ARCHITECTURES)[number], number> = {
  llama: 0.06,
  phi3: 0.04,
  gemma2: 0.015,
  gemma3: 0.015,
  gpt2: 0.015,
  qwen2: 0.02,
  qwen3: 0.02,
  mistral3: 0.05,
  smollm3: 0.02,
};
/** Reference vs ONNX: both float32 with different summation orders. Measured at most 1.5e-5. */
const REFERENCE_ONNX_TOLERANCE = 1e-4;

const dir = mkdtempSync(join(tmpdir(), "steerkit-archs-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vector(seed: number, d: number): Float32Array {
  return normalize(Float32Array.from({ length: d }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233)));
}
const same = (a: HookPoint, b: HookPoint) => a.site === b.site && a.layer === b.layer;
const steer = definePlugin({
  name: "architecture-parity-steer",
  options: v.object({ scale: v.number() }),
  needs: ["residual:write"],
  create({ scale }, { model }) {
    const ablateAt: HookPoint = { site: "resid_mid", layer: 0 };
    const addAt: HookPoint = { site: "resid_post", layer: model.nLayers - 2 };
    const direction = vector(3, model.dModel);
    const minus = direction.map((x) => -x);
    const add = vector(5, model.dModel).map((x) => x * scale);
    return {
      points: [ablateAt, addAt],
      onResidual(x, ctx) {
        if (same(ctx.point, ablateAt)) projectOutRows(x, direction);
        else addRows(x, add);
      },
      affine: (p) => (same(p, ablateAt) ? { rank: 1, U: direction, V: minus, c: null } : same(p, addAt) ? { rank: 0, U: null, V: null, c: add } : null),
    };
  },
});

type Steering = null | { fastPath: boolean };
async function greedy(model: Model, steering: Steering) {
  return greedyChain(model, [steer({ scale: 6 })], steering, STEPS, PROMPT);
}

/**
 * Greedy tokens equal llama.cpp's. On a mismatch the message gives llama.cpp's top-2 margin at the first
 * differing step: a margin below the logit tolerance is a tie within the backends' numeric differences
 * (F16 KV cache, GELU table), which another CPU's kernels could resolve either way.
 */
function expectSameTokens(got: { tokens: number[] }, oracle: { tokens: number[]; logits: Float32Array[] }, tolerance: number): void {
  const step = got.tokens.findIndex((t, i) => t !== oracle.tokens[i]);
  if (step < 0) return;
  const sorted = [...oracle.logits[step]!].sort((x, y) => y - x);
  throw new Error(
    `greedy token ${step} is ${got.tokens[step]}, llama.cpp's is ${oracle.tokens[step]}; llama.cpp's top-2 margin there is ${(sorted[0]! - sorted[1]!).toExponential(2)} (logit tolerance ${tolerance})`,
  );
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let s = 0; s < a.length; s++) m = Math.max(m, maxAbsDiff(a[s]!, b[s]!));
  return m;
}

/** Every point's rows for the prompt, read-only. */
async function readAll(model: Model, points: string[]): Promise<Map<string, Float32Array[]>> {
  const hooks = makeHooks({ points, writes: false });
  const seq = model.createSequence({ hooks });
  await seq.prefill(PROMPT);
  await seq.decode(7);
  seq.free();
  expect(hooks.error).toBeNull();
  return hooks.seen;
}

const STEERINGS: [string, Steering][] = [
  ["unsteered", null],
  ["steered, native affine", { fastPath: true }],
  ["steered, JS hooks", { fastPath: false }],
];

for (const arch of RANDOM_GGUF_ARCHITECTURES) {
  describe(`${arch}: reference backend, llama.cpp and the converted ONNX model agree`, () => {
    const gguf = join(dir, `${arch}.gguf`);
    const exportDir = join(dir, `${arch}-onnx`);
    let reference: Model;
    let converted: OnnxRuntimeModel;
    const open = async () => {
      if (reference) return;
      writeRandomGguf(gguf, { arch });
      await convertGgufToOnnx(gguf, exportDir);
      reference = loadReferenceLlama(gguf, { contextLength: 128 });
      converted = await onnx.load(exportDir, { contextLength: 128, threads: 1 });
    };
    afterAll(() => {
      reference?.dispose();
      converted?.dispose();
    });

    test("every residual point is found in the converted graph, and reads the same values as the reference", async () => {
      await open();
      const n = reference.info.nLayers;
      const names = allPoints(n).map(pointName);
      expect([...converted.sites.keys()].sort()).toEqual([...names].sort());
      const a = await readAll(reference, names);
      const b = await readAll(converted, names);
      for (const name of names) {
        expect(a.get(name)?.length).toBe(2);
        expect(b.get(name)?.length).toBe(2);
        for (let s = 0; s < 2; s++) expect(maxAbsDiff(a.get(name)![s]!, b.get(name)![s]!)).toBeLessThan(REFERENCE_ONNX_TOLERANCE * 10);
      }
    });

    for (const [what, steering] of STEERINGS) {
      test(`${what}: reference and ONNX generate the same ${STEPS} greedy tokens, logits within ${REFERENCE_ONNX_TOLERANCE}`, async () => {
        await open();
        const a = await greedy(reference, steering);
        const b = await greedy(converted, steering);
        expect(b.tokens).toEqual(a.tokens);
        expect(maxDiff(a.logits, b.logits)).toBeLessThan(REFERENCE_ONNX_TOLERANCE);
        if (steering) expect(a.tokens).not.toEqual((await greedy(reference, null)).tokens);
      });
    }

    describe("against llama.cpp", () => {
      let llama: Model;
      afterAll(() => llama?.dispose());
      const openLlama = async () => {
        await open();
        llama ??= await llamaCpp.load(gguf, { contextLength: 128, threads: 1 });
      };
      for (const [what, steering] of STEERINGS) {
        test(`${what}: the same ${STEPS} greedy tokens on all three, logits within ${LLAMA_CPP_TOLERANCE[arch]} of llama.cpp`, async () => {
          await openLlama();
          const oracle = await greedy(llama, steering);
          for (const model of [reference, converted]) {
            const r = await greedy(model, steering);
            expectSameTokens(r, oracle, LLAMA_CPP_TOLERANCE[arch]);
            expect(maxDiff(r.logits, oracle.logits)).toBeLessThan(LLAMA_CPP_TOLERANCE[arch]);
          }
        });
      }

      test("every point at every layer reads llama.cpp's values", async () => {
        await openLlama();
        const names = allPoints(reference.info.nLayers).map(pointName);
        const oracle = await readAll(llama, names);
        const mine = await readAll(reference, names);
        const d = reference.info.dModel;
        for (const name of names) {
          for (let s = 0; s < 2; s++) {
            // llama.cpp's last block computes only the row that produces logits: compare last rows.
            const a = oracle.get(name)![s]!;
            const b = mine.get(name)![s]!;
            expect(maxAbsDiff(a.subarray(a.length - d), b.subarray(b.length - d))).toBeLessThan(LLAMA_CPP_TOLERANCE[arch]);
          }
        }
      });
    });
  });
}
