/**
 * Position-limited affine edits inside the ONNX graph (a row mask per site) against the JS path
 * (`fastPath: false`: core's applyAffine in a hook at a graph cut), through core's generate on real
 * exports: the genai GPT-2 fixture and stories260K converted from its GGUF in fp32 and fp16.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { planKey } from "../../src/adapters/onnx/plan.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { compileChain } from "../../src/core/chain.ts";
import { generate } from "../../src/core/generate.ts";
import type { ConfiguredPlugin } from "../../src/core/plugin.ts";
import type { PositionsSpec } from "../../src/core/points.ts";
import { normalize } from "../../src/core/tensor.ts";
import { maxAbsDiff, wave } from "./helpers/hooks.ts";
import { positionedEdit, recordLogits } from "./helpers/plugins.ts";

const GPT2 = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
const GGUF = join(import.meta.dir, "../../models/stories260K.gguf");
const tmp = mkdtempSync(join(tmpdir(), "steerkit-onnx-positions-"));
const STEPS = 10;

interface Case {
  readonly label: string;
  model: OnnxRuntimeModel;
  readonly prompt: number[];
  readonly point: string;
  /** Scale of the added vector (the edit must move the logits well past the tolerance). */
  readonly scale: number;
  /** Max |logit difference| between the in-graph and the JS path at any step. */
  readonly tolerance: number;
  /**
   * A logit change larger than this is an edit's doing. The random-weight GPT-2's last row hardly
   * attends to earlier rows (editing prompt rows 0..2 moves its logits by ~4e-3), stories260K's does.
   */
  readonly moved: number;
}

const cases: Case[] = [
  { label: "genai GPT-2 fp32", model: null!, prompt: [5, 17, 300, 42, 999, 0], point: "resid_post.1", scale: 2, tolerance: 1e-4, moved: 1e-3 },
  { label: "stories260K fp32", model: null!, prompt: [1, 403, 407, 261, 378, 322], point: "resid_mid.2", scale: 1, tolerance: 1e-4, moved: 0.1 },
  // fp16: the graph adds in half precision, the JS path in float32 before rounding to half.
  { label: "stories260K fp16", model: null!, prompt: [1, 403, 407, 261, 378, 322], point: "resid_mid.2", scale: 1, tolerance: 0.05, moved: 0.1 },
];

beforeAll(async () => {
  await convertGgufToOnnx(GGUF, join(tmp, "f32"));
  await convertGgufToOnnx(GGUF, join(tmp, "f16"), { dtype: "float16" });
  cases[0]!.model = await onnx.load(GPT2);
  cases[1]!.model = await onnx.load(join(tmp, "f32"), { contextLength: 64 });
  cases[2]!.model = await onnx.load(join(tmp, "f16"), { contextLength: 64 });
});

