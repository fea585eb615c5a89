/**
 * Read-only points beside writing ones, through core's chain and generate: a plugin that only
 * reads costs the plan extra outputs, never a graph cut, and sees the stream after every upstream
 * edit (JS at a cut, in-graph affine, in-graph masked), exactly what the same reader sees when it
 * declares a write and so runs on the JS path at cuts of its own.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { compileChain } from "../../src/core/chain.ts";
import { generate } from "../../src/core/generate.ts";
import type { ConfiguredPlugin } from "../../src/core/plugin.ts";
import { maxAbsDiff, wave } from "./helpers/hooks.ts";
import { positionedEdit, recordResidual, type ResidualRecord } from "./helpers/plugins.ts";

const DIR = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
const PROMPT = [5, 17, 300, 42, 999, 0];
const WRITE_AT = "resid_post.1";
/** One point upstream of the edit, two downstream (the last inside the final norm). */
const READ_AT = ["resid_mid.0", "resid_post.3", "resid_post.4"];

let model: OnnxRuntimeModel;
beforeAll(async () => {
  model = await onnx.load(DIR);
});
afterAll(() => model?.dispose());

interface Observed {
  tokens: number[];
  /** Point name -> what the reader saw there, one record per step. */
  seen: Map<string, ResidualRecord[]>;
}

async function observe(writer: ConfiguredPlugin[], readerWrites: boolean, fastPath: boolean): Promise<Observed> {
  const seen = new Map<string, ResidualRecord[]>();
  const reader = recordResidual({ points: READ_AT, write: readerWrites, sink: (r) => (seen.get(r.point) ?? seen.set(r.point, []).get(r.point)!).push(r) });
  const r = await generate(model, { tokens: PROMPT, maxTokens: 6, temperature: 0, ignoreEos: true, fastPath, plugins: [...writer, reader] });
  return { tokens: r.tokens, seen };
}

function planSpecOf(plugins: ConfiguredPlugin[], fastPath: boolean) {
  return model.planSpec(compileChain(plugins, model, { promptTokens: PROMPT, fastPath }).residual);
}

function maxDiff(a: ResidualRecord[], b: ResidualRecord[]): number {
  expect(a.map((r) => r.positions)).toEqual(b.map((r) => r.positions));
  return Math.max(...a.map((r, i) => maxAbsDiff(r.data, b[i]!.data)));
}

const c = Array.from(wave(32, 2));
/** `from`: the first edited position (causal attention keeps earlier rows unsteered). */
const writers: { label: string; plugins: ConfiguredPlugin[]; fastPath: boolean; splits: number; from: number }[] = [
  { label: "a JS edit at a cut", plugins: [positionedEdit({ point: WRITE_AT, positions: "all", c })], fastPath: false, splits: 1, from: 0 },
  { label: "an in-graph affine edit", plugins: [positionedEdit({ point: WRITE_AT, positions: "all", c })], fastPath: true, splits: 0, from: 0 },
  { label: "an in-graph masked edit", plugins: [positionedEdit({ point: WRITE_AT, positions: { from: 4 }, c })], fastPath: true, splits: 0, from: 4 },
];

describe("read-only points beside writing points (ONNX)", () => {
  for (const w of writers) {
    test(`beside ${w.label}: extra outputs, no cut, and the values a JS-path reader sees`, async () => {
      const reader = recordResidual({ points: READ_AT, sink: () => {} });
      const spec = planSpecOf([...w.plugins, reader], w.fastPath);
      expect(spec.read.map((p) => `${p.site}.${p.layer}`)).toEqual(READ_AT);
      expect(spec.split.length).toBe(w.splits);
      const plan = await model.plan(spec);
      expect(plan.segments.length).toBe(spec.split.length + 1);
      expect(plan.reads.length).toBe(READ_AT.length);
      // Declaring a write puts the reader on the JS path: a cut at each of its points.
      const jsSpec = planSpecOf([...w.plugins, recordResidual({ points: READ_AT, write: true, sink: () => {} })], w.fastPath);
      expect(jsSpec.split.length).toBe(w.splits + READ_AT.length);
      expect(jsSpec.read).toEqual([]);

      const readOnly = await observe(w.plugins, false, w.fastPath);
      const jsPath = await observe(w.plugins, true, w.fastPath);
      const unsteered = await observe([], false, w.fastPath);
      expect(readOnly.tokens).toEqual(jsPath.tokens);
      for (const point of READ_AT) {
        // Prompt, then every generated token but the last (which is never fed back).
        expect(readOnly.seen.get(point)!.length).toBe(6);
        expect(maxDiff(readOnly.seen.get(point)!, jsPath.seen.get(point)!)).toBeLessThan(1e-5);
      }
      // Upstream of the edit the stream is the unsteered one; downstream the reader sees the edit.
      expect(maxDiff(readOnly.seen.get("resid_mid.0")!.slice(0, 1), unsteered.seen.get("resid_mid.0")!.slice(0, 1))).toBeLessThan(1e-5);
      for (const point of READ_AT.slice(1)) {
        const [steered, plain] = [readOnly.seen.get(point)![0]!.data, unsteered.seen.get(point)![0]!.data];
        const rows = w.from * 32;
        expect(maxAbsDiff(steered.subarray(rows), plain.subarray(rows))).toBeGreaterThan(0.5);
        if (rows > 0) expect(maxAbsDiff(steered.subarray(0, rows), plain.subarray(0, rows))).toBeLessThan(1e-5);
      }
    });
  }
});
