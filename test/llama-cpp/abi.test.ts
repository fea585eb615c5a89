import { describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toArrayBuffer, type Pointer } from "bun:ffi";
import { abi, EXPECTED_DEFAULTS, LlamaLoadError, loadLlamaLibrary, readDefaults, verifyPackage } from "../../src/adapters/llama-cpp/index.ts";
import { shimLayoutDrift } from "../../src/adapters/llama-cpp/ffi.ts";

describe("llama.cpp ABI", () => {
  const lib = loadLlamaLibrary();

  test("the shim's by-value blocks have the sizes abi.ts derived from llama.h", () => {
    expect(lib.shim.sk_sizeof_model_params()).toBe(abi.MODEL_PARAMS.size);
    expect(lib.shim.sk_sizeof_context_params()).toBe(abi.CONTEXT_PARAMS.size);
    expect(lib.shim.sk_sizeof_batch()).toBe(abi.BATCH.size);
    expect(lib.shim.sk_sizeof_quantize_params()).toBe(abi.QUANTIZE_PARAMS.size);
  });

  test("default params read through abi.ts offsets equal the values the verified release's source sets", () => {
    // A drifted offset reads a neighbouring field: these defaults are spread over all three structs
    // (llama_model_quantize_params: its bool run and the pointers and size_t after the padding).
    expect(readDefaults(lib)).toEqual(EXPECTED_DEFAULTS as never);
  });

  test("the loaded binaries are the verified release", () => {
    const meta = JSON.parse(readFileSync(join(lib.binsDir, "_nlcBuildMetadata.json"), "utf8"));
    expect(meta.buildOptions.llamaCpp.release).toBe(abi.VERIFIED_LLAMA_RELEASE);
    const pkg = JSON.parse(readFileSync(join(lib.binsDir, "..", "..", "package.json"), "utf8"));
    expect(pkg.version).toBe(abi.VERIFIED_PACKAGE_VERSION);
    expect(lib.systemInfo).toContain("CPU");
  });

  test("shim.c's tensor offsets are the ones abi.ts declares", () => {
    const src = readFileSync(new URL("../../src/adapters/llama-cpp/shim.c", import.meta.url), "utf8");
    const define = (name: string) => Number(new RegExp(`#define ${name} (\\d+)`).exec(src)?.[1]);
    expect(define("T_TYPE")).toBe(abi.TENSOR.type);
    expect(define("T_NE")).toBe(abi.TENSOR.ne);
    expect(define("T_NB")).toBe(abi.TENSOR.nb);
    expect(define("T_DATA")).toBe(abi.TENSOR.data);
    expect(define("T_NAME")).toBe(abi.TENSOR.name);
  });

  test("the shim's sk_point and sk_hooks have the size and field offsets of SHIM_POINT and SHIM_HOOKS", () => {
    expect(shimLayoutDrift(lib.shim)).toEqual([]);
    // The check compares every field: a shim whose pos_to sat elsewhere would be named.
    const moved = {
      ...lib.shim,
      sk_point_layout: (p: Pointer) => {
        lib.shim.sk_point_layout(p);
        new Int32Array(toArrayBuffer(p, 0, 9 * 4))[8] = 40;
      },
    };
    expect(shimLayoutDrift(moved)).toEqual(["sk_point.pos_to at 40, abi.ts says 44"]);
  });

  test("a package of another version or llama.cpp release is refused", () => {
    const dir = mkdtempSync(join(tmpdir(), "steerkit-abi-"));
    try {
      const pkgDir = join(lib.binsDir, "..", "..");
      const fake = join(dir, "pkg");
      const bins = join(fake, "bins", "linux-x64");
      cpSync(join(pkgDir, "package.json"), join(fake, "package.json"));
      cpSync(join(lib.binsDir, "_nlcBuildMetadata.json"), join(bins, "_nlcBuildMetadata.json"));
      for (const f of [abi.LIB_GGML_BASE, abi.LIB_GGML, abi.LIB_LLAMA]) writeFileSync(join(bins, f), "");
      expect(verifyPackage(fake)).toBe(bins);

      const meta = JSON.parse(readFileSync(join(bins, "_nlcBuildMetadata.json"), "utf8"));
      meta.buildOptions.llamaCpp.release = "v0.5.0";
      writeFileSync(join(bins, "_nlcBuildMetadata.json"), JSON.stringify(meta));
      expect(() => verifyPackage(fake)).toThrow(LlamaLoadError);
      expect(() => verifyPackage(fake)).toThrow(/names llama.cpp release v0.5.0, Steerkit verified v0.4.0 only/);

      const pkg = JSON.parse(readFileSync(join(fake, "package.json"), "utf8"));
      pkg.version = "3.22.1";
      writeFileSync(join(fake, "package.json"), JSON.stringify(pkg));
      expect(() => verifyPackage(fake)).toThrow(/is version 3.22.1, but Steerkit verified its struct layouts against 3.21.1 only/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("an own build of the verified release (STEERKIT_LLAMA_LIB_DIR)", () => {
  test("a directory without the libraries is refused by name, before anything loads", () => {
    const script = `import { loadLlamaLibrary } from ${JSON.stringify(new URL("../../src/adapters/llama-cpp/ffi.ts", import.meta.url).pathname)};
try { loadLlamaLibrary(); console.log("loaded"); } catch (e) { console.log(e.name + ": " + e.message); }`;
    const p = Bun.spawnSync(["bun", "-e", script], { env: { ...process.env, STEERKIT_LLAMA_LIB_DIR: "/nonexistent/llama-build" } });
    expect(p.stdout.toString().trim()).toBe(
      "LlamaLoadError: STEERKIT_LLAMA_LIB_DIR=/nonexistent/llama-build: missing /nonexistent/llama-build/libggml-base.so (expected the shared libraries of a llama.cpp v0.4.0 build)",
    );
  });
});
