import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { abi, EXPECTED_DEFAULTS, loadLlamaLibrary, readDefaults } from "../../src/adapters/llama-cpp/index.ts";

describe("llama.cpp ABI", () => {
  const lib = loadLlamaLibrary();

  test("the shim's by-value blocks have the sizes abi.ts derived from llama.h", () => {
    expect(lib.shim.sk_sizeof_model_params()).toBe(abi.MODEL_PARAMS.size);
    expect(lib.shim.sk_sizeof_context_params()).toBe(abi.CONTEXT_PARAMS.size);
    expect(lib.shim.sk_sizeof_batch()).toBe(abi.BATCH.size);
  });

  test("default params read through abi.ts offsets equal the values the verified release's source sets", () => {
    // A drifted offset reads a neighbouring field: these defaults are spread over both structs.
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
});