afterAll(() => {
  for (const c of cases) c.model?.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  tokens: number[];
  /** Next-token logits after the prompt, then after each fed-back token. */
  logits: Float32Array[];
}

async function greedy(model: OnnxRuntimeModel, prompt: number[], plugins: ConfiguredPlugin[], fastPath = true): Promise<Run> {
  const logits: Float32Array[] = [];
  const r = await generate(model, {
    tokens: prompt,
    maxTokens: STEPS,
    temperature: 0,
    ignoreEos: true,
    fastPath,
    plugins: [...plugins, recordLogits({ sink: (l) => logits.push(l) })],
  });
  return { tokens: r.tokens, logits };
}

function planSpecOf(model: OnnxRuntimeModel, prompt: number[], plugins: ConfiguredPlugin[], fastPath = true) {
  return model.planSpec(compileChain(plugins, model, { promptTokens: prompt, fastPath }).residual);
}

function expectSameRun(a: Run, b: Run, tolerance: number) {
  expect(a.tokens).toEqual(b.tokens);
  expect(a.logits.length).toBe(b.logits.length);
  for (let i = 0; i < a.logits.length; i++) expect(maxAbsDiff(a.logits[i]!, b.logits[i]!)).toBeLessThanOrEqual(tolerance);
}

const KINDS = ["additive", "rank-1", "rank-1 + bias"] as const;
const POSITIONS: { spec: PositionsSpec; name: string }[] = [
  { spec: "prompt", name: "prompt" },
  { spec: "generated", name: "generated" },
  // Rows 3..5 of the 6-token prompt and the first three generated tokens fed back.
  { spec: { from: 3, to: 9 }, name: "{from: 3, to: 9}" },
];

describe("position-limited affine edits in-graph equal the JS path", () => {
  for (const k of cases.keys()) {
    test(`${cases[k]!.label}: additive and rank-1 edits on the prompt, the generated tokens and a range starting mid-prompt`, async () => {
      const { model, prompt, point, scale, tolerance, moved: MOVED } = cases[k]!;
      const d = model.info.dModel;
      const vectors = {
        additive: { c: Array.from(wave(d, scale)) },
        "rank-1": { r: Array.from(normalize(wave(d, 1, 2))) },
        "rank-1 + bias": { c: Array.from(wave(d, scale, 1)), r: Array.from(normalize(wave(d, 1, 2))) },
      };
      const plain = await greedy(model, prompt, []);
      for (const kind of KINDS) {
        const edit = (positions: PositionsSpec) => [positionedEdit({ point, positions, ...vectors[kind] })];
        const everyRow = await greedy(model, prompt, edit("all"));
        for (const { spec, name } of POSITIONS) {
          const label = `${kind} at ${name}`;
          const plugins = edit(spec);
          // In-graph: one session with a masked affine site; JS: a cut at the point.
          expect(planSpecOf(model, prompt, plugins), label).toMatchObject({ split: [], read: [], affine: [{ lowRank: kind !== "additive", positioned: true }] });
          expect(planSpecOf(model, prompt, plugins, false).split.length, label).toBe(1);
          const inGraph = await greedy(model, prompt, plugins);
          expectSameRun(inGraph, await greedy(model, prompt, plugins, false), tolerance);

          // The mask selects the right rows: compare with no edit and with the edit on every row.
          const moved = (a: Float32Array, b: Float32Array) => {
            const diff = maxAbsDiff(a, b);
            if (diff > MOVED) return true;
            if (diff <= tolerance) return false;
            throw new Error(`${label}: logits moved by ${diff}, neither clearly (> ${MOVED}) nor within the tolerance ${tolerance}`);
          };
          const [first, second] = inGraph.logits as [Float32Array, Float32Array];
          if (spec === "generated") {
            // The prompt is untouched; the first generated token fed back is edited.
            expect(moved(first, plain.logits[0]!), label).toBe(false);
            expect(inGraph.tokens[0]).toBe(plain.tokens[0]!);
            expect(moved(second, plain.logits[1]!), label).toBe(true);
          } else if (spec === "prompt") {
            // The prompt is edited as with every row; the fed-back token is not.
            expect(moved(first, everyRow.logits[0]!), label).toBe(false);
            expect(moved(first, plain.logits[0]!), label).toBe(true);
            expect(inGraph.tokens[0]).toBe(everyRow.tokens[0]!);
            expect(moved(second, everyRow.logits[1]!), label).toBe(true);
          } else {
            // Rows 0..2 of the prompt are not edited, rows 3..5 are.
            expect(moved(first, plain.logits[0]!), label).toBe(true);
            expect(moved(first, everyRow.logits[0]!), label).toBe(true);
          }
        }
      }
    });
  }

  test("plan cache: positioned and unpositioned edits get different plans; any range shares one", async () => {
    const { model, prompt, point } = cases[0]!;
    const c = Array.from(wave(model.info.dModel, 2));
    const all = planSpecOf(model, prompt, [positionedEdit({ point, positions: "all", c })]);
    const generated = planSpecOf(model, prompt, [positionedEdit({ point, positions: "generated", c })]);
    const range = planSpecOf(model, prompt, [positionedEdit({ point, positions: { from: 2, to: 4 }, c })]);
    expect(all.affine).toEqual([{ point: { site: "resid_post", layer: 1 }, lowRank: false, positioned: false }]);
    expect(planKey(all)).not.toBe(planKey(generated));
    expect(planKey(generated)).toBe(planKey(range));
    const [pAll, pGenerated, pRange] = await Promise.all([model.plan(all), model.plan(generated), model.plan(range)]);
    expect(pAll).not.toBe(pGenerated);
    expect(pGenerated).toBe(pRange);
    // Only the positioned plan takes a row mask.
    expect(pAll.steer.get("resid_post.1")!.mask).toBeNull();
    expect(pGenerated.steer.get("resid_post.1")!.mask).toBe("steerkit.resid_post.1.mask");
    expect(pGenerated.segments.length).toBe(1);
    expect(pGenerated.segments[0]!.inputs).toContain("steerkit.resid_post.1.mask");
    expect(pAll.segments[0]!.inputs).not.toContain("steerkit.resid_post.1.mask");
  });
});
