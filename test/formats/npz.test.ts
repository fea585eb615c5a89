import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, openNpz, readNpyArray } from "../../src/formats/npz.ts";

const BAD = join(import.meta.dir, "../fixtures/sae/bad");
const GEMMA = join(import.meta.dir, "../fixtures/sae/gemma-scope-2b-pt-mlp/layer_1/width_1k/average_l0_5/params.npz");
const dir = mkdtempSync(join(tmpdir(), "steerkit-npz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fails(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error("expected an error");
}

describe("npz reader", () => {
  test("reads numpy's stored members (<f4) by name, with shape", () => {
    const npz = openNpz(join(BAD, "good.npz"));
    expect(npz.names).toEqual(["W_enc", "b_enc"]);
    const b = readNpyArray(npz, "b_enc", [4]);
    expect([...b.data]).toEqual([0, 1, 2, 3]);
    expect(readNpyArray(npz, "W_enc").shape).toEqual([3, 4]);
  });

  test("reads deflated members (np.savez_compressed) of <f2", () => {
    const npz = openNpz(GEMMA);
    expect(npz.members.get("W_enc")!.method).toBe(8);
    const a = readNpyArray(npz, "W_enc");
    expect(a.descr).toBe("<f2");
    expect(a.shape).toEqual([16, 48]);
  });

  test("crc32 is the zip (IEEE) checksum", () => {
    expect(crc32(new TextEncoder().encode("123456789"))).toBe(0xcbf43926);
  });

  const refused: [string, string][] = [
    ["object.npz", 'holds Python objects (descr "|O", a pickle); refused'],
    ["fortran.npz", "is in Fortran order"],
    ["big-endian.npz", 'is big-endian (descr ">f4")'],
    ["float64.npz", 'has dtype "<f8"; only <f4 and <f2 are supported'],
  ];
  for (const [name, message] of refused) {
    test(`refuses ${name}`, () => {
      const e = fails(() => readNpyArray(openNpz(join(BAD, name), { label: "p.npz" }), "W_enc"));
      expect(e.code).toBe("INVALID_MODEL_FILE");
      expect(e.message).toBe(`p.npz: array "W_enc": ${e.message.split('array "W_enc": ')[1]}`);
      expect(e.message).toContain(message);
    });
  }

  test("refuses a truncated file, a file that is not a zip, a damaged member and a missing array", () => {
    const good = readFileSync(join(BAD, "good.npz"));
    const cut = join(dir, "cut.npz");
    writeFileSync(cut, good.subarray(0, good.length - 30));
    expect(fails(() => openNpz(cut, { label: "cut.npz" })).message).toContain("no end-of-central-directory record");
    const cutData = join(dir, "cut-data.npz");
    // Keep the directory but drop bytes from the middle: the directory then points past the end.
    writeFileSync(cutData, Buffer.concat([good.subarray(0, 100), good.subarray(good.length - 200)]));
    expect(fails(() => readNpyArray(openNpz(cutData), "W_enc")).code).toBe("INVALID_MODEL_FILE");
    const junk = join(dir, "junk.npz");
    writeFileSync(junk, new Uint8Array(4096).fill(7));
    expect(fails(() => openNpz(junk)).message).toContain("not an npz (zip) file");
    const flipped = Buffer.from(good);
    flipped[200] = flipped[200]! ^ 0xff; // inside W_enc's data
    const damaged = join(dir, "damaged.npz");
    writeFileSync(damaged, flipped);
    expect(fails(() => readNpyArray(openNpz(damaged), "W_enc")).message).toContain("CRC-32 mismatch");
    expect(fails(() => readNpyArray(openNpz(join(BAD, "good.npz")), "threshold")).message).toContain('has no array "threshold" (it has "W_enc", "b_enc")');
    expect(fails(() => readNpyArray(openNpz(join(BAD, "good.npz")), "b_enc", [5])).message).toContain("has shape [4], expected [5]");
  });
});
