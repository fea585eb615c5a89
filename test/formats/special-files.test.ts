// Special files (FIFO, device, directory, symlink loop) given where a file is expected: every
// reader fails at once with a SteerkitError saying what the path is. Before src/formats/files.ts a
// FIFO named x.gguf hung `steerkit generate` until killed, and a link loop said "no such file".
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openModel } from "../../src/adapters/index.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { SteerkitError } from "../../src/core/errors.ts";
import { loadRecipeFile } from "../../src/core/recipe.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { openNpz } from "../../src/formats/npz.ts";
import { openSafetensors } from "../../src/formats/safetensors/read.ts";
import { readOnnxFile } from "../../src/formats/onnx/external.ts";
import { loadSae } from "../../src/sae/load.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-special-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A FIFO, a character device, a directory and a symlink loop, each under a name the reader accepts. */
function specials(ext: string): [string, string, RegExp][] {
  const fifo = join(dir, `fifo${ext}`);
  const made = Bun.spawnSync(["mkfifo", fifo]);
  if (made.exitCode !== 0) throw new Error(`mkfifo failed: ${made.stderr}`);
  const device = join(dir, `device${ext}`);
  symlinkSync("/dev/zero", device);
  const directory = join(dir, `directory${ext}`);
  mkdirSync(directory);
  const loop = join(dir, `loop${ext}`);
  symlinkSync(loop, loop);
  return [
    ["FIFO", fifo, /FIFO/],
    ["device", device, /character device/],
    ["directory", directory, /directory/],
    ["symlink loop", loop, /symbolic link loop/],
  ];
}

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("did not throw");
}

async function rejected(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    return e as Error;
  }
  throw new Error("did not reject");
}

describe("special files are refused at once, by kind", () => {
  for (const [kind, path, why] of specials(".gguf")) {
    test(`a ${kind} as a GGUF model (reader, llama.cpp adapter, openModel)`, async () => {
      for (const e of [thrown(() => readGgufHeader(path)), await rejected(llamaCpp.load(path)), await rejected(openModel(path, { backend: "llama-cpp" }))]) {
        expect(e).toBeInstanceOf(SteerkitError);
        expect(e.message).toContain(path);
        expect(e.message).toMatch(why);
      }
      if (kind !== "directory") {
        // Inferring the backend from the path must not open it either (a directory means ONNX).
        const e = await rejected(openModel(path));
        expect(e.message).toMatch(why);
      }
    });
  }

  for (const [kind, path, why] of specials(".onnx")) {
    test(`a ${kind} as an ONNX model`, async () => {
      if (kind !== "directory") {
        const e = thrown(() => readOnnxFile(path));
        expect(e).toBeInstanceOf(SteerkitError);
        expect(e.message).toMatch(why);
      }
      const e = await rejected(onnx.load(path));
      expect(e).toBeInstanceOf(SteerkitError);
    });
  }

  for (const [kind, path, why] of specials(".safetensors")) {
    test(`a ${kind} as safetensors, npz, an SAE file`, () => {
      for (const e of [thrown(() => openSafetensors(path)), thrown(() => openNpz(path))]) {
        expect(e).toBeInstanceOf(SteerkitError);
        expect(e.message).toMatch(why);
      }
    });
  }

  test("an SAE directory whose weights file is a FIFO, and an SAE path that is a link loop", () => {
    const sae = join(dir, "sae-fifo");
    mkdirSync(sae);
    writeFileSync(join(sae, "cfg.json"), "{}");
    expect(Bun.spawnSync(["mkfifo", join(sae, "sae_weights.safetensors")]).exitCode).toBe(0);
    expect(thrown(() => loadSae(sae)).message).toMatch(/FIFO|cfg\.json/);
    const loop = join(dir, "sae-loop");
    symlinkSync(loop, loop);
    const e = thrown(() => loadSae(loop));
    expect(e).toBeInstanceOf(SteerkitError);
    expect(e.message).toMatch(/symbolic link loop/);
  });

  for (const [kind, path, why] of specials(".json")) {
    test(`a ${kind} as a recipe or a direction file`, async () => {
      const r = thrown(() => loadRecipeFile(path));
      expect(r).toBeInstanceOf(SteerkitError);
      expect(r.message).toMatch(why);
      const artifacts = createArtifacts().register("d", directionArtifact, { path });
      const d = await rejected(artifacts.load(directionArtifact, "d"));
      expect(d).toBeInstanceOf(SteerkitError);
      expect(d.message).toMatch(why);
    });
  }

  test("steerkit generate on a FIFO named x.gguf exits with the reason instead of hanging", () => {
    const fifo = join(dir, "x.gguf");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const p = Bun.spawnSync(["bun", join(import.meta.dir, "../../src/cli/main.ts"), "generate", "--model", fifo, "--prompt", "x"], {
      env: { ...process.env, NO_COLOR: "1" },
      timeout: 30_000,
    });
    expect(p.signalCode ?? null).toBeNull();
    expect(p.exitCode).not.toBe(0);
    expect(p.stderr.toString()).toContain(`${fifo}: is a FIFO`);
  });

  test("files named by CLI flags (prompt sets, corpora, input vectors) refuse a FIFO at once", () => {
    const fifo = join(dir, "inputs.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const main = join(import.meta.dir, "../../src/cli/main.ts");
    const sae = join(import.meta.dir, "../../models/sae/stories260K-resid_post.2-topk");
    for (const args of [
      ["sae", "encode", sae, "--input", fifo],
      ["sae", "features", sae, "--latent", "1", "--texts", fifo],
      ["directions", "extract", "--a", fifo, "--b", fifo, "--out", join(dir, "never.safetensors")],
    ]) {
      const p = Bun.spawnSync(["bun", main, ...args], { env: { ...process.env, NO_COLOR: "1" }, timeout: 30_000 });
      expect(p.signalCode ?? null).toBeNull();
      expect(p.exitCode).not.toBe(0);
      expect(p.stderr.toString()).toContain("FIFO");
    }
  });

  test("a broken tokenizer.json names the file", async () => {
    const exp = join(dir, "broken-tokenizer");
    mkdirSync(exp);
    // A copy of a working export fixture, with a truncated tokenizer.json.
    const src = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
    for (const f of readdirSync(src)) await Bun.write(join(exp, f), Bun.file(join(src, f)));
    writeFileSync(join(exp, "tokenizer.json"), '{"model": {"type": "BPE", "vocab": ');
    const e = await rejected(onnx.load(exp));
    expect(e).toBeInstanceOf(SteerkitError);
    expect(e.message).toContain(join(exp, "tokenizer.json"));
    expect(e.message).toMatch(/not valid JSON/);
  });
});
