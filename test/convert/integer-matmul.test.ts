/**
 * The dynamic int8 layout (src/convert/integer-matmul.ts): onnxruntime's symmetric per-channel int8
 * rounding, the transposed [K, N] weight, the graph pattern quantize_dynamic writes, and the
 * options it cannot take.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConvertError, convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { dequantizeColumns, quantizeColumns } from "../../src/convert/integer-matmul.ts";
import { resolveWeights } from "../../src/convert/quantize-weights.ts";
import { decodeModel } from "../../src/formats/onnx/index.ts";
import { writeRandomLlamaGguf } from "../helpers/random-gguf.ts";
import { relativeRms } from "../helpers/relative-rms.ts";
import { OnnxDecoder } from "./run-onnx.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const dir = mkdtempSync(join(tmpdir(), "steerkit-int8-dynamic-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("per-column int8 quantizer", () => {
  test("scale = max|w| / 127 per output feature, q = round half to even, stored transposed [k][n]", () => {
    // W [n=3][k=4]: row 0 max 1.27 -> scale 0.01; row 1 all zero -> scale 1; row 2 max 2.54 -> 0.02.
    const w = new Float32Array([0.5, -1.27, 0.025, 0.015, 0, 0, 0, 0, 2.54, -0.03, 0.01, -2.54]);
    const c = quantizeColumns(w, 3, 4);
    expect(Array.from(c.scales)).toEqual([Math.fround(1.27 / 127), 1, Math.fround(2.54 / 127)]);
    // k-major: element (row r, input i) at i * n + r.
    expect(Array.from(c.q)).toEqual([50, 0, 127, -127, 0, -2, 2, 0, 0, 2, 0, -127]);
    // 0.025 / 0.01 = 2.5 -> 2 and 0.015 / 0.01 = 1.5 -> 2 (half to even, numpy's round); -0.03/0.02 = -1.5 -> -2.
    const back = dequantizeColumns(c);
    for (let i = 0; i < w.length; i++) expect(Math.abs(back[i]! - w[i]!)).toBeLessThanOrEqual(c.scales[Math.floor(i / 4)]! / 2 + 1e-7);
    expect(() => quantizeColumns(w, 2, 4)).toThrow("matrix of 12 values is not 2 x 4");
  });
});

describe("--weights int8-dynamic", () => {
  test("writes quantize_dynamic's pattern: one DynamicQuantizeLinear per input, MatMulInteger -> Cast -> Mul by x_scale * w_scale", async () => {
    const f16 = join(dir, "random-d256.gguf");
    writeRandomLlamaGguf(f16, { d: 256, layers: 2, ff: 512, heads: 4, kvHeads: 2, vocab: 512, ctx: 128 });
    const report = await convertGgufToOnnx(f16, join(dir, "dyn"), { weights: "int8-dynamic" });
    // 7 matrices per layer + the output head.
    expect(report.integerQuantized).toEqual({ matrices: 2 * 7 + 1 });
    expect(report.blockQuantized).toBeNull();
    const g = decodeModel(readFileSync(join(dir, "dyn", "model.onnx"))).graph!;
    const byOutput = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const mm = g.nodes.find((n) => n.name === "/model/layers.0/self_attn/q_proj/MatMul_quant")!;
    expect(mm.opType).toBe("MatMulInteger");
    expect(mm.inputs.slice(1)).toEqual(["model.layers.0.self_attn.q_proj.weight_quantized", mm.inputs[2]!, "model.layers.0.self_attn.q_proj.weight_zero_point"]);
    const dql = byOutput.get(mm.inputs[0]!)!;
    expect(dql.opType).toBe("DynamicQuantizeLinear");
    expect(dql.outputs).toEqual([mm.inputs[0]!, `${dql.inputs[0]}_scale`, mm.inputs[2]!]);
    // k and v reuse q's quantized input.
    expect(g.nodes.find((n) => n.name === "/model/layers.0/self_attn/v_proj/MatMul_quant")!.inputs[0]).toBe(mm.inputs[0]);
    const w = g.initializers.find((t) => t.name === "model.layers.0.self_attn.q_proj.weight_quantized")!;
    expect(w.dataType).toBe(3); // int8
    expect(w.dims.map(Number)).toEqual([256, 256]); // [K in, N out]
    expect(g.initializers.find((t) => t.name === "model.layers.0.mlp.gate_proj.weight_scale")!.dims.map(Number)).toEqual([512]);
    const final = g.nodes.find((n) => n.name === "/model/layers.0/self_attn/q_proj/MatMul_quant_output_scale_mul")!;
    expect(byOutput.get(final.inputs[0]!)!.opType).toBe("Cast");
    expect(byOutput.get(final.inputs[1]!)!.inputs).toEqual([`${dql.inputs[0]}_scale`, "model.layers.0.self_attn.q_proj.weight_scale"]);

    // Close to the float32 export of the same weights: measured relative RMS of the prompt's logits 0.030.
    await convertGgufToOnnx(f16, join(dir, "fp32"), { weights: "fp32" });
    const shape = { nLayers: 2, nKvHeads: 2, headDim: 64, vocabSize: 512 };
    const run = async (d: string) => {
      const dec = await OnnxDecoder.open(join(d, "model.onnx"), shape);
      return Float32Array.from(await dec.feed([1, 300, 301, 302, 303]));
    };
    const rel = relativeRms(await run(join(dir, "dyn")), Float32Array.from(await run(join(dir, "fp32"))));
    expect(rel).toBeLessThan(0.05);
  });

  test("takes no block size and no genai layout, and says why", async () => {
    expect(() => resolveWeights({ weights: "int8-dynamic", blockSize: 32 })).toThrow("blockSize applies to int8/int4 weights, not int8-dynamic (one scale per output column, no blocks)");
    const e = await convertGgufToOnnx(MODEL, join(dir, "bad"), { weights: "int8-dynamic", layout: "genai" }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(ConvertError);
    expect((e as Error).message).toContain("int8-dynamic writes the optimum layout");
  });
});
