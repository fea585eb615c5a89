/**
 * Every architecture the llama.cpp adapter hooks, on a tiny seeded random-weight model of each
 * (src/testing/random-gguf.ts, laid out as llama.cpp's converter writes them):
 *
 * (a) unsteered greedy tokens are llama.cpp's: its own tool's output, recorded in
 *     test/fixtures/architectures/llama-cpp-golden.json by make-golden.ts there (CI has no llama.cpp
 *     tools), and live when STEERKIT_LLAMA_COMPLETION names a llama-completion of the verified release;
 * (b) add-vector at resid_post.L (a control-vector direction, on the control-vector fast path and on
 *     the JS path) is llama.cpp loading the same file with --control-vector;
 *     (live too, with STEERKIT_LLAMA_EVAL_CALLBACK: every named point's values are llama-eval-callback's
 *     dump of the tensor toLlamaCppTensor names);
 * (c) every point is reached at every layer with the rows llama.cpp computes there, and the points
 *     mean the same on every architecture: resid_pre.0 is what enters block 0 (Gemma's embeddings
 *     times sqrt(d), GPT-2's embeddings plus positions) and resid_post.L = resid_mid.L + the block's
 *     MLP, recomputed here from the weights;
 * (d) the native paths (control vector, compiled callback) equal the JS path for affine edits.
 *
 * Comparing with llama-completion goes through bytes: the tool prints each token's piece
 * (test/helpers/token-bytes.ts computes the same from the vocabulary), so our greedy tokens'
 * pieces must be exactly its stdout.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel, validateModelFile, type LlamaSequenceOptions } from "../../src/adapters/llama-cpp/index.ts";
import type { AffineEdit } from "../../src/core/backend.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { generate } from "../../src/core/generate.ts";
import { allPoints, pointName, toLlamaCppTensor, type HookPoint } from "../../src/core/sites.ts";
import { resolvePoints } from "../../src/core/points.ts";
import { argmax } from "../../src/core/tensor.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { encodeGguf, type GgufTyped } from "../../src/formats/gguf-write.ts";
import { addVector } from "../../src/plugins/index.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import * as v from "valibot";
import { randomGguf, type RandomGgufArchitecture } from "../../src/testing/random-gguf.ts";
import { tokenBytes } from "../helpers/token-bytes.ts";
import { ARCHS, N_PREDICT, PROMPT, runEvalCallback, runLlamaCompletion, writeCase, type DumpedTensor } from "./architecture-cases.ts";
import { applyAffineJs, makeHooks, maxAbsDiff, randomVector } from "./hooks-helpers.ts";

const binary = process.env.STEERKIT_LLAMA_COMPLETION;
const evalCallback = process.env.STEERKIT_LLAMA_EVAL_CALLBACK;
const golden = JSON.parse(readFileSync(join(import.meta.dir, "..", "fixtures", "architectures", "llama-cpp-golden.json"), "utf8")) as {
  prompt: string;
  nPredict: number;
  architectures: Record<string, { ggufSha256: string; promptTokens: number[]; unsteered: string; steered: string; controlVectorLayers: number[] }>;
};
const dir = mkdtempSync(join(tmpdir(), "steerkit-arch-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const NL = new Uint8Array([10, 10]);

/** What llama-completion's --ignore-eos does: a -inf logit bias on every end-of-generation token. */
const noEndOfGeneration = definePlugin({
  name: "no-end-of-generation",
  options: v.object({}),
  needs: ["logits:read", "logits:write"],
  prepare: (_o, { model }) => model.eosTokens,
  create: (_o, { prepared: eog }) => ({
    onLogits(logits) {
      for (const t of eog) logits[t] = -Infinity;
    },
  }),
});
const concat = (...parts: Uint8Array[]) => Buffer.concat(parts);

