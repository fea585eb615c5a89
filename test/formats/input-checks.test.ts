/**
 * Checks of docs/input-checks.md that no other test reached: each input is built by hand to break
 * exactly one rule, and must fail with a clear error naming the file and the rule (issue 8). The
 * fuzz campaign (test/fuzz) meets these too, but only counts outcomes; here each message is pinned.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { deflateRawSync } from "node:zlib";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { loadRecipeFile, parseRecipe } from "../../src/core/recipe.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { crc32, openNpz, readNpyArray } from "../../src/formats/npz.ts";
import { DataType, decodeModel, graph, model, node, readOnnxFile, saveModel, tensorFromFloat32, valueInfo } from "../../src/formats/onnx/index.ts";
import { openSafetensors } from "../../src/formats/safetensors/read.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-input-checks-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected an error");
}
async function rejection(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: Error) => e.message,
  );
}

describe("safetensors", () => {
  const write = (name: string, header: string, data = new Uint8Array(0)) => {
    const h = new TextEncoder().encode(header);
    const out = new Uint8Array(8 + h.length + data.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    out.set(data, 8 + h.length);
    const p = join(dir, name);
    writeFileSync(p, out);
    return p;
  };
  test.each([
    ["a header shorter than {}", "{", "header length 1"],
    ["__metadata__ that is not an object", '{"__metadata__": 3}', "__metadata__ must be an object of strings"],
    ["a tensor entry that is not an object", '{"a": 3}', 'tensor "a": expected { dtype, shape, data_offsets }'],
    ["data_offsets that are not two integers", '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}', 'tensor "a": data_offsets must be [begin, end]'],
  ])("%s", (_, header, expected) => {
    const m = message(() => openSafetensors(write("x.safetensors", header), { label: "x.safetensors" }));
    expect(m).toStartWith("x.safetensors: ");
    expect(m).toContain(expected);
  });
});

/** A zip of one member, written by hand so each field can be wrong on purpose. */
function zip(name: string, payload: Uint8Array, o: { method?: number; flags?: number; size?: number; stored?: Uint8Array } = {}): Uint8Array {
  const method = o.method ?? 0;
  const data = o.stored ?? (method === 8 ? new Uint8Array(deflateRawSync(payload)) : payload);
  const n = new TextEncoder().encode(name);
  const local = new Uint8Array(30 + n.length);
  const lv = new DataView(local.buffer);
  lv.setUint32(0, 0x04034b50, true);
  lv.setUint16(6, o.flags ?? 0, true);
  lv.setUint16(8, method, true);
  lv.setUint32(14, crc32(payload), true);
  lv.setUint32(18, data.length, true);
  lv.setUint32(22, o.size ?? payload.length, true);
  lv.setUint16(26, n.length, true);
  local.set(n, 30);
  const central = new Uint8Array(46 + n.length);
  const cv = new DataView(central.buffer);
  cv.setUint32(0, 0x02014b50, true);
  cv.setUint16(8, o.flags ?? 0, true);
  cv.setUint16(10, method, true);
  cv.setUint32(16, crc32(payload), true);
  cv.setUint32(20, data.length, true);
  cv.setUint32(24, o.size ?? payload.length, true);
  cv.setUint16(28, n.length, true);
  central.set(n, 46);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, 1, true);
  ev.setUint16(10, 1, true);
  ev.setUint32(12, central.length, true);
  ev.setUint32(16, local.length + data.length, true);
  const out = new Uint8Array(local.length + data.length + central.length + end.length);
  out.set(local, 0);
  out.set(data, local.length);
  out.set(central, local.length + data.length);
  out.set(end, local.length + data.length + central.length);
  return out;
}
/** A .npy v1 array: `header` is the dict text, `data` the bytes after it. */
function npy(header: string, data: Uint8Array, version = 1): Uint8Array {
  let h = header;
  while ((10 + h.length + 1) % 64 !== 0) h += " ";
  h += "\n";
  const out = new Uint8Array(10 + h.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0], 0);
  new DataView(out.buffer).setUint16(8, h.length, true);
  out.set(new TextEncoder().encode(h), 10);
  out.set(data, 10 + h.length);
  return out;
}
const f4 = (...xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);
const good = () => npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4(1, 2));

