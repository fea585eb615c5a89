/**
 * GGUF quantization through libllama's own llama_model_quantize (src/adapters/llama-cpp/quantize.ts):
 * on a random llama of width 256 (K-quants need rows that are multiples of 256; stories260K's are 64),
 * written by bench/make-random-gguf.ts. Each type: the file's tensor types, generation, the three
 * steering paths (control vector, native callback, JS hook) agreeing, and logits near the f16 model's.
 * With STEERKIT_LLAMA_QUANTIZE (a llama-quantize built from the pinned source), the files are compared
 * byte for byte with the tool's.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AffineEdit } from "../../src/core/backend.ts";
import type { HookPoint } from "../../src/core/sites.ts";
import { generate } from "../../src/core/generate.ts";
import { DEFAULT_MODEL_PATH, loadModel, quantizeGguf, QUANT_TYPE_INFO, QUANT_TYPES, QuantizeError, type LlamaModel, type LlamaSequenceOptions, type QuantType } from "../../src/adapters/llama-cpp/index.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { ggmlTypeName } from "../../src/formats/ggml-types.ts";
import { applyAffineJs, makeHooks, maxAbsDiff, randomVector } from "./hooks-helpers.ts";
import { writeRandomLlamaGguf } from "../helpers/random-gguf.ts";
import { relativeRms } from "../helpers/relative-rms.ts";
import { greedySequence, type Run } from "../parity/parity-helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-quantize-"));
const f16 = join(dir, "random-d256-f16.gguf");
const PROMPT = [1, 403, 407, 261, 378, 300, 11];
const STEPS = 6;


/**
 * RMS of (quantized - f16) over the prompt's next-token logits, as a fraction of the f16 logits'
 * standard deviation. Measured on this model (random weights: every weight equally important, the
 * worst case for rounding; 4 layers; llama.cpp also rounds activations to 8 bits for quantized
 * matmuls): q8_0 0.022, q5_k_m 0.12, q4_k_m 0.23, q4_0 0.27. The tolerances leave about 1.7-2x room.
 */
const TOLERANCE: Record<QuantType, number> = { q8_0: 0.05, q5_k_m: 0.25, q4_k_m: 0.4, q4_0: 0.45 };

