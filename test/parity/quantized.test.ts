/**
 * Quantized weights, the same model on both backends: stories260K quantized by llama.cpp's own
 * quantizer (Q4_0 / Q8_0, `pure`: every matrix at the type, as onnxruntime-genai's int4 builder
 * quantizes every matrix) and converted to ONNX with `--weights int4 / int8`, which repacks
 * llama.cpp's blocks into MatMulNBits without loss. Both backends then multiply by the same weights
 * and both round activations to int8 per 32-block (llama.cpp's Q8_0 dot, MatMulNBits accuracy_level
 * 4), so greedy decoding must agree, steered and unsteered. llama.cpp leaves stories260K's ffn_down
 * (rows of 172, not whole 32-blocks) in F16; the converter keeps the same matrices float.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Model } from "../../src/core/backend.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { llamaCpp, quantizeGguf } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { referenceLlama } from "../../src/testing/index.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { ggmlTypeName } from "../../src/formats/ggml-types.ts";
import { decodeModel } from "../../src/formats/onnx/index.ts";
import { greedy, maxLogitsDiff } from "./parity-helpers.ts";
import { writeRandomLlamaGguf } from "../helpers/random-gguf.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const STEPS = 48;
/**
 * Max |logit difference| at any step (logits reach ~18). Measured: int4 0.40 unsteered, 0.33
 * steered; int8 0.32 / 0.28. Ten times the float parity test's 0.02-0.03: the weights are the same,
 * but each backend rounds the activations to int8 its own way (ggml: Q8_0 with an f16 scale per 32;
 * MLAS: its own int8 blocks). With MatMulNBits accuracy_level 0 (float32 activations) the difference
 * is still 0.24-0.26 — llama.cpp's own rounding alone — so the tolerance is about rounding, not layout.
 */
