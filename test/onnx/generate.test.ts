/** The ONNX adapter under core's generate(): real compiled chains choose the hook path. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { generate } from "../../src/core/generate.ts";
import { ablateDirection, addVector } from "../../src/plugins/steering.ts";
import { logger } from "../../src/plugins/logger.ts";
import { wave } from "./helpers/hooks.ts";

const DIR = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
let model: OnnxRuntimeModel;
beforeAll(async () => {
  model = await onnx.load(DIR);
});
afterAll(() => model?.dispose());

const greedy = { tokens: [5, 17, 300, 42], maxTokens: 24, temperature: 0, ignoreEos: true } as const;

describe("ONNX adapter through core generate", () => {
  test("steering recipes give the same tokens in-graph (fast path) and through JS (split)", async () => {
    const plain = await generate(model, greedy);
    expect(plain.tokens.length).toBe(24);
    const recipes = [
      [addVector({ points: ["resid_post.1", "resid_mid.3"], vector: Array.from(wave(32, 3)) })],
      [ablateDirection({ points: "every", direction: Array.from(wave(32, 1, 2)) })],
    ];
    for (const plugins of recipes) {
      const fast = await generate(model, { ...greedy, plugins });
      const js = await generate(model, { ...greedy, plugins, fastPath: false });
      expect(fast.tokens).toEqual(js.tokens);
      expect(fast.tokens).not.toEqual(plain.tokens);
    }
  });

  test("a read-only logger sees every block output and leaves the tokens alone", async () => {
    const plain = await generate(model, greedy);
    const records: { point?: string; norm?: number }[] = [];
    const logged = await generate(model, { ...greedy, plugins: [logger({ points: ["resid_post.*"], topK: 0, onRecord: (r) => records.push(r as never) })] });
    expect(logged.tokens).toEqual(plain.tokens);
    const points = new Set(records.map((r) => r.point));
    expect(points.size).toBe(5);
    expect(records.every((r) => typeof r.norm === "number" && r.norm > 0)).toBe(true);
  });
});