describe("npz", () => {
  const open = (name: string, bytes: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, bytes);
    return openNpz(p, { label: "p.npz" });
  };
  test("the hand-built zip reads back (the cases below break one field each)", () => {
    expect([...readNpyArray(open("ok.npz", zip("W.npy", good())), "W", [2]).data]).toEqual([1, 2]);
    expect([...readNpyArray(open("ok8.npz", zip("W.npy", good(), { method: 8 })), "W", [2]).data]).toEqual([1, 2]);
  });
  test.each([
    ["an encrypted member", () => zip("W.npy", good(), { flags: 1 }), 'member "W.npy" is encrypted'],
    ["an unsupported compression method", () => zip("W.npy", good(), { method: 12 }), "uses compression method 12; only stored (0) and deflate (8)"],
  ])("open: %s", (_, make, expected) => {
    expect(message(() => open("bad.npz", make()))).toContain(expected);
  });
  test.each([
    ["a stored member whose sizes disagree", () => zip("W.npy", good(), { size: 999 }), "a stored member of 136 bytes declares 999 uncompressed"],
    ["a deflate bomb (declared size beyond any deflate ratio)", () => zip("W.npy", good(), { method: 8, size: 2 ** 31 }), "more than deflate can produce"],
    ["a member that does not inflate", () => zip("W.npy", good(), { method: 8, stored: new Uint8Array([0xff, 0xff, 0xff]) }), "cannot inflate"],
    ["a member that inflates to less than the directory says", () => zip("W.npy", good(), { method: 8, size: 200 }), "inflates to 136 bytes, the directory says 200"],
    ["a member that inflates to more than the directory says", () => zip("W.npy", good(), { method: 8, size: 100 }), "inflates to more than the 100 bytes the directory says"],
    ["an .npy of an unknown version", () => zip("W.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f4(1, 2), 9)), ".npy format version 9.0 is not supported"],
    ["an .npy header that is not a dict", () => zip("W.npy", npy("[1, 2]", f4(1, 2))), ".npy header is not a dict"],
    ["an .npy header without a shape", () => zip("W.npy", npy("{'descr': '<f4', 'fortran_order': False}", f4(1, 2))), "lacks descr, fortran_order or shape"],
    ["an .npy whose shape needs more bytes than it holds", () => zip("W.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", f4(1, 2))), "needs 12 bytes, the array holds 8"],
    ["not an .npy at all", () => zip("W.npy", new TextEncoder().encode("just some text, not numpy")), "not a .npy array (bad magic)"],
  ])("read: %s", (_, make, expected) => {
    const m = message(() => readNpyArray(open("bad.npz", make()), "W"));
    expect(m).toStartWith('p.npz: array "W": ');
    expect(m).toContain(expected);
  });
});

describe("ONNX protobuf", () => {
  test.each([
    ["a truncated varint", [0x08, 0x80], "truncated varint"],
    ["field number 0", [0x00, 0x01], "field number 0 at byte 0: not a protobuf message"],
    ["a length running past the end", [0x3a, 0x10, 0x01], "runs past the end"],
    ["an unsupported wire type (group)", [0x0b], "unsupported wire type 3"],
    ["a valid message without a graph", [0x08, 0x07], "no graph (ModelProto field 7) in the file"],
  ])("%s", (_, bytes, expected) => {
    expect(message(() => decodeModel(new Uint8Array(bytes)))).toContain(expected);
  });
});

describe("ONNX external data", () => {
  /** A one-MatMul model whose weight lives in model.onnx.data. */
  const saved = (name: string) => {
    const d = join(dir, name);
    mkdirSync(d, { recursive: true });
    const m = model({
      graph: graph({
        nodes: [node("MatMul", ["x", "W"], ["y"])],
        initializers: [tensorFromFloat32("W", [2, 3], new Float32Array([1, 2, 3, 4, 5, 6]))],
        inputs: [valueInfo("x", DataType.FLOAT, [1, 2])],
        outputs: [valueInfo("y", DataType.FLOAT, [1, 3])],
      }),
      opsets: { "": 17 },
    });
    saveModel(join(d, "model.onnx"), m, { externalDataFile: "model.onnx.data", externalThreshold: 16 });
    return d;
  };
  test("a location that leaves the model's directory is refused before anything is opened", () => {
    const d = saved("escape");
    const bytes = readFileSync(join(d, "model.onnx"));
    const at = bytes.indexOf("model.onnx.data");
    bytes.set(new TextEncoder().encode("../el.onnx.data"), at); // same length: the protobuf stays well-formed
    writeFileSync(join(d, "model.onnx"), bytes);
    expect(message(() => readOnnxFile(join(d, "model.onnx")))).toContain('external data location "../el.onnx.data" leaves the model\'s directory');
  });
  test("a data file shorter than an initializer needs", () => {
    const d = saved("short");
    truncateSync(join(d, "model.onnx.data"), 8);
    expect(message(() => readOnnxFile(join(d, "model.onnx")))).toContain('external data file "model.onnx.data" is 8 bytes, initializer "W" needs bytes up to 24');
  });
});

