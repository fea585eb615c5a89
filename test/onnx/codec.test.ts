import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import {
  attr,
  DataType,
  decodeModel,
  encodeModel,
  graph,
  model,
  node,
  OnnxFileError,
  readOnnxFile,
  saveModel,
  tensorBytes,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
  valueInfoShape,
} from "../../src/formats/onnx/index.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32/past.onnx");
const tmp = mkdtempSync(join(tmpdir(), "steerkit-onnx-codec-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("ONNX codec on a real export", () => {
  const bytes = new Uint8Array(readFileSync(FIXTURE));

  test("decode -> encode is byte-identical", () => {
    const m = decodeModel(bytes);
    const out = encodeModel(m);
    expect(out.length).toBe(bytes.length);
    expect(Buffer.from(out).equals(Buffer.from(bytes))).toBe(true);
  });

  test("nodes, attributes, value infos and initializer headers are decoded", () => {
    const m = decodeModel(bytes);
    const g = m.graph!;
    expect(m.opsetImports.map((o) => o.domain ?? "")).toContain("com.microsoft");
    const attn = g.nodes.filter((n) => n.opType === "Attention");
    expect(attn.length).toBe(5);
    expect(attn[0]!.domain).toBe("com.microsoft");
    const heads = attn[0]!.attributes.find((a) => a.name === "num_heads")!;
    expect(heads.i).toBe(4n);
    expect(g.inputs.map((v) => v.name)).toEqual(["input_ids", "position_ids", "attention_mask", "past_0", "past_1", "past_2", "past_3", "past_4"]);
    expect(valueInfoShape(g.inputs[3]!)).toEqual([2, "batch_size", 4, "past_seq_len", 8]);
    const wte = g.initializers.find((t) => t.name === "transformer.wte.weight")!;
    expect(wte.dims).toEqual([1000, 32]);
    expect(wte.dataType).toBe(DataType.FLOAT);
    expect(tensorBytes(wte).length).toBe(1000 * 32 * 4);
  });

  test("an edited model re-encodes and still runs", async () => {
    const m = decodeModel(bytes);
    m.producerName = "steerkit-test";
    const session = await ort.InferenceSession.create(encodeModel(m));
    expect(session.outputNames).toContain("logits");
  });

  test("a non-ONNX file is refused with the file name", () => {
    const path = join(tmp, "notes.onnx");
    writeFileSync(path, "this is not a model\n");
    expect(() => readOnnxFile(path)).toThrow(OnnxFileError);
    expect(() => readOnnxFile(path)).toThrow(/notes\.onnx.*not an ONNX model/);
  });
});

/** y = Transpose(x @ W + b) then FastGelu (com.microsoft), with an int64 `perm` attribute and symbolic dims. */
function smallModel() {
  const W = new Float32Array([1, 2, 3, 4, 5, 6]); // [2, 3]
  const b = new Float32Array([0.5, -0.5, 0.25]);
  const m = model({
    graph: graph({
      nodes: [
        node("MatMul", ["x", "W"], ["xw"]),
        node("Add", ["xw", "b"], ["xwb"]),
        node("FastGelu", ["xwb"], ["g"], [], { domain: "com.microsoft" }),
        node("Transpose", ["g"], ["y"], [attr.ints("perm", [1, 0])]),
        node("Reshape", ["xwb", "shape"], ["flat"]),
      ],
      initializers: [tensorFromFloat32("W", [2, 3], W), tensorFromFloat32("b", [3], b), tensorFromInt64("shape", [1], [-1])],
      inputs: [valueInfo("x", DataType.FLOAT, ["rows", 2])],
      outputs: [valueInfo("y", DataType.FLOAT, [3, "rows"]), valueInfo("flat", DataType.FLOAT, [null])],
    }),
    opsets: { "": 17, "com.microsoft": 1 },
  });
  const expectXwb = (x: number[]) => {
    const rows = x.length / 2;
    const out: number[] = [];
    for (let r = 0; r < rows; r++) for (let c = 0; c < 3; c++) out.push(x[2 * r]! * W[c]! + x[2 * r + 1]! * W[3 + c]! + b[c]!);
    return out;
  };
  return { m, expectXwb };
}

describe("ONNX codec builds models from scratch", () => {
  test("a built model with a contrib op and symbolic dims runs in onnxruntime-node", async () => {
    const { m, expectXwb } = smallModel();
    const session = await ort.InferenceSession.create(encodeModel(m));
    const x = [1, 2, -1, 0.5];
    const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from(x), [2, 2]) });
    expect(out.y!.dims).toEqual([3, 2]);
    const flat = Array.from(out.flat!.data as Float32Array);
    const want = expectXwb(x);
    for (let i = 0; i < want.length; i++) expect(flat[i]!).toBeCloseTo(want[i]!, 5);
    // The decoded form of what we wrote equals what we built.
    expect(Buffer.from(encodeModel(decodeModel(encodeModel(m)))).equals(Buffer.from(encodeModel(m)))).toBe(true);
  });

  test("external data: save to model.onnx + model.onnx.data, read back, run", async () => {
    const { m, expectXwb } = smallModel();
    const path = join(tmp, "model.onnx");
    saveModel(path, m, { externalDataFile: "model.onnx.data", externalThreshold: 16 });
    const file = readOnnxFile(path);
    expect(file.externalFiles.has("model.onnx.data")).toBe(true);
    const W = file.model.graph!.initializers.find((t) => t.name === "W")!;
    expect(W.dataLocation).toBe(1);
    expect(new Float32Array(tensorBytes(W, file.externalFiles).slice().buffer)).toEqual(new Float32Array([1, 2, 3, 4, 5, 6]));
    // From a path, ORT finds the data file itself; from bytes it is handed the mapped file.
    for (const session of [
      await ort.InferenceSession.create(path),
      await ort.InferenceSession.create(file.bytes, {
        externalData: [...file.externalFiles].map(([p, data]) => ({ path: p, data })),
      }),
    ]) {
      const out = await session.run({ x: new ort.Tensor("float32", Float32Array.from([1, 1]), [1, 2]) });
      const flat = Array.from(out.flat!.data as Float32Array);
      const want = expectXwb([1, 1]);
      for (let i = 0; i < 3; i++) expect(flat[i]!).toBeCloseTo(want[i]!, 5);
    }
  });

  test("missing external data is an error naming the model file and the data file", () => {
    const { m } = smallModel();
    const dir = mkdtempSync(join(tmp, "missing-"));
    const path = join(dir, "model.onnx");
    saveModel(path, m, { externalDataFile: "model.onnx.data", externalThreshold: 16 });
    rmSync(join(dir, "model.onnx.data"));
    expect(() => readOnnxFile(path)).toThrow(/model\.onnx: external data file "model\.onnx\.data".*not found/);
  });
});
