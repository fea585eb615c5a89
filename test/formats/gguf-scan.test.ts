/**
 * Non-finite weights (issue 8): the scanner finds NaN / ±Inf in F32, F16, BF16 tensors and in the
 * scales of Q8_0 blocks, naming the tensor and the element or block; the llama.cpp adapter refuses
 * them in 1-D tensors by default and everywhere with `checkWeights: "all"`; `steerkit convert`
 * refuses them; `steerkit inspect --check-weights` reports them. The variants are stories260K with
 * one value changed.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { cpSync } from "node:fs";
import { readOnnxFile, tensorBytes } from "../../src/formats/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { GgufError, readGgufHeader } from "../../src/formats/gguf.ts";
import { checkFiniteWeights, describeNonFinite, scanGgufWeights } from "../../src/formats/gguf-scan.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { rewriteGguf, toBF16, toF16, toQ8_0, type TensorEntry } from "../convert/gguf-edit.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-scan-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const base = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));

/** `src` with bytes `at` of tensor `name` replaced by `bytes`; written to a file named `file`. */
function poke(src: Uint8Array, name: string, at: number, bytes: number[], file: string): string {
  const out = rewriteGguf(src, {
    tensors: (t: TensorEntry) => {
      if (t.name !== name) return t;
      const data = t.data.slice();
      data.set(bytes, at);
      return { ...t, data };
    },
  });
  const path = join(dir, file);
  writeFileSync(path, out);
  return path;
}
const f32 = (v: number) => [...new Uint8Array(new Float32Array([v]).buffer)];

describe("scanGgufWeights", () => {
  test("the embedded model is clean: every tensor scanned, every byte read", () => {
    const file = readGgufHeader(DEFAULT_MODEL_PATH);
    const scan = scanGgufWeights(file);
    expect(scan.nonFinite).toEqual([]);
    expect(scan.tensorsScanned).toBe(file.tensors.length);
    expect(scan.bytesScanned).toBe(file.tensors.reduce((n, t) => n + t.byteLength, 0));
    expect(scan.skipped).toEqual([]);
  });

  test("F32: NaN, +Inf and -Inf by tensor and element", () => {
    const a = poke(base, "output_norm.weight", 3 * 4, f32(NaN), "nan.gguf");
    const b = poke(new Uint8Array(readFileSync(a)), "blk.2.ffn_down.weight", 1000 * 4, f32(Infinity), "nan-inf.gguf");
    const c = poke(new Uint8Array(readFileSync(b)), "blk.2.ffn_down.weight", 1001 * 4, f32(-Infinity), "nan-inf-inf.gguf");
    const found = scanGgufWeights(readGgufHeader(c)).nonFinite.map(describeNonFinite);
    expect(found).toEqual(["output_norm.weight[3] = NaN (F32)", "blk.2.ffn_down.weight[1000] = +Inf (F32)", "blk.2.ffn_down.weight[1001] = -Inf (F32)"]);
  });

  test("finite values beyond the float16 range are refused too (a flipped exponent bit; the fuzz's NaN logits)", () => {
    const a = poke(base, "blk.0.ffn_gate.weight", 12 * 4, f32(1e30), "huge.gguf");
    const b = poke(new Uint8Array(readFileSync(a)), "blk.0.ffn_gate.weight", 13 * 4, f32(-65505), "huge2.gguf");
    const c = poke(new Uint8Array(readFileSync(b)), "blk.0.ffn_gate.weight", 14 * 4, f32(65504), "huge3.gguf"); // the limit itself is fine
    expect(scanGgufWeights(readGgufHeader(c)).nonFinite.map(describeNonFinite)).toEqual(["blk.0.ffn_gate.weight[12] = 1.00e+30 (F32)", "blk.0.ffn_gate.weight[13] = -6.55e+4 (F32)"]);
  });

  test("F16 and BF16 values, Q8_0 block scales", () => {
    const f16 = poke(toF16(base), "blk.0.attn_q.weight", 7 * 2, [0x00, 0x7e], "f16.gguf"); // 0x7e00: NaN
    expect(scanGgufWeights(readGgufHeader(f16)).nonFinite.map(describeNonFinite)).toEqual(["blk.0.attn_q.weight[7] = NaN (F16)"]);
    const bf16 = poke(toBF16(base), "blk.0.attn_q.weight", 9 * 2, [0x80, 0xff], "bf16.gguf"); // 0xff80: -Inf
    expect(scanGgufWeights(readGgufHeader(bf16)).nonFinite.map(describeNonFinite)).toEqual(["blk.0.attn_q.weight[9] = -Inf (BF16)"]);
    const q8 = poke(toQ8_0(base), "blk.1.ffn_up.weight", 5 * 34, [0x00, 0x7c], "q8.gguf"); // block 5's d = +Inf
    expect(scanGgufWeights(readGgufHeader(q8)).nonFinite.map(describeNonFinite)).toEqual(["blk.1.ffn_up.weight block 5 scale = +Inf (Q8_0)"]);
  });

  test("stops at the limit; a tensor filter reads only what it picks", () => {
    let src = base;
    for (let i = 0; i < 5; i++) src = new Uint8Array(readFileSync(poke(src, "token_embd.weight", i * 4, f32(NaN), `many-${i}.gguf`)));
    const path = join(dir, "many-4.gguf");
    expect(scanGgufWeights(readGgufHeader(path), { limit: 2 }).nonFinite.length).toBe(2);
    const small = scanGgufWeights(readGgufHeader(path), { tensors: (t) => t.dims.length <= 1 });
    expect(small.nonFinite).toEqual([]);
    expect(small.bytesScanned).toBe(11 * 64 * 4); // 11 norm vectors of 64
  });
});

