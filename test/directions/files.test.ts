import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { encodeControlVector, readControlVector, sumControlVectors, writeControlVector } from "../../src/directions/control-vector.ts";
import { readDirectionFile, writeDirectionFile } from "../../src/directions/file.ts";
import { encodeGguf } from "../../src/formats/gguf-write.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { GGML_TYPE } from "../../src/formats/ggml-types.ts";
import { serializeSafetensors } from "../../src/formats/safetensors/write.ts";
import { openSafetensors } from "../../src/formats/safetensors/read.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-directions-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const f32 = (...xs: number[]) => Float32Array.from(xs);
const bytes = (v: Float32Array) => new Uint8Array(v.buffer.slice(0));

describe("direction file (safetensors)", () => {
  test("round trip: one tensor per point named by the point, provenance and mean norms in the header", () => {
    const path = join(dir, "dog.safetensors");
    writeDirectionFile(path, {
      vectors: new Map([["resid_post.1", f32(1, 2, 3)], ["resid_pre.3", f32(0, 0, 1)]]),
      meanNorms: new Map([["resid_post.1", 4.5], ["resid_post.2", 6]]),
      metadata: { model: "stories260K", method: "mean-diff" },
    });
    const st = openSafetensors(path);
    expect([...st.tensors.keys()].sort()).toEqual(["resid_post.1", "resid_post.2"]); // resid_pre.3 is resid_post.2
    expect(st.metadata.format).toBe("steerkit-directions");
    const d = readDirectionFile(path, 'direction "dog"');
    expect(d.vector).toBeNull();
    expect(d.width).toBe(3);
    expect([...d.byPoint.get("resid_post.2")!]).toEqual([0, 0, 1]);
    expect(d.meanNorms!.get("resid_post.1")).toBe(4.5);
    expect(d.metadata!.model).toBe("stories260K");
  });

  test("a single tensor named direction is one vector for every point", () => {
    const path = join(dir, "shared.safetensors");
    writeDirectionFile(path, { vectors: new Map([["direction", f32(1, -1)]]) });
    const d = readDirectionFile(path, "x");
    expect([...d.vector!]).toEqual([1, -1]);
    expect(d.byPoint.size).toBe(0);
  });

  test("bad files: clear errors that name the artifact, never the path", async () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ["name", serializeSafetensors({ "layer.3": { dtype: "F32", shape: [2], data: f32(1, 2) } }), /tensor "layer.3" is not named by a point/],
      ["zero", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [2], data: f32(0, 0) } }), /is the zero vector/],
      ["nan", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [2], data: f32(1, NaN) } }), /\[1\] is NaN/],
      ["width", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [2], data: f32(1, 2) }, "resid_post.1": { dtype: "F32", shape: [3], data: f32(1, 2, 3) } }), /has (2|3) values, the others (3|2)/],
      ["shape", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [1, 2], data: f32(1, 2) } }), /shape \[1, 2\]; a direction is one-dimensional/],
      ["norms", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [2], data: f32(1, 2) } }, { mean_norms: '{"resid_post.3": 2}' }), /mean_norms names resid_post.3, which has no tensor/],
      ["format", serializeSafetensors({ "resid_post.0": { dtype: "F32", shape: [2], data: f32(1, 2) } }, { format: "saelens" }), /format "saelens"/],
    ];
    const artifacts = createArtifacts();
    for (const [name, data, error] of cases) {
      const path = join(dir, `bad-${name}.safetensors`);
      writeFileSync(path, data);
      artifacts.register(name, directionArtifact, { path });
      const e = (await artifacts.load(directionArtifact, name).catch((x: Error) => x)) as Error;
      expect(e.message).toMatch(error);
      expect(e.message).toContain(`direction "${name}"`);
      expect(e.message).not.toContain(dir);
    }
    expect(() => writeDirectionFile(join(dir, "z.safetensors"), { vectors: new Map([["resid_post.0", f32(0, 0)]]) })).toThrow(/zero vector/);
  });

  test("the direction kind reads .safetensors, .gguf and JSON by extension", async () => {
    writeDirectionFile(join(dir, "k.safetensors"), { vectors: new Map([["resid_post.2", f32(1, 2)]]) });
    writeControlVector(join(dir, "k.gguf"), new Map([["resid_post.2", f32(3, 4)]]), { modelHint: "llama", nLayers: 5 });
    writeFileSync(join(dir, "k.json"), JSON.stringify({ "resid_post.2": [5, 6] }));
    const artifacts = createArtifacts();
    for (const ext of ["safetensors", "gguf", "json"]) artifacts.register(ext, directionArtifact, { path: join(dir, `k.${ext}`) });
    expect([...(await artifacts.load(directionArtifact, "safetensors")).byPoint.get("resid_post.2")!]).toEqual([1, 2]);
    expect([...(await artifacts.load(directionArtifact, "gguf")).byPoint.get("resid_post.2")!]).toEqual([3, 4]);
    expect([...(await artifacts.load(directionArtifact, "json")).byPoint.get("resid_post.2")!]).toEqual([5, 6]);
  });
});

