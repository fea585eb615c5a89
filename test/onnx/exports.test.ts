import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { pointName, allPoints } from "../../src/core/sites.ts";
import { saveModel } from "../../src/formats/onnx/index.ts";
import { buildGenaiStyleDecoder, writeDecoderDir, type DecoderSpec } from "./helpers/decoder-builder.ts";
import { makeHooks, maxAbsDiff, wave } from "./helpers/hooks.ts";

const tmp = mkdtempSync(join(tmpdir(), "steerkit-onnx-exports-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const SPEC: DecoderSpec = { dModel: 16, nLayers: 3, nHeads: 2, vocab: 50, seed: 7 };
const dirFor = (name: string, spec: Partial<DecoderSpec> = {}, externalData = false) =>
  writeDecoderDir(join(tmp, name), { ...SPEC, ...spec }, { externalData });

async function greedyLogits(m: OnnxRuntimeModel, hooks?: ReturnType<typeof makeHooks>): Promise<Float32Array[]> {
  const seq = m.createSequence(hooks ? { hooks } : {});
  const out = [Float32Array.from(await seq.prefill([3, 4, 5, 9]))];
  for (const t of [11, 12]) out.push(Float32Array.from(await seq.decode(t)));
  seq.free();
  return out;
}

describe("ONNX adapter on built exports (Optimum KV layout, plain ops)", () => {
  test("fp16 model with external data runs, matches its fp32 twin, and its hook modes agree", async () => {
    const m16 = await onnx.load(dirFor("fp16", { fp16: true }, true));
    const m32 = await onnx.load(dirFor("fp32"));
    expect(m16.io.hiddenElemType).toBe(10);
    expect(m16.sites.size).toBe(7);
    const a = await greedyLogits(m16);
    const b = await greedyLogits(m32);
    for (let i = 0; i < a.length; i++) expect(maxAbsDiff(a[i]!, b[i]!)).toBeLessThan(0.05);

    const c = wave(16, 1);
    const inGraph = await greedyLogits(m16, makeHooks({ points: ["resid_post.1"], affine: { "resid_post.1": { c } } }));
    const js = await greedyLogits(
      m16,
      makeHooks({
        points: ["resid_post.1"],
        edit: (_, x) => {
          for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + c[i % 16]!;
        },
      }),
    );
    for (let i = 0; i < a.length; i++) {
      expect(maxAbsDiff(inGraph[i]!, js[i]!)).toBeLessThan(0.02);
      expect(maxAbsDiff(inGraph[i]!, a[i]!)).toBeGreaterThan(0.05);
    }
    m16.dispose();
    m32.dispose();
  });

  test("every point of the plain-op graph is found and the modes agree in fp32", async () => {
    const m = await onnx.load(dirFor("fp32-modes"));
    expect([...m.sites.keys()].sort()).toEqual(allPoints(3).map(pointName).sort());
    const base = await greedyLogits(m);
    const read = makeHooks({ points: allPoints(3).map(pointName), writes: false });
    const split = makeHooks({ points: allPoints(3).map(pointName), edit: () => {} });
    const r = await greedyLogits(m, read);
    const s = await greedyLogits(m, split);
    for (let i = 0; i < base.length; i++) {
      expect(maxAbsDiff(r[i]!, base[i]!)).toBeLessThan(1e-5);
      expect(maxAbsDiff(s[i]!, base[i]!)).toBeLessThan(1e-5);
    }
    for (const name of read.seen.keys()) {
      read.seen.get(name)!.forEach((x, i) => expect(maxAbsDiff(x, split.seen.get(name)![i]!)).toBeLessThan(1e-5));
    }
    m.dispose();
  });

  test("genai-builder layout: GroupQueryAttention, MatMulNBits, Skip/SimplifiedLayerNormalization", async () => {
    const dir = join(tmp, "genai-style");
    mkdirSync(dir);
    saveModel(join(dir, "model.onnx"), buildGenaiStyleDecoder({ dModel: 32, nLayers: 3, nHeads: 4, kvHeads: 2, vocab: 64, dFF: 64 }));
    const m = await onnx.load(dir);
    expect(m.info).toMatchObject({ nLayers: 3, dModel: 32, vocabSize: 64 });
    expect([...m.sites.keys()].sort()).toEqual(allPoints(3).map(pointName).sort());
    // The stream: the embedding Gather, SkipSimplifiedLayerNorm output 3, and the sum split out of the final norm.
    expect(m.sites.get("resid_pre.0")).toBe("embeds");
    expect(m.sites.get("resid_mid.1")).toBe("l1.mid");
    expect(m.sites.get("resid_post.2")).toMatch(/steerkit_residual/);
    const base = await greedyLogits(m);
    // KV cache: prompt + decode equals one longer prompt.
    const whole = m.createSequence();
    await whole.prefill([3, 4, 5, 9, 11]);
    expect(maxAbsDiff(await whole.decode(12), base[2]!)).toBeLessThan(1e-4);
    whole.free();
    const c = wave(32, 1);
    const everyPoint = allPoints(3).map(pointName);
    const read = makeHooks({ points: everyPoint, writes: false });
    const inGraph = makeHooks({ points: ["resid_mid.1", "resid_post.2"], affine: { "resid_mid.1": { c }, "resid_post.2": { c } } });
    const js = makeHooks({
      points: ["resid_mid.1", "resid_post.2"],
      edit: (_, x) => {
        for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + c[i % 32]!;
      },
    });
    const [r, a, b] = [await greedyLogits(m, read), await greedyLogits(m, inGraph), await greedyLogits(m, js)];
    for (let i = 0; i < base.length; i++) {
      expect(maxAbsDiff(r[i]!, base[i]!)).toBeLessThan(1e-4);
      expect(maxAbsDiff(a[i]!, b[i]!)).toBeLessThan(1e-4);
      expect(maxAbsDiff(a[i]!, base[i]!)).toBeGreaterThan(1e-2);
    }
    m.dispose();
  });

  test("transformers.js layout: configs at the root, graph variants under onnx/", async () => {
    const root = join(tmp, "tjs");
    const built = dirFor("tjs-src", {}, true);
    mkdirSync(join(root, "onnx"), { recursive: true });
    for (const f of ["model_q4.onnx", "model_fp16.onnx"]) copyFileSync(join(built, "model.onnx"), join(root, "onnx", f));
    copyFileSync(join(built, "model.onnx.data"), join(root, "onnx", "model.onnx.data"));
    writeFileSync(join(root, "config.json"), JSON.stringify({ model_type: "tiny-gpt", _name_or_path: "org/tiny", hidden_size: 16, vocab_size: 50, eos_token_id: 2 }));
    await expect(onnx.load(root)).rejects.toThrow(/cannot tell which file is the decoder.*onnx\/model_fp16\.onnx, onnx\/model_q4\.onnx: pass the one to load/);
    const m = await onnx.load(join(root, "onnx", "model_q4.onnx"));
    expect(m.info).toMatchObject({ name: "org/tiny", architecture: "tiny-gpt", nLayers: 3, eosTokens: [2] });
    m.dispose();
  });

  test("tokenizer.json and the chat template of tokenizer_config.json are used", async () => {
    const dir = dirFor("with-tokenizer");
    const words = ["<unk>", "<s>", "</s>", "hello", "world", "once", "upon", "a", "time", "user", "assistant", ":", "<|end|>"];
    const vocab = Object.fromEntries(words.map((w, i) => [w, i]));
    writeFileSync(
      join(dir, "tokenizer.json"),
      JSON.stringify({
        version: "1.0",
        added_tokens: [0, 1, 2, 12].map((i) => ({ id: i, content: words[i], single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
        normalizer: null,
        pre_tokenizer: { type: "Whitespace" },
        post_processor: null,
        decoder: { type: "WordPiece", prefix: "##", cleanup: true },
        model: { type: "WordLevel", vocab, unk_token: "<unk>" },
      }),
    );
    writeFileSync(
      join(dir, "tokenizer_config.json"),
      JSON.stringify({
        bos_token: "<s>",
        eos_token: "</s>",
        add_bos_token: true,
        chat_template: "{{ bos_token }}{% for m in messages %}{{ m.role }}: {{ m.content }} {% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
      }),
    );
    const m = await onnx.load(dir);
    expect(m.tokenize("once upon a time")).toEqual([1, 5, 6, 7, 8]);
    expect(m.tokenize("hello", { addBos: false })).toEqual([3]);
    expect(m.detokenize([1, 3, 4, 2])).toBe("hello world");
    expect(m.info.chatTemplate).toContain("messages");
    // bos_token renders empty (tokenization adds BOS), as in the llama.cpp adapter.
    expect(m.applyChatTemplate([{ role: "user", content: "hello" }])).toBe("user: hello assistant:");
    // Special-token text becomes the special token only when asked (chat templates), never from user text.
    expect(m.tokenize("hello <|end|>", { addBos: false, special: true })).toEqual([3, 12]);
    expect(m.tokenize("hello <|end|>", { addBos: false })).not.toContain(12);
    m.dispose();
  });
});

describe("ONNX adapter refuses bad input with the file and the reason", () => {
  test("a file that is not ONNX", async () => {
    const dir = join(tmp, "garbage");
    mkdirSync(dir);
    writeFileSync(join(dir, "model.onnx"), "definitely not a protobuf\n".repeat(10));
    await expect(onnx.load(dir)).rejects.toThrow(/garbage\/model\.onnx: not an ONNX model/);
  });

  test("a graph with no recognisable residual chain", async () => {
    await expect(onnx.load(dirFor("no-residual", { noResidual: true }))).rejects.toThrow(/no-residual\/model\.onnx: no residual chain found/);
  });

  test("missing external data", async () => {
    const dir = dirFor("missing-data", {}, true);
    rmSync(join(dir, "model.onnx.data"));
    await expect(onnx.load(dir)).rejects.toThrow(/missing-data\/model\.onnx: external data file "model\.onnx\.data".*not found/);
  });

  test("an encoder-only model (no KV cache)", async () => {
    await expect(onnx.load(dirFor("encoder", { noCache: true }))).rejects.toThrow(/encoder\/model\.onnx: no KV-cache inputs.*encoder-only/);
  });

  test("an unsupported opset", async () => {
    await expect(onnx.load(dirFor("opset30", { opset: 30 }))).rejects.toThrow(/opset30\/model\.onnx: uses ai\.onnx opset 30; onnxruntime-node 1\.30 runs opsets 7\.\.26/);
  });

  test("a directory with no model, and the process keeps working afterwards", async () => {
    const dir = join(tmp, "empty");
    mkdirSync(dir);
    await expect(onnx.load(dir)).rejects.toThrow(/empty: cannot tell which file is the decoder/);
    await expect(onnx.load(join(tmp, "nope"))).rejects.toThrow(/nope: no such file/);
    const m = await onnx.load(dirFor("still-fine"));
    expect((await m.createSequence().prefill([1, 2])).length).toBe(50);
    m.dispose();
  });
});