describe("what Steerkit does with them", () => {
  const norm = poke(base, "blk.3.attn_norm.weight", 0, f32(NaN), "norm-nan.gguf");
  const matrix = poke(base, "blk.1.attn_q.weight", 40 * 4, f32(Infinity), "matrix-inf.gguf");

  test("llama.cpp adapter, default: a NaN in a 1-D tensor is refused before llama.cpp opens the file", () => {
    expect(() => loadModel(norm, { contextLength: 32 })).toThrow(/norm-nan\.gguf.*non-finite or out-of-range weights \(beyond ±65504\): blk\.3\.attn_norm\.weight\[0\] = NaN \(F32\)/);
  });

  test("a matrix is read only with checkWeights: all (by default it loads, and its logits are NaN: why the option exists)", async () => {
    const m = loadModel(matrix, { contextLength: 32, threads: 1 });
    try {
      const seq = m.createSequence();
      const logits = await seq.prefill([1, 403, 407]);
      expect(logits.some((x) => !Number.isFinite(x))).toBe(true);
      seq.free();
    } finally {
      m.dispose();
    }
    expect(() => loadModel(matrix, { contextLength: 32, checkWeights: "all" })).toThrow(/blk\.1\.attn_q\.weight\[40\] = \+Inf/);
    expect(() => checkFiniteWeights(readGgufHeader(matrix), "small")).not.toThrow();
    expect(() => checkFiniteWeights(readGgufHeader(matrix), "all")).toThrow(GgufError);
  });

  test("steerkit convert refuses them (it reads every weight anyway)", async () => {
    await expect(convertGgufToOnnx(matrix, join(dir, "out"))).rejects.toThrow(/blk\.1\.attn_q\.weight\[40\] = \+Inf/);
  });

  test("steerkit inspect --check-weights names them and exits 1; a clean file says so", () => {
    const cli = join(import.meta.dir, "../../src/cli/main.ts");
    const bad = Bun.spawnSync(["bun", cli, "inspect", matrix, "--check-weights"]);
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString()).toContain("blk.1.attn_q.weight[40] = +Inf (F32)");
    const good = Bun.spawnSync(["bun", cli, "inspect", DEFAULT_MODEL_PATH, "--check-weights"]);
    expect(good.exitCode).toBe(0);
    expect(good.stdout.toString()).toMatch(/weights\s+all finite \(48 tensors/);
  });
});

describe("the ONNX twin (formats/onnx/scan.ts): initializers of a converted model", () => {
  let converted: Promise<unknown> | null = null;
  /** A copy of the converted stories260K with one float of initializer `pick` (the first whose dims match) set to `value`. */
  async function poked(name: string, pick: (dims: number[]) => boolean, value: number): Promise<{ dir: string; tensor: string }> {
    const src = join(dir, "converted");
    await (converted ??= convertGgufToOnnx(DEFAULT_MODEL_PATH, src));
    const out = join(dir, name);
    cpSync(src, out, { recursive: true });
    const file = readOnnxFile(join(out, "model.onnx"));
    const t = file.model.graph!.initializers.find((i) => i.dataType === 1 && pick(i.dims))!;
    const bytes = tensorBytes(t, file.externalFiles);
    const at = bytes.byteOffset - file.bytes.byteOffset + 4; // element 1
    const patched = new Uint8Array(file.bytes);
    patched.set(f32(value), at);
    writeFileSync(join(out, "model.onnx"), patched);
    return { dir: out, tensor: t.name! };
  }

  test("a NaN norm weight is refused by default; a matrix one only with checkWeights: all", async () => {
    const norm = await poked("onnx-norm", (d) => d.length === 1, NaN);
    await expect(onnx.load(norm.dir)).rejects.toThrow(`non-finite or out-of-range weights (beyond ±65504): ${norm.tensor}[1] = NaN (float32)`);
    const matrix = await poked("onnx-matrix", (d) => d.length === 2, -Infinity);
    const m = await onnx.load(matrix.dir, { contextLength: 32, threads: 1 });
    m.dispose();
    await expect(onnx.load(matrix.dir, { checkWeights: "all" })).rejects.toThrow(`${matrix.tensor}[1] = -Inf (float32)`);
  });
});
