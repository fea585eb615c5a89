/**
 * The ONNX adapter on the layouts Hugging Face tools write: Optimum's merged decoder
 * (`decoder_model_merged.onnx`: an `If` on `use_cache_branch` around the no-past and with-past
 * decoders) and transformers.js v3's `onnx/model.onnx` with the configs at the root. The fixtures are
 * written by test/onnx/helpers/optimum-export.ts from seeded random GGUFs (llama: q/k un-permuted to
 * HF's layout with rotate_half; mistral3: head_dim x heads != hidden_size; smollm3: NoPE blocks without rotary; qwen2: biases; phi3: fused qkv/gate_up, partial rotary; qwen3 / gemma3: q/k norms; gemma2/3: normalizer, soft-caps,
 * sliding masks, post-norms, gemma3's local rotary; gpt2: learned positions, decomposed LayerNorm, Conv1D
 * c_attn split into q/k/v, gelu_new), so the reference backend on the same GGUF is the oracle: every
 * residual point is found at the Adds the exporter names (`/model/layers.N/Add` and `Add_1`,
 * `/transformer/h.N/...` for GPT-2), reads the reference's values there, and greedy generation,
 * unsteered and steered, equals the reference's. With STEERKIT_ONNX_PYTHON naming a Python that has the
 * `onnx` package (Debian: python3-onnx), each fixture must also pass `onnx.checker.check_model(full_check=True)`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Model } from "../../src/core/backend.ts";
import { allPoints, pointName } from "../../src/core/sites.ts";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { readExportDir } from "../../src/adapters/onnx/export-dir.ts";
import { addVector, ablateDirection } from "../../src/plugins/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { encodeRandomGguf, writeRandomGguf } from "../../src/testing/random-gguf.ts";
import { rewriteGguf } from "../convert/gguf-edit.ts";
import { type OptimumLayout, writeOptimumExport } from "./helpers/optimum-export.ts";
import { makeHooks, maxAbsDiff, wave } from "./helpers/hooks.ts";
import { greedyChain } from "../parity/parity-helpers.ts";

const STEPS = 32;
const PROMPT = [1, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140];
/** Both compute in float32 with different summation orders; measured below 2e-5. */
const TOLERANCE = 1e-4;
const dir = mkdtempSync(join(tmpdir(), "steerkit-optimum-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function greedy(model: Model, steered: { fastPath: boolean } | null) {
  const d = model.info.dModel;
  const plugins = [
    ablateDirection({ direction: Array.from(wave(d, 1, 0.3)), points: ["resid_mid.1"] }),
    addVector({ points: ["resid_post.0"], vector: Array.from(wave(d, 1, 1.1)), scale: 4 }),
  ];
  return greedyChain(model, plugins, steered, STEPS, PROMPT);
}

const PYTHON = process.env.STEERKIT_ONNX_PYTHON;
function checkWithOnnxPackage(file: string): void {
  const p = Bun.spawnSync([PYTHON!, "-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", file]);
  expect(p.stderr.toString()).toBe("");
  expect(p.exitCode).toBe(0);
}

const LAYOUTS: [OptimumLayout, string][] = [
  ["optimum-merged", "decoder_model_merged.onnx (Optimum, transformers.js v2)"],
  ["transformers.js", "onnx/model.onnx (transformers.js v3)"],
];

/** Where the exporter's residual Adds are: the scope of block L. */
const BLOCK_SCOPE = { llama: "/model/layers.", mistral3: "/model/layers.", smollm3: "/model/layers.", qwen2: "/model/layers.", qwen3: "/model/layers.", phi3: "/model/layers.", gemma2: "/model/layers.", gemma3: "/model/layers.", gpt2: "/transformer/h." } as const;

for (const arch of ["llama", "mistral3", "smollm3", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "gpt2"] as const) {
  for (const [layout, what] of LAYOUTS) {
    describe(`${arch} laid out as ${what}`, () => {
      const gguf = join(dir, `${arch}.gguf`);
      const out = join(dir, `${arch}-${layout}`);
      let reference: Model;
      let exported: OnnxRuntimeModel;
      const open = async () => {
        if (exported) return;
        writeRandomGguf(gguf, { arch });
        writeOptimumExport(gguf, out, layout);
        reference = loadReferenceLlama(gguf, { contextLength: 128 });
        exported = await onnx.load(out, { contextLength: 128, threads: 1 }); // the directory, as downloaded
      };
      afterAll(() => {
        reference?.dispose();
        exported?.dispose();
      });

      test.skipIf(!PYTHON)("the fixture is valid ONNX to the onnx package's full checker (STEERKIT_ONNX_PYTHON)", async () => {
        await open();
        checkWithOnnxPackage(join(out, layout === "transformers.js" ? "onnx/model.onnx" : "decoder_model_merged.onnx"));
      });

      test("the export is found from its directory, with its config and tokenizer", async () => {
        await open();
        // The export names its HF model_type: Mistral Small 3.1's text model is "mistral" (GGUF: mistral3).
        expect(exported.info).toMatchObject({ architecture: arch === "mistral3" ? "mistral" : arch, nLayers: reference.info.nLayers, dModel: reference.info.dModel, vocabSize: reference.info.vocabSize });
        expect(exported.tokenize("Once upon a time")).toEqual(reference.tokenize("Once upon a time"));
      });

      test("every residual point is found at the exporter's Adds and reads the reference's values", async () => {
        await open();
        const n = reference.info.nLayers;
        const names = allPoints(n).map(pointName);
        expect([...exported.sites.keys()].sort()).toEqual([...names].sort());
        for (let L = 0; L < n; L++) {
          expect(exported.sites.get(`resid_mid.${L}`)).toBe(`${BLOCK_SCOPE[arch]}${L}/Add_output_0`);
          expect(exported.sites.get(`resid_post.${L}`)).toBe(`${BLOCK_SCOPE[arch]}${L}/Add_1_output_0`);
        }
        const read = async (m: Model) => {
          const hooks = makeHooks({ points: names, writes: false });
          const seq = m.createSequence({ hooks });
          await seq.prefill(PROMPT);
          await seq.decode(9);
          seq.free();
          return hooks.seen;
        };
        const a = await read(reference);
        const b = await read(exported);
        for (const name of names) for (let s = 0; s < 2; s++) expect(maxAbsDiff(a.get(name)![s]!, b.get(name)![s]!)).toBeLessThan(TOLERANCE * 10);
      });

      for (const steered of [null, { fastPath: true }, { fastPath: false }]) {
        const label = steered ? `steered (${steered.fastPath ? "in-graph affine" : "JS hooks, split graph"})` : "unsteered";
        test(`${label}: the same ${STEPS} greedy tokens as the reference backend, logits within ${TOLERANCE}`, async () => {
          await open();
          const a = await greedy(reference, steered);
          const b = await greedy(exported, steered);
          expect(b.tokens).toEqual(a.tokens);
          let diff = 0;
          a.logits.forEach((x, s) => (diff = Math.max(diff, maxAbsDiff(x, b.logits[s]!))));
          expect(diff).toBeLessThan(TOLERANCE);
          if (steered) expect(a.tokens).not.toEqual((await greedy(reference, null)).tokens);
        });
      }
    });
  }
}

/**
 * transformers.js's `onnx/model_quantized.onnx`: onnxruntime's quantize_dynamic (int8 MatMulInteger),
 * on one model of each family (the rewrite touches only MatMuls, the same way in every architecture).
 */
for (const arch of ["llama", "gemma3", "gpt2"] as const) {
  describe(`${arch} laid out as onnx/model_quantized.onnx (transformers.js, dynamic int8)`, () => {
    const gguf = join(dir, `${arch}-q.gguf`);
    const file = join(dir, `${arch}-quantized`, "onnx", "model_quantized.onnx");
    let reference: Model;
    let quantized: OnnxRuntimeModel;
    const open = async () => {
      if (quantized) return;
      writeRandomGguf(gguf, { arch });
      expect(writeOptimumExport(gguf, join(dir, `${arch}-quantized`), "transformers.js", { quantized: true })).toBe(file);
      reference = loadReferenceLlama(gguf, { contextLength: 128 });
      quantized = await onnx.load(file, { contextLength: 128, threads: 1 }); // the variant's file, as a user picks it
    };
    afterAll(() => {
      reference?.dispose();
      quantized?.dispose();
    });
    const relativeRms = (a: Float32Array, b: Float32Array) => {
      let num = 0;
      let den = 0;
      for (let i = 0; i < a.length; i++) {
        num += (a[i]! - b[i]!) ** 2;
        den += b[i]! ** 2;
      }
      return Math.sqrt(num / den);
    };

    test.skipIf(!PYTHON)("the fixture is valid ONNX to the onnx package's full checker (STEERKIT_ONNX_PYTHON)", async () => {
      await open();
      checkWithOnnxPackage(file);
    });

    test("every point is found through the MatMulInteger rewrite and reads the reference's values up to int8 error", async () => {
      await open();
      const n = reference.info.nLayers;
      const names = allPoints(n).map(pointName);
      expect([...quantized.sites.keys()].sort()).toEqual([...names].sort());
      const read = async (m: Model) => {
        const hooks = makeHooks({ points: names, writes: false });
        const seq = m.createSequence({ hooks });
        await seq.prefill(PROMPT);
        seq.free();
        return hooks.seen;
      };
      const a = await read(reference);
      const b = await read(quantized);
      // Measured at most 0.03 (resid_pre.0 exact: the embedding is gathered, not multiplied).
      for (const name of names) expect(relativeRms(b.get(name)![0]!, a.get(name)![0]!)).toBeLessThan(0.1);
      expect(relativeRms(b.get("resid_pre.0")![0]!, a.get("resid_pre.0")![0]!)).toBeLessThan(1e-6);
    });

    test("prompt logits within int8 error of the reference; in-graph and JS steering generate the same tokens", async () => {
      await open();
      const plain = await greedy(quantized, null);
      const exact = await greedy(reference, null);
      // Measured 0.03-0.05 relative RMS on these random models.
      expect(relativeRms(plain.logits[0]!, exact.logits[0]!)).toBeLessThan(0.1);
      const inGraph = await greedy(quantized, { fastPath: true });
      const js = await greedy(quantized, { fastPath: false });
      expect(js.tokens).toEqual(inGraph.tokens);
      inGraph.logits.forEach((x, s) => expect(maxAbsDiff(x, js.logits[s]!)).toBeLessThan(1e-3));
      expect(inGraph.tokens).not.toEqual(plain.tokens);
    });
  });
}

describe("which file of a Hugging Face ONNX directory is the decoder", () => {
  const layout = (name: string, files: string[]) => {
    const root = join(dir, name);
    mkdirSync(join(root, "onnx"), { recursive: true });
    writeFileSync(join(root, "config.json"), JSON.stringify({ model_type: "llama", hidden_size: 64 }));
    for (const f of files) writeFileSync(join(root, f), "");
    return root;
  };

  test("transformers.js v2 (onnx/ holds decoder_model, decoder_with_past_model, the merged decoder and their _quantized twins): the merged decoder", () => {
    const names = ["decoder_model", "decoder_with_past_model", "decoder_model_merged"].flatMap((n) => [`onnx/${n}.onnx`, `onnx/${n}_quantized.onnx`]);
    const root = layout("tjs-v2", names);
    expect(readExportDir(root).modelFile).toBe(join(root, "onnx", "decoder_model_merged.onnx"));
    expect(readExportDir(root).dir).toBe(root);
  });

  test("Optimum CLI output (decoder_model.onnx without past, decoder_with_past_model.onnx, decoder_model_merged.onnx at the root): the merged decoder", () => {
    const root = layout("optimum-cli", ["decoder_model.onnx", "decoder_with_past_model.onnx", "decoder_model_merged.onnx"]);
    expect(readExportDir(root).modelFile).toBe(join(root, "decoder_model_merged.onnx"));
  });

  test("without a merged decoder, the with-past one (the plain decoder_model.onnx has no KV cache)", () => {
    const root = layout("optimum-unmerged", ["decoder_model.onnx", "decoder_with_past_model.onnx"]);
    expect(readExportDir(root).modelFile).toBe(join(root, "decoder_with_past_model.onnx"));
  });

  test("transformers.js v3 (onnx/model.onnx, model_fp16.onnx, model_quantized.onnx, model_q4.onnx): model.onnx; a variant is chosen by its path", () => {
    const root = layout("tjs-v3", ["onnx/model.onnx", "onnx/model_fp16.onnx", "onnx/model_quantized.onnx", "onnx/model_q4.onnx"]);
    expect(readExportDir(root).modelFile).toBe(join(root, "onnx", "model.onnx"));
    const q4 = readExportDir(join(root, "onnx", "model_q4.onnx"));
    expect(q4.modelFile).toBe(join(root, "onnx", "model_q4.onnx"));
    expect(q4.dir).toBe(root); // configs from the directory above onnx/
  });
});

describe("phi3 with partial rotary (8 of 16 lanes, as Phi-4-mini) laid out as onnx/model.onnx", () => {
  test("generation equals the reference backend's, unsteered and steered", async () => {
    const gguf = join(dir, "phi3-partial.gguf");
    writeFileSync(gguf, rewriteGguf(encodeRandomGguf({ arch: "phi3" }), { metadata: { "phi3.rope.dimension_count": { type: "u32", value: 8 } } }));
    const out = join(dir, "phi3-partial");
    writeOptimumExport(gguf, out, "transformers.js");
    const reference = loadReferenceLlama(gguf, { contextLength: 128 });
    const exported = await onnx.load(out, { contextLength: 128, threads: 1 });
    try {
      expect(reference.info.dModel).toBe(64);
      for (const steered of [null, { fastPath: false }]) {
        const a = await greedy(reference, steered);
        const b = await greedy(exported, steered);
        expect(b.tokens).toEqual(a.tokens);
        a.logits.forEach((x, s) => expect(maxAbsDiff(x, b.logits[s]!)).toBeLessThan(TOLERANCE));
      }
    } finally {
      reference.dispose();
      exported.dispose();
    }
  });
});