describe("control vectors (llama.cpp / repeng GGUF)", () => {
  test("written as repeng and llama.cpp expect: architecture, model_hint, layer_count, F32 direction.N in layer order", () => {
    const path = join(dir, "cv.gguf");
    // resid_pre.4 is resid_post.3: direction.3. Insertion order is not layer order.
    writeControlVector(path, new Map([["resid_pre.4", f32(1, 2)], ["resid_post.1", f32(3, 4)]]), { modelHint: "llama", nLayers: 5 });
    const g = readGgufHeader(path);
    expect(g.metadata.get("general.architecture")).toBe("controlvector");
    expect(g.metadata.get("controlvector.model_hint")).toBe("llama");
    expect(g.metadata.get("controlvector.layer_count")).toBe(2);
    expect(g.tensors.map((t) => [t.name, t.type, t.dims])).toEqual([["direction.1", GGML_TYPE.F32, [2]], ["direction.3", GGML_TYPE.F32, [2]]]);
    const cv = readControlVector(path);
    expect(cv.modelHint).toBe("llama");
    expect([...cv.layers.keys()]).toEqual([1, 3]);
    expect([...cv.layers.get(3)!]).toEqual([1, 2]);
  });

  test("points a control vector cannot address are refused with the reason", () => {
    const enc = (point: string) => () => encodeControlVector(new Map([[point, f32(1)]]), { modelHint: "llama", nLayers: 5 });
    expect(enc("resid_post.0")).toThrow(/cannot address block 0's output/);
    expect(enc("resid_mid.2")).toThrow(/only address block outputs/);
    expect(enc("resid_pre.0")).toThrow(/only address block outputs/);
    expect(enc("resid_post.5")).toThrow(/outside 0..4/);
  });

  test("strengths scale and several files sum, as llama.cpp's common_control_vector_load does", () => {
    const a = join(dir, "a.gguf");
    const b = join(dir, "b.gguf");
    writeControlVector(a, new Map([["resid_post.1", f32(1, 2)], ["resid_post.2", f32(1, 1)]]), { modelHint: "llama", nLayers: 5 });
    writeControlVector(b, new Map([["resid_post.2", f32(10, 20)], ["resid_post.4", f32(1, 0)]]), { modelHint: "llama", nLayers: 5 });
    const s = sumControlVectors([{ path: a, strength: 2 }, { path: b, strength: -0.5 }]);
    expect([...s.layers.keys()].sort()).toEqual([1, 2, 4]);
    expect([...s.layers.get(1)!]).toEqual([2, 4]);
    expect([...s.layers.get(2)!]).toEqual([2 - 5, 2 - 10]);
    expect([...s.layers.get(4)!]).toEqual([-0.5, 0]) // accumulated from zero, as llama.cpp does;
    // Two tensors naming one layer in one file are summed too ("direction.02" parses as layer 2).
    const dup = join(dir, "dup.gguf");
    writeFileSync(dup, cvFile([["direction.2", f32(1, 1)], ["direction.02", f32(2, 3)]]));
    expect([...readControlVector(dup).layers.get(2)!]).toEqual([3, 4]);
    const wide = join(dir, "wide.gguf");
    writeControlVector(wide, new Map([["resid_post.1", f32(1, 2, 3)]]), { modelHint: "llama", nLayers: 5 });
    expect(() => sumControlVectors([{ path: a }, { path: wide }])).toThrow(/have 3 values, the previous files' 2/);
  });

  test("bad control vectors: clear errors", () => {
    const cases: [string, Uint8Array, RegExp][] = [
      ["arch", cvFile([["direction.1", f32(1)]], { arch: "llama" }), /general.architecture is "llama", expected "controlvector"/],
      ["count", cvFile([["direction.1", f32(1)], ["direction.2", f32(1)]], { layerCount: 3 }), /layer_count says 3 layers but the file holds 2/],
      ["zero", cvFile([["direction.0", f32(1)]]), /no direction.0/],
      ["name", cvFile([["dir.1", f32(1)]]), /"dir.1" is not named direction.<layer>/],
      ["width", cvFile([["direction.1", f32(1, 2)], ["direction.2", f32(1)]]), /has 1 values, the others 2/],
      ["nan", cvFile([["direction.1", f32(1, Infinity)]]), /\[1\] is Infinity/],
      ["empty", cvFile([]), /holds no direction tensors/],
    ];
    for (const [name, data, error] of cases) {
      const path = join(dir, `bad-${name}.gguf`);
      writeFileSync(path, data);
      expect(() => readControlVector(path, { where: `direction "${name}"` })).toThrow(error);
    }
    const f16 = join(dir, "bad-f16.gguf");
    writeFileSync(f16, encodeGguf({ metadata: [["general.architecture", { type: "string", value: "controlvector" }]], tensors: [{ name: "direction.1", type: GGML_TYPE.F16, dims: [2], data: new Uint8Array(4) }] }));
    expect(() => readControlVector(f16)).toThrow(/not F32/);
    const flat = join(dir, "bad-2d.gguf");
    writeFileSync(flat, encodeGguf({ metadata: [["general.architecture", { type: "string", value: "controlvector" }]], tensors: [{ name: "direction.1", type: GGML_TYPE.F32, dims: [1, 2], data: bytes(f32(1, 2)) }] }));
    expect(() => readControlVector(flat)).toThrow(/2 dimensions/);
    writeFileSync(join(dir, "trunc.gguf"), cvFile([["direction.1", f32(1, 2, 3, 4)]]).subarray(0, 100));
    expect(() => readControlVector(join(dir, "trunc.gguf"), { where: 'direction "t"' })).toThrow(/direction "t": not a valid GGUF file/);
  });
});

function cvFile(tensors: [string, Float32Array][], o: { arch?: string; layerCount?: number } = {}): Uint8Array {
  return encodeGguf({
    metadata: [
      ["general.architecture", { type: "string", value: o.arch ?? "controlvector" }],
      ["controlvector.model_hint", { type: "string", value: "llama" }],
      ["controlvector.layer_count", { type: "i32", value: o.layerCount ?? tensors.length }],
    ],
    tensors: tensors.map(([name, v]) => ({ name, type: GGML_TYPE.F32, dims: [v.length], data: bytes(v) })),
  });
}