for (const arch of ARCHS) {
  describe(`llama.cpp adapter on a random ${arch}`, () => {
    const files = writeCase(dir, arch);
    const bytesOf = tokenBytes(readGgufHeader(files.gguf));
    const model = loadModel(files.gguf, { threads: 1 });
    afterAll(() => model.dispose());
    const rec = golden.architectures[arch]!;
    const { nLayers, dModel: D } = files;
    // phi2's blocks are parallel: no resid_mid (refused; see the test below).
    const parallel = arch === "phi2";
    const points = allPoints(nLayers).filter((p) => !(parallel && p.site === "resid_mid"));
    const promptTokens = model.tokenize(PROMPT);
    const artifacts = createArtifacts().register("cv", directionArtifact, { path: files.controlVector });

    async function greedy(steered: boolean, fastPath = true): Promise<number[]> {
      const r = await generate(model, {
        tokens: promptTokens, maxTokens: N_PREDICT, temperature: 0, ignoreEos: true, artifacts, fastPath,
        plugins: [...(steered ? [addVector({ vector: "cv", scale: 1 })] : []), noEndOfGeneration({})],
      });
      expect(r.tokens.length).toBe(N_PREDICT);
      return r.tokens;
    }
    const printed = (tokens: number[]) => concat(bytesOf([...promptTokens, ...tokens]), NL);

    test("the model is the file the golden record was made from, and tokenizes the prompt as llama.cpp did", () => {
      expect(golden.prompt).toBe(PROMPT);
      expect(golden.nPredict).toBe(N_PREDICT);
      const sha = new Bun.CryptoHasher("sha256").update(readFileSync(files.gguf)).digest("hex");
      if (sha !== rec.ggufSha256) {
        throw new Error(
          `${arch}: the generator now writes another file (sha256 ${sha}, golden record ${rec.ggufSha256}): ` +
            "if the change is intended, re-record with STEERKIT_LLAMA_COMPLETION=<llama-completion> bun test/fixtures/architectures/make-golden.ts",
        );
      }
      expect(promptTokens).toEqual(rec.promptTokens);
      expect(model.info.architecture).toBe(arch);
    });

    test("(a) unsteered greedy tokens are llama-completion's (golden record)", async () => {
      expect(printed(await greedy(false))).toEqual(Buffer.from(rec.unsteered, "base64"));
    });

    test("(b) add-vector of a control vector at resid_post.L is llama-completion --control-vector (golden), fast and JS paths", async () => {
      const expected = Buffer.from(rec.steered, "base64");
      expect(expected).not.toEqual(Buffer.from(rec.unsteered, "base64")); // the vector changes llama.cpp's output
      expect(printed(await greedy(true, true))).toEqual(expected);
      expect(printed(await greedy(true, false))).toEqual(expected);
    });

    test.skipIf(!binary)("(a, b) live: llama-completion of the verified release prints what we generate (STEERKIT_LLAMA_COMPLETION)", async () => {
      const plain = runLlamaCompletion(binary!, files.gguf);
      expect(plain.promptTokens).toEqual(promptTokens);
      expect(Buffer.from(plain.stdout)).toEqual(printed(await greedy(false)));
      const steered = runLlamaCompletion(binary!, files.gguf, files.controlVector);
      expect(Buffer.from(steered.stdout)).toEqual(printed(await greedy(true)));
    }, 60_000);

    test("(c) every point is reached at every layer, with every row of the pass (the last block: the output row)", async () => {
      const seen: string[] = [];
      const hooks = makeHooks(points, (p, x, pos) => {
        expect(x.dims).toEqual([x.data.length / D, D]);
        seen.push(`${pointName(p)}:${Array.from(pos).join(",")}`);
      });
      const seq = model.createSequence({ hooks });
      const logits = await seq.prefill(promptTokens);
      await seq.decode(argmax(logits));
      seq.free();
      const n = promptTokens.length;
      const all = Array.from({ length: n }, (_, i) => i).join(",");
      const expected: string[] = [];
      for (const [rows, last] of [[all, String(n - 1)], [String(n), String(n)]] as const) {
        for (const p of points) expected.push(`${pointName(p)}:${p.site !== "resid_pre" && p.layer === nLayers - 1 ? last : rows}`);
      }
      expect(seen).toEqual(expected);
    });

    test.skipIf(!evalCallback)("(c) live: each named point equals llama-eval-callback's dump of its tensor (STEERKIT_LLAMA_EVAL_CALLBACK)", async () => {
      const got = new Map<string, Float32Array>();
      const hooks = makeHooks(points, (p, x) => void got.set(pointName(p), Float32Array.from(x.data)));
      const seq = model.createSequence({ hooks });
      await seq.prefill(promptTokens);
      seq.free();
      const dump = runEvalCallback(evalCallback!, files.gguf, `l_out-${nLayers - 1}`);
      let compared = 0;
      for (const p of points) {
        let tensor = toLlamaCppTensor(p, nLayers, arch);
        if (tensor.startsWith("(")) tensor = unnamedMid(dump, p.layer === 0 ? "embd" : `l_out-${p.layer - 1}`);
        const theirs = dump.get(tensor);
        if (!theirs) throw new Error(`llama-eval-callback printed no ${tensor} for ${arch}`);
        const ours = got.get(pointName(p))!;
        const n = ours.length / D;
        // The dump shows the first and last three rows of a longer tensor.
        const rows = n > 6 ? [0, 1, 2, n - 3, n - 2, n - 1] : Array.from({ length: n }, (_, r) => r);
        expect(theirs.rows.length).toBe(rows.length);
        // Tolerance: the tool is a local build, the adapter runs the prebuilt libraries; their kernels
        // round differently, and a last-bit change can cross an f16 step (the KV cache, ggml's GELU
        // table) and move a value by ~1e-3 of the tensor's scale.
        const scale = Math.max(1, ...Array.from(ours, Math.abs));
        theirs.rows.forEach((row, k) => {
          const mine = ours.subarray(rows[k]! * D, (rows[k]! + 1) * D);
          [...row.head, ...row.tail].forEach((x, i) => expect(Math.abs(x - mine[i < 3 ? i : D - 6 + i]!)).toBeLessThan(2e-3 * scale));
        });
        const sum = ours.reduce((a, b) => a + b, 0);
        expect(Math.abs(sum - theirs.sum)).toBeLessThan(2e-3 * ours.reduce((a, b) => a + Math.abs(b), 0));
        compared++;
      }
      expect(compared).toBe(points.length);
    }, 60_000);

    test.skipIf(arch === "phi3" || parallel)("(c) the shim's rule for an unnamed mid-block sum (phi3's) finds this architecture's named one, bit for bit", async () => {
      const record = async (m: ReturnType<typeof loadModel>) => {
        const got: string[] = [];
        const mids = allPoints(nLayers).filter((p) => p.site === "resid_mid");
        const seq = m.createSequence({ hooks: makeHooks(mids, (p, x) => void got.push(`${pointName(p)}:${Array.from(x.data).join(",")}`)) });
        const logits = await seq.prefill(promptTokens);
        await seq.decode(argmax(logits));
        seq.free();
        return got;
      };
      const unnamed = loadModel(files.gguf, { threads: 1, residualTensors: { mid: null } });
      try {
        const viaRule = await record(unnamed);
        expect(viaRule.length).toBe(2 * nLayers);
        expect(viaRule).toEqual(await record(model));
      } finally {
        unnamed.dispose();
      }
    });

    test("(c) resid_pre.0 is what enters block 0; resid_post.L = resid_mid.L + block L's MLP, from the weights", async () => {
      const weights = modelWeights(arch);
      const got = new Map<string, Float32Array>();
      const hooks = makeHooks(points, (p, x) => void got.set(pointName(p), Float32Array.from(x.data)));
      const seq = model.createSequence({ hooks });
      await seq.prefill(promptTokens);
      seq.free();
      const pre0 = got.get("resid_pre.0")!;
      const expectedPre = new Float32Array(promptTokens.length * D);
      promptTokens.forEach((t, i) => {
        for (let j = 0; j < D; j++) {
          let e = weights.get("token_embd.weight")![t * D + j]!;
          if (arch === "gemma2" || arch === "gemma3") e = Math.fround(e * Math.fround(Math.sqrt(D)));
          if (arch === "gpt2") e = Math.fround(e + weights.get("position_embd.weight")![i * D + j]!);
          expectedPre[i * D + j] = e;
        }
      });
      expect(maxAbsDiff(pre0, expectedPre)).toBeLessThan(1e-6);
      for (let l = 0; l < (parallel ? 0 : nLayers); l++) {
        const mid = got.get(`resid_mid.${l}`)!, post = got.get(`resid_post.${l}`)!;
        expect(mid.length).toBe(post.length);
        const want = afterMlp(arch, weights, l, mid, D);
        const scale = Math.max(1, ...Array.from(post, Math.abs));
        expect(maxAbsDiff(post, want) / scale).toBeLessThan(2e-3);
        // and the MLP did something: the check could not pass with mid and post swapped or equal
        expect(maxAbsDiff(post, mid)).toBeGreaterThan(1e-2);
      }
    });

    test("(d) affine edits: control vector and compiled callback equal the JS path at every site", async () => {
      const post = (layer: number): HookPoint => ({ site: "resid_post", layer });
      const edits: AffineEdit[] = [
        { point: { site: "resid_pre", layer: 0 }, rank: 0, U: null, V: null, c: randomVector(D, 21, 0.3) },
        { point: parallel ? post(0) : { site: "resid_mid", layer: 1 }, rank: 1, U: randomVector(D, 22, 0.3), V: randomVector(D, 23, 0.3), c: randomVector(D, 24, 0.2) },
        { point: post(1), rank: 0, U: null, V: null, c: randomVector(D, 25, 0.5) },
        ...(parallel ? [] : [{ point: { site: "resid_mid", layer: nLayers - 1 }, rank: 0, U: null, V: null, c: randomVector(D, 26, 0.5) } as AffineEdit]),
        { point: post(nLayers - 1), rank: 2, U: randomVector(2 * D, 27, 0.3), V: randomVector(2 * D, 28, 0.3), c: null },
      ];
      const fn = (p: HookPoint, x: Parameters<typeof applyAffineJs>[1]) => {
        const e = edits.find((e) => pointName(e.point) === pointName(p))!;
        return applyAffineJs(e, x);
      };
      const points = edits.map((e) => e.point);
      const run = async (options: LlamaSequenceOptions) => {
        const seq = model.createSequence(options);
        try {
          const logits = [Float32Array.from(await seq.prefill(promptTokens))];
          for (let i = 0; i < 6; i++) logits.push(Float32Array.from(await seq.decode(argmax(logits[logits.length - 1]!))));
          return { logits, modes: seq.pointModes };
        } finally {
          seq.free();
        }
      };
      const plain = await run({});
      const js = await run({ hooks: makeHooks(points, fn) });
      const fast = await run({ hooks: makeHooks(points, fn, edits) });
      const callback = await run({ hooks: makeHooks(points, fn, edits), fastPath: "callback" });
      expect(fast.modes.get("resid_post.1")).toBe("cvec");
      expect(fast.modes.get(parallel ? "resid_post.0" : "resid_mid.1")).toBe("native");
      expect(callback.modes.get("resid_post.1")).toBe("native");
      expect(maxAbsDiff(js.logits[0]!, plain.logits[0]!)).toBeGreaterThan(1e-2);
      // The C and JS edits round differently (f32 vs f64 sums); on the GELU architectures (gemma2,
      // gemma3, gpt2) ggml's CPU GELU reads an f16-indexed table, where a last-bit difference can
      // cross an f16 step and move logits by ~2e-4 of their size: compare relative to the logits'
      // size, and the greedy choices exactly.
      for (let s = 0; s < js.logits.length; s++) {
        const size = Math.max(1, ...Array.from(js.logits[s]!, Math.abs));
        expect(argmax(fast.logits[s]!)).toBe(argmax(js.logits[s]!));
        expect(argmax(callback.logits[s]!)).toBe(argmax(js.logits[s]!));
        expect(maxAbsDiff(fast.logits[s]!, js.logits[s]!) / size).toBeLessThan(1e-3);
        expect(maxAbsDiff(callback.logits[s]!, js.logits[s]!) / size).toBeLessThan(1e-3);
      }
    });
  });
}

