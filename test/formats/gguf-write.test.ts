import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readGgufHeader, readTensorF32 } from "../../src/formats/gguf.ts";
import { encodeGguf } from "../../src/formats/gguf-write.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-gguf-write-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("encodeGguf", () => {
  test("what it writes, the validating reader reads back: every value type, arrays, tensors at aligned offsets", () => {
    const big = Array.from({ length: 20000 }, (_, i) => `token-${i}`); // > 64 KiB: the buffer must grow
    const w = new Float32Array([1.5, -2, 3.25, 0]);
    const bytes = encodeGguf({
      metadata: [
        ["general.architecture", { type: "string", value: "llama" }],
        ["a.u8", { type: "u8", value: 200 }],
        ["a.i16", { type: "i16", value: -300 }],
        ["a.u32", { type: "u32", value: 4_000_000_000 }],
        ["a.i64", { type: "i64", value: -5 }],
        ["a.f32", { type: "f32", value: 0.5 }],
        ["a.f64", { type: "f64", value: Math.PI }],
        ["a.bool", { type: "bool", value: true }],
        ["a.tokens", { type: "array", of: "string", value: big }],
        ["a.ids", { type: "array", of: "i32", value: [-1, 2, 3] }],
      ],
      tensors: [
        { name: "w", type: 0, dims: [4], data: new Uint8Array(w.buffer) },
        { name: "odd", type: 24, dims: [3], data: new Uint8Array([1, 2, 3]) },
        { name: "after", type: 0, dims: [1], data: new Uint8Array(new Float32Array([7]).buffer) },
      ],
    });
    const path = join(dir, "t.gguf");
    writeFileSync(path, bytes);
    const f = readGgufHeader(path);
    const m = f.metadata;
    expect([m.get("a.u8"), m.get("a.i16"), m.get("a.u32"), m.get("a.i64"), m.get("a.f32"), m.get("a.f64"), m.get("a.bool")]).toEqual([200, -300, 4_000_000_000, -5n, 0.5, Math.PI, true]);
    expect(m.get("a.tokens")).toEqual(big);
    expect(m.get("a.ids")).toEqual([-1, 2, 3]);
    expect(f.tensors.map((t) => [t.name, t.offset % 32])).toEqual([["w", 0], ["odd", 0], ["after", 0]]);
    expect([...readTensorF32(f, f.tensors[0]!)]).toEqual([...w]);
    expect([...readTensorF32(f, f.tensors[2]!)]).toEqual([7]);
  });
});