beforeAll(() => {
  writeRandomLlamaGguf(f16, { d: 256, layers: 4, ff: 768, heads: 4, kvHeads: 4, vocab: 512, ctx: 256 });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Prefill PROMPT, then STEPS greedy tokens, on a sequence with these options. */
function run(model: LlamaModel, options: LlamaSequenceOptions): Promise<Run> {
  return greedySequence(model, options, STEPS, PROMPT);
}

describe("quantizeGguf", () => {
  let reference: { logits: Float32Array[]; tokens: number[] };
  beforeAll(async () => {
    const model = loadModel(f16, { threads: 1, contextLength: 64 });
    try {
      reference = await run(model, {});
    } finally {
      model.dispose();
    }
  });

  for (const type of QUANT_TYPES) {
    test(`${type}: the requested tensor types, tokens, steering on every path (cvec, native additive and rank-1, JS), logits near f16`, async () => {
      const out = join(dir, `random-${type}.gguf`);
      const report = quantizeGguf(f16, out, { type, threads: 2 });
      const info = QUANT_TYPE_INFO[type];
      const file = readGgufHeader(out);
      expect(file.metadata.get("general.file_type")).toBe(info.ftype);
      const matrices = file.tensors.filter((t) => t.dims.length === 2).map((t) => ggmlTypeName(t.type));
      for (const t of matrices) expect(info.allowed).toContain(t);
      // The base type is most matrices' type: the file is not a silent fallback to something else.
      expect(matrices.filter((t) => t === info.base).length).toBeGreaterThan(matrices.length / 2);
      for (const t of file.tensors.filter((t) => t.dims.length === 1)) expect(ggmlTypeName(t.type)).toBe("F32");
      expect(report.tensorTypes[info.base]).toBe(matrices.filter((t) => t === info.base).length);
      expect(report.outputBytes).toBeLessThan(report.inputBytes);

      const model = loadModel(out, { threads: 1, contextLength: 64 });
      try {
        const plain = await run(model, {});
        expect(plain.tokens.length).toBe(STEPS);
        const deviation = relativeRms(plain.logits[0]!, reference.logits[0]!);
        expect(deviation).toBeGreaterThan(0); // it is a different model
        expect(deviation).toBeLessThan(TOLERANCE[type]);

        // add-vector at resid_post.2: control vector (fast path), the native callback, a JS hook.
        const point: HookPoint = { site: "resid_post", layer: 2 };
        const edit: AffineEdit = { point, rank: 0, U: null, V: null, c: randomVector(model.info.dModel, 5, 2) };
        const fn = (_p: HookPoint, x: Parameters<typeof applyAffineJs>[1]) => applyAffineJs(edit, x);
        const fastSeq = model.createSequence({ hooks: makeHooks([point], fn, [edit]) });
        expect(fastSeq.pointModes.get("resid_post.2")).toBe("cvec");
        fastSeq.free();
        const cvec = await run(model, { hooks: makeHooks([point], fn, [edit]) });
        const native = await run(model, { hooks: makeHooks([point], fn, [edit]), fastPath: "callback" });
        const js = await run(model, { hooks: makeHooks([point], fn) });
        expect(maxAbsDiff(js.logits[0]!, plain.logits[0]!)).toBeGreaterThan(1e-2); // the edit matters
        expect(cvec.tokens).toEqual(js.tokens);
        expect(native.tokens).toEqual(js.tokens);
        for (let s = 0; s <= STEPS; s++) {
          expect(maxAbsDiff(cvec.logits[s]!, js.logits[s]!)).toBeLessThan(1e-3);
          expect(maxAbsDiff(native.logits[s]!, js.logits[s]!)).toBeLessThan(1e-3);
        }
        // A rank-1 edit (directional ablation plus a shift) mid-block: native callback = JS hook.
        const midPoint: HookPoint = { site: "resid_mid", layer: 1 };
        const u = randomVector(model.info.dModel, 9, 0.1);
        // A moderate edit: at 20x the generator's O(1) activations blow up, and Q8_0 / K-quant matmuls,
        // which round their activations to 8 bits, turn the paths' last-bit float differences into 0.1 logit jumps.
        const ablate: AffineEdit = { point: midPoint, rank: 1, U: u, V: u.map((x) => -x * 2), c: randomVector(model.info.dModel, 10, 0.5) };
        const fnMid = (_p: HookPoint, x: Parameters<typeof applyAffineJs>[1]) => applyAffineJs(ablate, x);
        const nativeMid = await run(model, { hooks: makeHooks([midPoint], fnMid, [ablate]) });
        const jsMid = await run(model, { hooks: makeHooks([midPoint], fnMid) });
        expect(maxAbsDiff(jsMid.logits[0]!, plain.logits[0]!)).toBeGreaterThan(1e-2);
        expect(nativeMid.tokens).toEqual(jsMid.tokens);
        for (let s = 0; s <= STEPS; s++) expect(maxAbsDiff(nativeMid.logits[s]!, jsMid.logits[s]!)).toBeLessThan(1e-3);
      } finally {
        model.dispose();
      }
    });
  }

  test("stories260K (a trained model) at q8_0 writes the same 32 greedy tokens as its F32 original", async () => {
    const out = join(dir, "stories-q8_0.gguf");
    quantizeGguf(DEFAULT_MODEL_PATH, out, { type: "q8_0", threads: 2 });
    const greedy = async (path: string) => {
      const model = loadModel(path, { threads: 1, contextLength: 64 });
      try {
        return (await generate(model, { prompt: "Once upon a time", maxTokens: 32, temperature: 0, ignoreEos: true })).tokens;
      } finally {
        model.dispose();
      }
    };
    expect(await greedy(out)).toEqual(await greedy(DEFAULT_MODEL_PATH));
  });

  test("clear errors: unknown type, missing input, input = output, an already quantized input", () => {
    expect(() => quantizeGguf(f16, join(dir, "x.gguf"), { type: "q3_k" as QuantType })).toThrow(/unknown quantization type "q3_k": expected one of q4_0, q4_k_m, q5_k_m, q8_0/);
    expect(() => quantizeGguf(join(dir, "none.gguf"), join(dir, "x.gguf"), { type: "q8_0" })).toThrow(/none.gguf: no such file/);
    expect(() => quantizeGguf(f16, f16, { type: "q8_0" })).toThrow(/is the input model itself/);
    expect(() => quantizeGguf(f16, join(dir, "no-dir", "x.gguf"), { type: "q8_0" })).toThrow(/directory .*no-dir does not exist/);
    expect(() => quantizeGguf(f16, dir, { type: "q8_0" })).toThrow(/is a directory: give the path of the .gguf file to write/);
    const q8 = join(dir, "requant-src.gguf");
    quantizeGguf(f16, q8, { type: "q8_0", threads: 2 });
    expect(() => quantizeGguf(q8, join(dir, "x.gguf"), { type: "q4_0" })).toThrow(QuantizeError);
    expect(() => quantizeGguf(q8, join(dir, "x.gguf"), { type: "q4_0" })).toThrow(/is already quantized \(tensor ".*" is Q8_0\)/);
    expect(quantizeGguf(q8, join(dir, "requant.gguf"), { type: "q4_0", allowRequantize: true, threads: 2 }).tensorTypes.Q4_0).toBeGreaterThan(0);
    // A damaged input is refused before llama.cpp sees it, and nothing is written.
    const bad = join(dir, "bad.gguf");
    writeFileSync(bad, readFileSync(f16).subarray(0, 5000));
    expect(() => quantizeGguf(bad, join(dir, "from-bad.gguf"), { type: "q8_0" })).toThrow(/bad.gguf/);
    expect(() => readFileSync(join(dir, "from-bad.gguf"))).toThrow();
  });

  const tool = process.env.STEERKIT_LLAMA_QUANTIZE;
  test.skipIf(!tool)("llama-quantize (STEERKIT_LLAMA_QUANTIZE) writes the same bytes for every type", () => {
    for (const type of QUANT_TYPES) {
      const ours = join(dir, `ours-${type}.gguf`);
      const theirs = join(dir, `tool-${type}.gguf`);
      quantizeGguf(f16, ours, { type, threads: 2 });
      const p = Bun.spawnSync([tool!, f16, theirs, type.toUpperCase(), "2"], { stdout: "pipe", stderr: "pipe" });
      expect(p.exitCode).toBe(0);
      expect(Buffer.compare(readFileSync(ours), readFileSync(theirs))).toBe(0);
    }
  });
});