describe("tokenizer.json of an ONNX export", () => {
  const src = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
  const exportWith = (name: string, tokenizer: string) => {
    const exp = join(dir, name);
    cpSync(src, exp, { recursive: true });
    writeFileSync(join(exp, "tokenizer.json"), tokenizer);
    return exp;
  };
  test.each([
    ["a top level that is not an object", "[1, 2]", "top level is not a JSON object"],
    ["no model object", '{"model": null}', 'has no "model" object'],
    ["added_tokens that are not objects", '{"model": {"type": "BPE", "vocab": {}, "merges": []}, "added_tokens": [3]}', '"added_tokens" must be an array of objects'],
    ["a model the library cannot build", '{"model": {"type": "NoSuchModel"}}', "not a tokenizer the tokenizers library can use"],
  ])("%s", async (name, tokenizer, expected) => {
    const exp = exportWith(name.replaceAll(" ", "-"), tokenizer);
    const m = await rejection(onnx.load(exp));
    expect(m).toContain(join(exp, "tokenizer.json"));
    expect(m).toContain(expected);
  });
});

describe("ONNX export configs", () => {
  test.each([
    ["a fractional bos_token_id", 1.5],
    ["a negative eos_token_id", -1],
    ["a list holding a string", [2, "3"]],
  ])("config.json: %s is refused naming the file and field (it reached the tokenizer as a bare Error)", async (_, value) => {
    const exp = join(dir, `cfg-${String(value).replace(/\W/g, "")}`);
    cpSync(join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32"), exp, { recursive: true });
    const field = typeof value === "number" && value === 1.5 ? "bos_token_id" : "eos_token_id";
    const cfgPath = join(exp, "config.json");
    const cfg = (await Bun.file(cfgPath).exists()) ? JSON.parse(readFileSync(cfgPath, "utf8")) : {};
    writeFileSync(cfgPath, JSON.stringify({ ...cfg, [field]: value }));
    expect(await rejection(onnx.load(exp))).toContain(`${cfgPath}: ${field} must be a token id (a non-negative integer) or a list of them, got ${JSON.stringify(value)}`);
  });
});

describe("recipes", () => {
  test.each([
    ["an entry that is not an object", [3], "recipe[0]: expected an object, got number"],
    ["an empty plugin name", [{ plugin: "" }], "recipe[0].plugin: expected a plugin name"],
    ["an unexpected field", [{ plugin: "logger", option: {} }], 'recipe[0]: unexpected field "option" (expected "plugin" and "options")'],
  ])("%s", (_, value, expected) => {
    expect(message(() => parseRecipe(value))).toContain(expected);
  });
  test("a recipe file that is a directory or missing names the path", () => {
    expect(message(() => loadRecipeFile(dir))).toContain(`${dir}: cannot read recipe`);
    expect(message(() => loadRecipeFile(join(dir, "none.json")))).toContain("none.json: cannot read recipe");
  });
});

describe("direction files (JSON)", () => {
  test.each([
    ["a number", "3", "expected an array of numbers or an object of point name -> array, got number"],
    ["an empty array", "[]", "must be a non-empty array of numbers"],
    ["an overflowing number", "[1, 1e999]", "[1] is Infinity, expected a finite number"],
    ["the zero vector", "[0, 0]", "is the zero vector"],
    ["vectors of two widths", '{"resid_post.0": [1, 2], "resid_post.1": [1]}', "has 1 values, the others 2"],
    ["an object with no vectors", "{}", "holds no directions"],
  ])("%s", async (_, text, expected) => {
    const p = join(dir, "d.json");
    writeFileSync(p, text);
    const m = await rejection(createArtifacts().register("d", directionArtifact, { path: p }).load(directionArtifact, "d"));
    expect(m).toContain('direction "d"');
    expect(m).toContain(expected);
  });
});
