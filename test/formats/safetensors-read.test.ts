import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openSafetensors, readTensor } from "../../src/formats/safetensors/read.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-st-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A safetensors file from a header object and data bytes (header length as given, or the real one). */
function file(name: string, header: unknown, data: Uint8Array, headerLength?: bigint): string {
  const text = new TextEncoder().encode(typeof header === "string" ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, headerLength ?? BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  const p = join(dir, name);
  writeFileSync(p, out);
  return p;
}

const f32 = (...v: number[]) => new Uint8Array(new Float32Array(v).buffer);

describe("safetensors reader", () => {
  test("F32, F16 and BF16 tensors read as float32, exactly; metadata kept", () => {
    const f16 = new Uint8Array(new Uint16Array([0x3c00, 0xc000, 0x3555]).buffer); // 1, -2, 0.33325195
    const bf16 = new Uint8Array(new Uint16Array([0x3f80, 0x4049]).buffer); // 1, 3.140625
    const data = new Uint8Array([...f32(1.5, -2), ...f16, ...bf16]);
    const p = file("ok.safetensors", {
      __metadata__: { format: "pt" },
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      h: { dtype: "F16", shape: [3], data_offsets: [8, 14] },
      b: { dtype: "BF16", shape: [1, 2], data_offsets: [14, 18] },
    }, data);
    const st = openSafetensors(p);
    expect(st.metadata).toEqual({ format: "pt" });
    expect([...readTensor(st, "a", [2])]).toEqual([1.5, -2]);
    expect([...readTensor(st, "h")]).toEqual([1, -2, 0.333251953125]);
    expect([...readTensor(st, "b", [1, 2])]).toEqual([1, 3.140625]);
  });

  const bad: [string, () => string, string][] = [
    ["a file shorter than the length prefix", () => { const p = join(dir, "tiny"); writeFileSync(p, new Uint8Array(3)); return p; }, "shorter than the 8-byte header length"],
    ["a header length past the end of the file (checked before allocating)", () => file("huge.st", {}, new Uint8Array(0), 1n << 60n), "header length 1152921504606846976 exceeds the file"],
    ["a header that is not JSON", () => file("nojson.st", "{not json", new Uint8Array(0)), "the header is not UTF-8 JSON"],
    ["a header that is a JSON array", () => file("array.st", "[1,2]", new Uint8Array(0)), "the header is not a JSON object"],
    ["an unknown dtype", () => file("dtype.st", { a: { dtype: "F128", shape: [1], data_offsets: [0, 4] } }, f32(1)), 'tensor "a": unknown dtype "F128"'],
    ["a shape that does not match the byte count", () => file("shape.st", { a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, f32(1, 2)), 'tensor "a": shape [3] of F32 needs 12 bytes, data_offsets give 8'],
    ["a truncated data section", () => file("trunc.st", { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, f32(1, 2)), 'tensor "a": data_offsets [0, 16] run past the end of the data (8 bytes'],
    ["overlapping tensors", () => file("overlap.st", { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32(1, 2)), 'tensors "a" and "b" overlap'],
    ["negative or fractional shapes", () => file("neg.st", { a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, f32(1)), "shape must be a list of non-negative integers"],
    ["offsets that end before they begin", () => file("rev.st", { a: { dtype: "F32", shape: [0], data_offsets: [4, 0] } }, f32(1)), "end before they begin"],
  ];
  for (const [what, make, message] of bad) {
    test(`refuses ${what}`, () => {
      const p = make();
      let err: unknown;
      try {
        openSafetensors(p, { label: "w.safetensors" });
      } catch (e) {
        err = e;
      }
      expect((err as { code?: string })?.code).toBe("INVALID_MODEL_FILE");
      expect((err as Error).message).toStartWith("w.safetensors: ");
      expect((err as Error).message).toContain(message);
    });
  }

  test("reading names a missing tensor, a wrong shape and an unsupported dtype", () => {
    const p = file("kinds.st", { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, i: { dtype: "I32", shape: [1], data_offsets: [8, 12] } }, f32(1, 2, 3));
    const st = openSafetensors(p, { label: "k.safetensors" });
    expect(() => readTensor(st, "W_enc")).toThrow('k.safetensors: has no tensor "W_enc" (it has "a", "i")');
    expect(() => readTensor(st, "a", [1, 2])).toThrow('tensor "a" has shape [2], expected [1, 2]');
    expect(() => readTensor(st, "i")).toThrow('tensor "i" is I32; only F32, F16, BF16 are supported');
  });
});
