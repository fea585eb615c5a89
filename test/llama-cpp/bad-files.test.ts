import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_MODEL_PATH, GgufError, llamaCpp, UnsupportedModelError } from "../../src/adapters/llama-cpp/index.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-llama-bad-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const original = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));

function write(name: string, bytes: Uint8Array | string): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

async function loadError(path: string): Promise<Error> {
  try {
    const m = await llamaCpp.load(path);
    m.dispose();
  } catch (e) {
    return e as Error;
  }
  throw new Error(`loading ${path} succeeded`);
}

describe("bad model files give errors naming the file and the problem", () => {
  test("truncated file", async () => {
    const p = write("truncated.gguf", original.subarray(0, Math.floor(original.length / 2)));
    const e = await loadError(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/truncat|beyond|end of file|past the end|extends/i);
  });

  test("truncated inside the header", async () => {
    const p = write("header.gguf", original.subarray(0, 100));
    const e = await loadError(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
  });

  test("corrupted magic", async () => {
    const bytes = original.slice();
    bytes.set([0x47, 0x47, 0x4d, 0x4c], 0); // "GGML"
    const p = write("magic.gguf", bytes);
    const e = await loadError(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
    expect(e.message).toMatch(/magic/i);
  });

  test("not a GGUF at all", async () => {
    const p = write("text.gguf", "this is a text file, not a model\n".repeat(10));
    const e = await loadError(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toMatch(/magic/i);
  });

  test("missing file", async () => {
    const e = await loadError(join(dir, "nope.gguf"));
    expect(e.message).toMatch(/no such file or directory/);
  });

  test("an architecture the adapter has not verified is refused before llama.cpp sees it", async () => {
    const bytes = original.slice();
    const key = new TextEncoder().encode("general.architecture");
    const at = Buffer.from(bytes).indexOf(Buffer.from(key));
    expect(at).toBeGreaterThan(0);
    // key, then u32 value type (8 = string), u64 length 5, then "llama": same length as "bloom".
    const value = at + key.length + 4 + 8;
    expect(new TextDecoder().decode(bytes.subarray(value, value + 5))).toBe("llama");
    bytes.set(new TextEncoder().encode("bloom"), value);
    const p = write("bloom.gguf", bytes);
    const e = await loadError(p);
    expect(e).toBeInstanceOf(UnsupportedModelError);
    expect(e.message).toContain(p);
    expect(e.message).toContain(`architecture "bloom" is not supported`);
  });

  test("two tokens sharing a text (issue 8's one-byte repro) is a clear error, not an abort", async () => {
    const bytes = original.slice();
    bytes[1363] = "8".charCodeAt(0);
    const p = write("dup.gguf", bytes);
    const e = await loadError(p);
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(p);
    expect(e.message).toContain(`tokens 91 and 92 have the same text "<0x58>"`);
  });

  test("hyperparameters llama.cpp asserts on are refused naming the key", async () => {
    const bytes = original.slice();
    const key = new TextEncoder().encode("llama.block_count");
    const at = Buffer.from(bytes).indexOf(Buffer.from(key));
    expect(at).toBeGreaterThan(0);
    new DataView(bytes.buffer).setUint32(at + key.length + 4, 0, true); // after the u32 type id
    const e = await loadError(write("layers0.gguf", bytes));
    expect(e).toBeInstanceOf(GgufError);
    expect(e.message).toContain(`metadata "llama.block_count" is 0, expected 1..512`);
  });

  test("the process survives and still loads a good model afterwards", async () => {
    const m = await llamaCpp.load(DEFAULT_MODEL_PATH);
    expect(m.info.nLayers).toBe(5);
    expect(m.info.contextLength).toBe(512);
    m.dispose();
  });
});