describe("a point an architecture does not have is refused naming the architecture and the point", () => {
  test("phi2 (parallel blocks) has no resid_mid: a plugin or hook naming it is refused before any token; \"all\" leaves it out", async () => {
    const { gguf } = writeCase(dir, "phi2");
    const phi2 = loadModel(gguf, { threads: 1 });
    try {
      const refused = /^phi2 model random phi2 .* has no resid_mid\.1: its blocks add attention and MLP to the stream together \(parallel residual\)/;
      expect(() => phi2.createSequence({ hooks: makeHooks([{ site: "resid_mid", layer: 1 }], () => {}) })).toThrow(refused);
      expect(phi2.info.parallelBlocks).toBe(true);
      let e: unknown;
      try {
        await generate(phi2, { prompt: PROMPT, maxTokens: 4, plugins: [addVector({ points: ["resid_mid.*"], vector: Array.from(randomVector(64, 3, 0.1)) })] });
      } catch (err) {
        e = err;
      }
      expect((e as { code?: string }).code).toBe("INVALID_OPTIONS");
      expect((e as Error).message).toContain('point "resid_mid.*": phi2 has no resid_mid (its blocks add attention and MLP to the stream together)');
      // "all" is every point phi2 has: resid_pre.0 and each block's output.
      const seen = new Set<string>();
      const watch = definePlugin({
        name: "watch", options: v.object({}), needs: ["residual:read"], prepare: (_o, { model }) => resolvePoints("all", model),
        create: (_o, { prepared }) => ({ points: prepared, onResidual: (_x, ctx) => void seen.add(pointName(ctx.point)) }),
      });
      const r = await generate(phi2, { prompt: PROMPT, maxTokens: 4, plugins: [addVector({ points: "all", vector: Array.from(randomVector(64, 3, 0.1)) }), watch({})] });
      expect(r.tokens.length).toBe(4);
      expect([...seen].sort()).toEqual(["resid_post.0", "resid_post.1", "resid_post.2", "resid_pre.0"]);
      expect(() => toLlamaCppTensor({ site: "resid_mid", layer: 0 }, 3, "phi2")).toThrow(/phi2 has no resid_mid\.0/);
    } finally {
      phi2.dispose();
    }
  });
});