const LOGITS_TOLERANCE = 0.6;
const dir = mkdtempSync(join(tmpdir(), "steerkit-parity-quant-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/**
 * int8-dynamic (DynamicQuantizeLinear + MatMulInteger, onnxruntime's quantize_dynamic layout) is not
 * the same weights: Q8_0's blocks are dequantized and rounded again to one scale per output column,
 * and activations are rounded to uint8 with one scale per tensor. Measured on stories260K Q8_0 over
 * 48 steps: max |logit difference| 0.43 unsteered, 0.38 steered (MatMulNBits int8 on the same file:
 * 0.32 / 0.28; logits reach ~22); greedy tokens still identical.
 */
const TOLERANCES = { int4: LOGITS_TOLERANCE, int8: LOGITS_TOLERANCE, "int8-dynamic": 0.6 } as const;

for (const [type, weights] of [["q4_0", "int4"], ["q8_0", "int8"], ["q8_0", "int8-dynamic"]] as const) {
  const tolerance = TOLERANCES[weights];
  describe(`${type} GGUF on llama.cpp = its ${weights} ONNX conversion on ONNX Runtime`, () => {
    let llama: Model;
    let ort: Model;
    const gguf = join(dir, `stories-${type}.gguf`);
    const out = join(dir, `stories-${weights}`);
    beforeAll(async () => {
      quantizeGguf(MODEL, gguf, { type, pure: true, threads: 2 });
      await convertGgufToOnnx(gguf, out, { weights });
      llama = await llamaCpp.load(gguf, { contextLength: 256, threads: 1 });
      ort = await onnx.load(out, { contextLength: 256, threads: 1 });
    });
    afterAll(() => {
      llama?.dispose();
      ort?.dispose();
    });

    test(`the export multiplies with ${weights === "int8-dynamic" ? "MatMulInteger" : "MatMulNBits"} exactly where the GGUF has quantized blocks`, () => {
      const file = readGgufHeader(gguf);
      const quantized = file.tensors.filter((t) => t.dims.length === 2 && ggmlTypeName(t.type) === type.toUpperCase()).length;
      const graph = decodeModel(readFileSync(join(out, "model.onnx"))).graph!;
      if (weights === "int8-dynamic") {
        const count = (op: string) => graph.nodes.filter((n) => n.opType === op).length;
        expect(count("MatMulNBits")).toBe(0);
        expect(count("MatMulInteger")).toBe(quantized - 1);
        // q/k/v share one quantized input, as do gate/up: 1 (attention) + 1 (o) + 1 (gate/up) per layer + head.
        const layers = file.tensors.filter((t) => t.name.endsWith(".attn_q.weight")).length;
        expect(count("DynamicQuantizeLinear")).toBe(3 * layers + 1);
        for (const n of graph.nodes.filter((x) => x.opType === "MatMulInteger")) {
          const w = graph.initializers.find((t) => t.name === n.inputs[1])!;
          const zp = graph.initializers.find((t) => t.name === n.inputs[3]);
          expect(w.dataType).toBe(3); // int8
          expect(zp?.dataType).toBe(3);
          expect(zp?.rawData?.every((x) => x === 0)).toBe(true); // symmetric: zero point 0, as quantize_dynamic's per-channel int8
        }
        return;
      }
      const nbits = graph.nodes.filter((n) => n.opType === "MatMulNBits");
      // token_embd is gathered (dequantized), every other quantized matrix is a MatMulNBits.
      expect(nbits.length).toBe(quantized - 1);
      for (const n of nbits) {
        const attrs = Object.fromEntries(n.attributes.map((a) => [a.name, Number(a.i)]));
        expect(attrs).toMatchObject({ bits: weights === "int4" ? 4 : 8, block_size: 32, accuracy_level: 4 });
        expect(n.domain).toBe("com.microsoft");
      }
    });

    for (const steering of [null, { scale: 2, fastPath: false }, { scale: 2, fastPath: true }]) {
      const what = steering ? `steered (${steering.fastPath ? "native affine paths" : "JS hooks"})` : "unsteered";
      test(`${what}: identical greedy tokens for ${STEPS} steps, logits within ${tolerance}`, async () => {
        const a = await greedy(llama, steering, STEPS);
        const b = await greedy(ort, steering, STEPS);
        expect(b.tokens).toEqual(a.tokens);
        expect(maxLogitsDiff(a, b)).toBeLessThan(tolerance);
        expect(new Set(a.tokens).size).toBeGreaterThan(15); // a story, not one repeated token
        if (steering) expect(maxLogitsDiff(a, await greedy(llama, null, STEPS))).toBeGreaterThan(1);
      });
    }
  });
}

/**
 * int8-dynamic on a random llama with 256-wide rows (every matrix Q8_0, no float fallback): random
 * weights give near-tied logits, so greedy runs of any two int8 roundings part after a dozen steps
 * (measured: MatMulNBits int8 at step 19 / 14 steered, int8-dynamic at 19 / 15). Compared: the prompt's
 * logits relative to their largest magnitude (~10), measured 0.043 unsteered, 0.038 steered (MatMulNBits
 * int8 on the same file: 0.020 / 0.021), and the first 8 greedy tokens.
 */
describe("random d256 Q8_0 on llama.cpp = its int8-dynamic ONNX conversion", () => {
  const f16 = join(dir, "random-d256-dyn.gguf");
  const gguf = join(dir, "random-d256-dyn-q8_0.gguf");
  const out = join(dir, "random-d256-dyn-onnx");
  let llama: Model;
  let ort: Model;
  beforeAll(async () => {
    writeRandomLlamaGguf(f16, { d: 256, layers: 3, ff: 512, heads: 4, kvHeads: 2, vocab: 512, ctx: 256 });
    quantizeGguf(f16, gguf, { type: "q8_0", pure: true, threads: 2 });
    await convertGgufToOnnx(gguf, out, { weights: "int8-dynamic" });
    llama = await llamaCpp.load(gguf, { contextLength: 128, threads: 1 });
    ort = await onnx.load(out, { contextLength: 128, threads: 1 });
  });
  afterAll(() => {
    llama?.dispose();
    ort?.dispose();
  });
  for (const steering of [null, { scale: 2, fastPath: true }]) {
    test(`${steering ? "steered" : "unsteered"}: the prompt's logits within 0.08 of their largest, the first 8 greedy tokens equal`, async () => {
      const a = await greedy(llama, steering, 8);
      const b = await greedy(ort, steering, 8);
      expect(b.tokens).toEqual(a.tokens);
      const scale = Math.max(...a.logits[0]!.map(Math.abs));
      expect(maxLogitsDiff({ tokens: [], logits: [a.logits[0]!] }, { tokens: [], logits: [b.logits[0]!] }) / scale).toBeLessThan(0.08);
    });
  }
});

/**
 * GGUFs in llama.cpp's K-quant mixes converted to float32 ONNX (the blocks dequantized exactly as
 * ggml does: ggml-quants.ts, checked bit for bit against gguf-py's dequantizers during development):
 * the export runs llama.cpp's weights in float arithmetic, llama.cpp the same weights with 8-bit
 * activations. Stories260K's 64-wide rows make llama.cpp fall back to Q5_0 / Q5_1 / Q8_0; a 256-wide
 * random llama gets real Q4_K / Q5_K / Q6_K.
 */
describe("K-quant GGUFs (Q4_K_M, Q5_K_M) convert to ONNX, load in the reference backend, and match llama.cpp on the same file", () => {
  // stories260K: measured 0.21 / 0.24 over 24 steps (llama.cpp's 8-bit activations against float ones).
  const f16 = join(dir, "random-d256.gguf");
  beforeAll(() => {
    writeRandomLlamaGguf(f16, { d: 256, layers: 3, ff: 512, heads: 4, kvHeads: 2, vocab: 512, ctx: 256 });
  });
  for (const [source, type, expected, tolerance] of [
    [MODEL, "q4_k_m", ["Q5_0", "Q8_0"], 0.6],
    [MODEL, "q5_k_m", ["Q5_1", "Q8_0"], 0.6],
    ["random", "q4_k_m", ["Q4_K", "Q6_K"], 0.05], // relative to max |logit|
    ["random", "q5_k_m", ["Q5_K", "Q6_K"], 0.05],
  ] as const) {
    const name = source === MODEL ? "stories260K" : "random d256";
    test(`${name} ${type} (${expected.join(", ")}): ${source === MODEL ? "greedy tokens equal, logits" : "the prompt's logits"} within ${tolerance}${source === MODEL ? "" : " of their largest"}`, async () => {
      const src = source === MODEL ? MODEL : f16;
      const gguf = join(dir, `${name.replace(/\W/g, "")}-${type}.gguf`);
      quantizeGguf(src, gguf, { type, threads: 2 });
      const types = new Set(readGgufHeader(gguf).tensors.filter((t) => t.dims.length === 2).map((t) => ggmlTypeName(t.type)));
      for (const t of expected) expect(types).toContain(t);
      const out = `${gguf}-onnx`;
      await convertGgufToOnnx(gguf, out);
      const a = await llamaCpp.load(gguf, { contextLength: 128, threads: 1 });
      const b = await onnx.load(out, { contextLength: 128, threads: 1 });
      try {
        const x = await greedy(a, null, 24);
        const y = await greedy(b, null, 24);
        if (source === MODEL) {
          expect(y.tokens).toEqual(x.tokens);
          expect(maxLogitsDiff(x, y)).toBeLessThan(tolerance);
          // The reference backend reads the same blocks (float activations, like the ONNX export).
          const r = await referenceLlama.load(gguf, { contextLength: 128 });
          try {
            expect((await greedy(r, null, 24)).tokens).toEqual(x.tokens);
          } finally {
            r.dispose();
          }
        } else {
          // Random weights: only the prompt's logits are compared, relative to their largest magnitude
          // (llama.cpp rounds activations to 8 bits in K-quant dot products, the export keeps them float;
          // measured 0.024 / 0.029 of max |logit| ~9 on the generator's d256 llama).
          const scale = Math.max(...x.logits[0]!.map(Math.abs));
          expect(maxLogitsDiff({ tokens: [], logits: [x.logits[0]!] }, { tokens: [], logits: [y.logits[0]!] }) / scale).toBeLessThan(tolerance);
        }
      } finally {
        a.dispose();
        b.dispose();
      }
    });
  }
});
