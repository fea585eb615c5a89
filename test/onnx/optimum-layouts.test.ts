/**
 * The ONNX adapter on the layouts Hugging Face tools write: Optimum's merged decoder
 * (`decoder_model_merged.onnx`: an `If` on `use_cache_branch` around the no-past and with-past
 * decoders) and transformers.js v3's `onnx/model.onnx` with the configs at the root. The fixtures are
 * written by test/onnx/helpers/optimum-export.ts from seeded random GGUFs (llama: q/k un-permuted to
 * HF's layout with rotate_half; qwen2: biases; gpt2: learned positions, decomposed LayerNorm, Conv1D
 * c_attn split into q/k/v, gelu_new), so the reference backend on the same GGUF is the oracle: every
 * residual point is found at the Adds the exporter names (`/model/layers.N/Add` and `Add_1`,
 * `/transformer/h.N/...` for GPT-2), reads the reference's values there, and greedy generation,
 * unsteered and steered, equals the reference's. With STEERKIT_ONNX_PYTHON naming a Python that has the
 * `onnx` package (Debian: python3-onnx), each fixture must also pass `onnx.checker.check_model(full_check=True)`.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Model } from "../../src/core/backend.ts";
import { compileChain } from "../../src/core/chain.ts";
import { allPoints, pointName } from "../../src/core/sites.ts";
import { argmax } from "../../src/core/tensor.ts";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { addVector, ablateDirection } from "../../src/plugins/index.ts";
import { loadReferenceLlama } from "../../src/testing/reference-llama.ts";
import { writeRandomGguf } from "../../src/testing/random-gguf.ts";
import { type OptimumLayout, writeOptimumExport } from "./helpers/optimum-export.ts";
import { makeHooks, maxAbsDiff, wave } from "./helpers/hooks.ts";

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
  const chain = steered ? compileChain(plugins, model, steered) : null;
  const seq = model.createSequence(chain ? { hooks: chain.residual } : {});
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  try {
    let l = (await seq.prefill(PROMPT)).slice();
    logits.push(l);
    for (let i = 0; i < STEPS; i++) {
      tokens.push(argmax(l));
      l = (await seq.decode(tokens.at(-1)!)).slice();
      logits.push(l);
    }
  } finally {
    seq.free();
  }
  expect(chain?.residual.error ?? null).toBeNull();
  return { tokens, logits };
}

const LAYOUTS: [OptimumLayout, string][] = [
  ["optimum-merged", "decoder_model_merged.onnx (Optimum, transformers.js v2)"],
  ["transformers.js", "onnx/model.onnx (transformers.js v3)"],
];

/** Where the exporter's residual Adds are: the scope of block L. */
const BLOCK_SCOPE = { llama: "/model/layers.", qwen2: "/model/layers.", gpt2: "/transformer/h." } as const;

for (const arch of ["llama", "qwen2", "gpt2"] as const) {
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

      const python = process.env.STEERKIT_ONNX_PYTHON;
      test.skipIf(!python)("the fixture is valid ONNX to the onnx package's full checker (STEERKIT_ONNX_PYTHON)", async () => {
        await open();
        const file = join(out, layout === "transformers.js" ? "onnx/model.onnx" : "decoder_model_merged.onnx");
        const p = Bun.spawnSync([python!, "-c", "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)", file]);
        expect(p.stderr.toString()).toBe("");
        expect(p.exitCode).toBe(0);
      });

      test("the export is found from its directory, with its config and tokenizer", async () => {
        await open();
        expect(exported.info).toMatchObject({ architecture: arch, nLayers: reference.info.nLayers, dModel: reference.info.dModel, vocabSize: reference.info.vocabSize });
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