describe("a hooked point the graph never produces is an error, not a hook that silently does not run", () => {
  test("gemma2 told its mid-block sum is ffn_inp-L: the pass fails naming architecture, point and tensor, and is undone", async () => {
    const { gguf } = writeCase(dir, "gemma2");
    const wrong = loadModel(gguf, { threads: 1, residualTensors: { mid: "ffn_inp" } });
    try {
      const tokens = wrong.tokenize(PROMPT);
      const seq = wrong.createSequence({ hooks: makeHooks([{ site: "resid_mid", layer: 1 }], () => {}) });
      let e: unknown;
      try {
        await seq.prefill(tokens);
      } catch (err) {
        e = err;
      }
      expect(e).toBeInstanceOf(Error);
      expect((e as { code?: string }).code).toBe("UNSUPPORTED_MODEL");
      expect((e as Error).message).toMatch(/^gemma2 model random gemma2 .*: llama\.cpp's graph produced no tensor for resid_mid\.1 \(looked for ffn_inp-1\), so its hook could not run; the forward pass was undone$/);
      expect(seq.length).toBe(0);
      seq.free();
      // Points the graph does produce still work on that model.
      const ok = wrong.createSequence({ hooks: makeHooks([{ site: "resid_post", layer: 1 }], () => {}) });
      await ok.prefill(tokens);
      expect(ok.length).toBe(tokens.length);
      ok.free();
    } finally {
      wrong.dispose();
    }
  });

  test("residualTensors must be tensor names", () => {
    const { gguf } = writeCase(dir, "qwen2");
    expect(() => loadModel(gguf, { residualTensors: { pre: "" } })).toThrow(/residualTensors\.pre must be a tensor name/);
    expect(() => loadModel(gguf, { residualTensors: { mid: "a b" } })).toThrow(/residualTensors\.mid must be a tensor name prefix/);
  });
});

describe("load checks cover each architecture's own tensors and keys", () => {
  const damaged = (arch: RandomGgufArchitecture, name: string, change: { drop?: string; dims?: [string, number[]]; dropKey?: string; setKey?: [string, GgufTyped] }) => {
    const m = randomGguf({ arch });
    const tensors = m.tensors
      .filter((t) => t.name !== change.drop)
      .map((t) => {
        const dims = change.dims && t.name === change.dims[0] ? change.dims[1] : [...t.dims];
        const n = dims.reduce((a, b) => a * b, 1);
        const bytes = t.bytes();
        return { name: t.name, type: t.type, dims, data: bytes.subarray(0, Math.min(bytes.length, n * 4)) };
      });
    const metadata = m.metadata.filter(([k]) => k !== change.dropKey).map(([k, v]) => (change.setKey && k === change.setKey[0] ? change.setKey : [k, v] as const));
    const path = join(dir, `damaged-${arch}-${name}.gguf`);
    writeFileSync(path, encodeGguf({ metadata, tensors }));
    return path;
  };
  const cases: [RandomGgufArchitecture, string, Parameters<typeof damaged>[2], RegExp][] = [
    ["llama", "no-gate", { drop: "blk.1.ffn_gate.weight" }, /tensor "blk\.1\.ffn_gate\.weight" is missing \(a llama model/],
    ["phi3", "no-qkv", { drop: "blk.0.attn_qkv.weight" }, /tensor "blk\.0\.attn_q\.weight" is missing \(a phi3 model/],
    ["phi3", "unfused-up", { dims: ["blk.2.ffn_up.weight", [64, 128]] }, /"blk\.2\.ffn_up\.weight" has shape \[64, 128\], expected \[64, 256\]/],
    ["gemma2", "no-post-ffw", { drop: "blk.3.post_ffw_norm.weight" }, /tensor "blk\.3\.post_ffw_norm\.weight" is missing \(a gemma2 model/],
    ["gemma3", "no-k-norm", { drop: "blk.5.attn_k_norm.weight" }, /tensor "blk\.5\.attn_k_norm\.weight" is missing \(a gemma3 model/],
    ["gpt2", "no-positions", { drop: "position_embd.weight" }, /tensor "position_embd\.weight" is missing \(a gpt2 model/],
    ["gpt2", "no-qkv-bias", { drop: "blk.1.attn_qkv.bias" }, /tensor "blk\.1\.attn_qkv\.bias" is missing/],
    ["gpt2", "no-ln-eps", { dropKey: "gpt2.attention.layer_norm_epsilon" }, /"gpt2\.attention\.layer_norm_epsilon" is missing/],
    ["qwen2", "short-bias", { dims: ["blk.0.attn_k.bias", [16]] }, /"blk\.0\.attn_k\.bias" has shape \[16\], expected \[32\]/],
    ["gemma2", "zero-softcap", { setKey: ["gemma2.final_logit_softcapping", { type: "f32", value: 0 }] }, /"gemma2\.final_logit_softcapping" is 0, expected a positive cap/],
    ["gemma3", "zero-window", { setKey: ["gemma3.attention.sliding_window", { type: "u32", value: 0 }] }, /"gemma3\.attention\.sliding_window" is 0: every sliding-window layer would attend to nothing/],
    ["phi2", "no-output-bias", { drop: "output.bias" }, /tensor "output\.bias" is missing \(a phi2 model/],
    ["phi2", "odd-rope", { setKey: ["phi2.rope.dimension_count", { type: "u32", value: 7 }] }, /"phi2\.rope\.dimension_count" is 7, expected an even number of rotated dimensions in 2\.\.16/],
    ["qwen3", "no-q-norm", { drop: "blk.2.attn_q_norm.weight" }, /tensor "blk\.2\.attn_q_norm\.weight" is missing \(a qwen3 model/],
    ["mistral3", "rope-not-head", { setKey: ["mistral3.rope.dimension_count", { type: "u32", value: 16 }] }, /"mistral3\.rope\.dimension_count" is 16, expected the head size 32 \(the mistral3 graph asserts it\)/],
    ["mistral3", "q-of-n-embd", { dims: ["blk.1.attn_q.weight", [64, 64]] }, /"blk\.1\.attn_q\.weight" has shape \[64, 64\], expected \[64, 128\]/],
    ["smollm3", "no-gate", { drop: "blk.3.ffn_gate.weight" }, /tensor "blk\.3\.ffn_gate\.weight" is missing \(a smollm3 model with 4 layers/],
  ];
  for (const [arch, name, change, message] of cases) {
    test(`${arch}: ${name} is refused before llama.cpp opens it`, () => {
      const path = damaged(arch, name, change);
      expect(() => validateModelFile(path)).toThrow(message);
    });
  }

  test("every generated architecture passes the checks as written", () => {
    for (const arch of ARCHS) expect(() => validateModelFile(writeCase(dir, arch).gguf)).not.toThrow();
  });

  test("gpt2: a context longer than its learned position table is refused, naming both lengths", () => {
    const { gguf } = writeCase(dir, "gpt2");
    expect(() => loadModel(gguf, { contextLength: 512 })).toThrow(/contextLength 512 is longer than .* trained context 256: gpt2 has learned positions for 256 tokens only/);
  });
});

/**
 * phi3's mid-block sum in a dump: the ADD whose second input is the block's input, or at the last block
 * get_rows of it (the rule the shim applies, here on llama.cpp's own printed graph).
 */
function unnamedMid(dump: Map<string, DumpedTensor>, input: string): string {
  for (const [name, t] of dump) {
    if (t.op !== "ADD" || t.srcs.length !== 2) continue;
    const second = t.srcs[1]!;
    const viaRows = dump.get(second);
    if (second === input || (viaRows?.op === "GET_ROWS" && viaRows.srcs[0] === input)) return name;
  }
  throw new Error(`no ADD of attention output + ${input} in llama-eval-callback's dump`);
}

// ---- the MLP of each architecture, in plain TypeScript (f64 accumulation), from the generator's weights

function modelWeights(arch: RandomGgufArchitecture): Map<string, Float32Array> {
  return new Map(randomGguf({ arch }).tensors.map((t) => [t.name, t.values()]));
}

/** y = W x for a ggml matrix of dims [in, out] (row o is W[o*in .. o*in+in)). */
function matvec(w: Float32Array, x: ArrayLike<number>, nIn: number, nOut: number, bias?: Float32Array): Float64Array {
  const y = new Float64Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = bias ? bias[o]! : 0;
    for (let i = 0; i < nIn; i++) s += w[o * nIn + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: ArrayLike<number>, w: Float32Array, eps: number): Float64Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! ** 2;
  const k = 1 / Math.sqrt(ss / x.length + eps);
  return Float64Array.from({ length: x.length }, (_, i) => x[i]! * k * w[i]!);
}

function layerNorm(x: ArrayLike<number>, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  let mean = 0;
  for (let i = 0; i < x.length; i++) mean += x[i]!;
  mean /= x.length;
  let v = 0;
  for (let i = 0; i < x.length; i++) v += (x[i]! - mean) ** 2;
  const k = 1 / Math.sqrt(v / x.length + eps);
  return Float64Array.from({ length: x.length }, (_, i) => (x[i]! - mean) * k * w[i]! + b[i]!);
}

const silu = (x: number) => x / (1 + Math.exp(-x));
const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));

function afterMlp(arch: RandomGgufArchitecture, w: Map<string, Float32Array>, l: number, mid: Float32Array, D: number): Float32Array {
  const b = `blk.${l}.`;
  const t = (name: string) => w.get(b + name)!;
  const ff = randomGguf({ arch }).config.nFf;
  const gemma = arch === "gemma2" || arch === "gemma3";
  const out = new Float32Array(mid.length);
  for (let r = 0; r < mid.length / D; r++) {
    const x = mid.subarray(r * D, (r + 1) * D);
    let y: Float64Array;
    if (arch === "gpt2") {
      const n = layerNorm(x, t("ffn_norm.weight"), t("ffn_norm.bias"), 1e-5);
      const h = matvec(t("ffn_up.weight"), n, D, ff, t("ffn_up.bias")).map(gelu);
      y = matvec(t("ffn_down.weight"), h, ff, D, t("ffn_down.bias"));
    } else {
      const n = rmsNorm(x, t("ffn_norm.weight"), gemma ? 1e-6 : 1e-5);
      let h: Float64Array;
      if (arch === "phi3") {
        const u = matvec(t("ffn_up.weight"), n, D, 2 * ff);
        h = Float64Array.from({ length: ff }, (_, i) => silu(u[i]!) * u[ff + i]!);
      } else {
        const g = matvec(t("ffn_gate.weight"), n, D, ff), u = matvec(t("ffn_up.weight"), n, D, ff);
        h = Float64Array.from({ length: ff }, (_, i) => (gemma ? gelu(g[i]!) : silu(g[i]!)) * u[i]!);
      }
      y = matvec(t("ffn_down.weight"), h, ff, D);
      if (gemma) y = rmsNorm(y, t("post_ffw_norm.weight"), 1e-6);
    }
    for (let i = 0; i < D; i++) out[r * D + i] = x[i]! + y[i]!;
  }
  return out;
}
