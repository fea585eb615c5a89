import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GgufError, metaNumber, metaString, readGgufHeader, readTensorF32 } from "../../src/formats/gguf.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const dir = mkdtempSync(join(tmpdir(), "steerkit-gguf-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function variant(name: string, edit: (b: Uint8Array) => Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, edit(new Uint8Array(readFileSync(MODEL))));
  return p;
}

function expectGgufError(path: string, pattern: RegExp): void {
  let error: unknown;
  try {
    readGgufHeader(path);
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(GgufError);
  expect((error as GgufError).message).toContain(path);
  expect((error as GgufError).message).toMatch(pattern);
}

describe("readGgufHeader on the embedded model", () => {
  const file = readGgufHeader(MODEL);
  test("reads the header the shared README documents", () => {
    expect(file.version).toBe(3);
    expect(metaString(file, "general.architecture")).toBe("llama");
    expect(metaNumber(file, "llama.block_count")).toBe(5);
    expect(metaNumber(file, "llama.embedding_length")).toBe(64);
    expect(metaNumber(file, "llama.attention.head_count_kv")).toBe(4);
    expect(file.tensors.length).toBe(48);
    const tokens = file.metadata.get("tokenizer.ggml.tokens") as string[];
    expect(tokens.length).toBe(512);
    expect(tokens.slice(0, 4)).toEqual(["<unk>", "<s>", "</s>", "<0x00>"]);
  });
  test("tensor table is consistent with the file", () => {
    const last = file.tensors[file.tensors.length - 1]!;
    expect(last.offset + last.byteLength).toBeLessThanOrEqual(file.fileSize);
    const emb = file.tensors.find((t) => t.name === "token_embd.weight")!;
    expect(emb.dims).toEqual([64, 512]);
    const values = readTensorF32(file, emb);
    expect(values.length).toBe(64 * 512);
    expect(values.every(Number.isFinite)).toBe(true);
  });
  test("typed accessors name the key and what they got", () => {
    expect(() => metaNumber(file, "general.architecture")).toThrow(/general\.architecture.*a number.*string "llama"/);
    expect(metaString(file, "no.such.key", null)).toBeNull();
  });
});

describe("bad files get an error that names the file and the problem", () => {
  test("missing file", () => expectGgufError(join(dir, "nope.gguf"), /no such file or directory/));
  test("directory", () => expectGgufError(dir, /directory/));
  test("not a GGUF at all", () => {
    const p = join(dir, "text.gguf");
    writeFileSync(p, "this is a text file, not a model, but long enough to read a header");
    expectGgufError(p, /magic is "this".*expected "GGUF"/);
  });
  test("tiny file", () => expectGgufError(variant("tiny.gguf", (b) => b.slice(0, 10)), /smaller than a GGUF header/));
  test("truncated inside the metadata", () => expectGgufError(variant("cut-meta.gguf", (b) => b.slice(0, 3000)), /truncated|claims/));
  test("truncated inside the tensor data", () => expectGgufError(variant("cut-data.gguf", (b) => b.slice(0, b.length - 100)), /past the end of the file.*truncated/));
  test("unsupported version", () =>
    expectGgufError(variant("v9.gguf", (b) => (new DataView(b.buffer).setUint32(4, 9, true), b)), /version 9 is not supported/));
  test("version 1", () => expectGgufError(variant("v1.gguf", (b) => (new DataView(b.buffer).setUint32(4, 1, true), b)), /version 1/));
  test("absurd tensor count", () =>
    expectGgufError(variant("count.gguf", (b) => (new DataView(b.buffer).setBigUint64(8, 1n << 40n, true), b)), /claims \d+ tensors/));
  test("corrupted tensor type", () =>
    expectGgufError(
      variant("type.gguf", (b) => {
        // The first tensor entry follows the metadata; find its name and overwrite the type after its dims.
        const at = Buffer.from(b).indexOf("token_embd.weight");
        const typeAt = at + "token_embd.weight".length + 4 + 2 * 8;
        new DataView(b.buffer).setUint32(typeAt, 77, true);
        return b;
      }),
      /tensor "token_embd.weight" has unknown or removed ggml type 77/,
    ));
  test("corrupted tensor offset", () =>
    expectGgufError(
      variant("offset.gguf", (b) => {
        const at = Buffer.from(b).indexOf("output_norm.weight");
        const offsetAt = at + "output_norm.weight".length + 4 + 8 + 4;
        new DataView(b.buffer).setBigUint64(offsetAt, 12345n, true);
        return b;
      }),
      /tensor "output_norm.weight" starts at data offset 12345/,
    ));
});
