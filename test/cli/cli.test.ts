import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "steerkit-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const p = Bun.spawnSync(["bun", join(root, "src/cli/main.ts"), ...args], { cwd: dir, env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

describe("steerkit CLI", () => {
  test("generate --json on the embedded model (llama.cpp by default)", () => {
    const r = cli("generate", "--prompt", "Once upon a time", "--max-tokens", "12", "--temperature", "0", "--json");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.promptTokens).toEqual([1, 403, 407, 261, 378]);
    expect(out.tokens.length).toBe(12);
    expect(out.text.startsWith(", there was a little girl named Lily")).toBe(true);
  });
  test("the same seed prints the same tokens; the reference backend agrees with llama.cpp greedily", () => {
    const a = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--seed", "7", "--json").stdout);
    const b = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--seed", "7", "--json").stdout);
    expect(b.tokens).toEqual(a.tokens);
    const ref = JSON.parse(cli("generate", "--backend", "reference", "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0", "--json").stdout);
    const cpp = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0", "--json").stdout);
    expect(ref.tokens).toEqual(cpp.tokens);
  });
  test("a recipe steers the output", () => {
    const recipe = join(dir, "steer.json");
    writeFileSync(recipe, JSON.stringify([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: Array.from({ length: 64 }, (_, i) => (i % 2 ? 4 : -4)) } }]));
    const plain = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0", "--json").stdout);
    const steered = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "0", "--recipe", recipe, "--json").stdout);
    expect(steered.tokens).not.toEqual(plain.tokens);
  });
  test("--direction registers a named direction a recipe can refer to; a bad flag or name is a clear error", () => {
    const vector = Array.from({ length: 64 }, (_, i) => (i % 2 ? 4 : -4));
    const file = join(dir, "dir.json");
    writeFileSync(file, JSON.stringify(vector));
    const named = join(dir, "named.json");
    writeFileSync(named, JSON.stringify([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "concept" } }]));
    const inline = join(dir, "inline.json");
    writeFileSync(inline, JSON.stringify([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector } }]));
    const args = ["generate", "--prompt", "Once upon a time", "--max-tokens", "12", "--temperature", "0", "--json"];
    const a = JSON.parse(cli(...args, "--recipe", named, "--direction", `concept=${file}`).stdout);
    const b = JSON.parse(cli(...args, "--recipe", inline).stdout);
    expect(a.tokens).toEqual(b.tokens);
    const bad = cli(...args, "--recipe", named, "--direction", "concept");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--direction must be <name>=<file>, got "concept"');
    const missing = cli(...args, "--recipe", named);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('no direction named "concept" is registered');
  });
  test("convert, then generate from the ONNX export: the same greedy tokens", () => {
    const out = join(dir, "onnx");
    const c = cli("convert", join(root, "models/stories260K.gguf"), out, "--json");
    expect(c.code).toBe(0);
    const onnx = JSON.parse(cli("generate", "--model", out, "--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--json").stdout);
    const cpp = JSON.parse(cli("generate", "--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--json").stdout);
    expect(onnx.promptTokens).toEqual(cpp.promptTokens);
    expect(onnx.tokens).toEqual(cpp.tokens);
    const info = JSON.parse(cli("inspect", out, "--json").stdout);
    expect(info).toMatchObject({ backend: "onnx", nLayers: 5, dModel: 64, vocabSize: 512 });
  });
  test("quantize to q8_0, then generate from it: the original's greedy tokens; bad input named", () => {
    const out = join(dir, "stories-q8_0.gguf");
    const q = cli("quantize", join(root, "models/stories260K.gguf"), out, "--type", "q8_0", "--threads", "2", "--json");
    expect(q.code).toBe(0);
    expect(JSON.parse(q.stdout)).toMatchObject({ type: "q8_0", ftype: 7, tensorTypes: { Q8_0: 32 } });
    const args = ["--prompt", "Once upon a time", "--max-tokens", "24", "--temperature", "0", "--json"];
    expect(JSON.parse(cli("generate", "--model", out, ...args).stdout).tokens).toEqual(JSON.parse(cli("generate", ...args).stdout).tokens);
    const again = cli("quantize", out, join(dir, "q4.gguf"), "--type", "q4_0");
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is already quantized \(tensor ".*" is Q8_0\)/);
    expect(cli("quantize", out, join(dir, "q4.gguf"), "--type", "q4_0", "--allow-requantize").code).toBe(0);
  });
  test("inspect --json lists every hook site with its other names", () => {
    const r = cli("inspect", join(root, "models/stories260K.gguf"), "--json");
    const info = JSON.parse(r.stdout);
    expect(info).toMatchObject({ backend: "llama-cpp", architecture: "llama", nLayers: 5, dModel: 64, vocabSize: 512, contextLength: 512 });
    expect(info.sites.length).toBe(11);
    expect(info.sites[2]).toEqual({ point: "resid_post.0", transformerLens: "blocks.0.hook_resid_post", llamaCpp: "l_out-0" });
  });
  test("--help on every command", () => {
    for (const c of ["generate", "inspect", "convert", "quantize", "plugins"]) {
      const r = cli(c, "--help");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`steerkit ${c}`);
    }
    expect(cli("--help").stdout).toContain("Commands:");
  });
  test("bad input: stderr names the problem, exit code is non-zero", () => {
    const cases: [string[], RegExp, number][] = [
      [["frobnicate"], /unknown command "frobnicate"/, 2],
      [["generate"], /--prompt is required/, 2],
      [["generate", "--prompt", "x", "--max-tokens", "lots"], /--max-tokens must be an integer >= 1, got "lots"/, 2],
      [["generate", "--prompt", "x", "--bogus"], /bogus/, 2],
      [["generate", "--prompt", "x", "--model", "missing.gguf"], /missing.gguf: no such file or directory/, 1],
      [["generate", "--prompt", "x", "--backend", "tensorflow"], /unknown backend "tensorflow"/, 1],
      [["generate", "--prompt", "x", "--recipe", "nope.json"], /nope.json: cannot read recipe \(no such file or directory\)/, 1],
      [["inspect"], /expected one model path, got 0/, 2],
      [["convert", "a.gguf"], /expected <model.gguf> <out-dir>/, 2],
      [["quantize", "a.gguf", "b.gguf"], /--type is required: one of q4_0, q4_k_m, q5_k_m, q8_0/, 2],
      [["quantize", "a.gguf", "b.gguf", "--type", "q2_k"], /--type must be one of q4_0, q4_k_m, q5_k_m, q8_0, got "q2_k"/, 2],
      [["quantize", "a.gguf", "b.gguf", "--type", "q8_0"], /a.gguf: no such file/, 1],
    ];
    for (const [args, pattern, code] of cases) {
      const r = cli(...args);
      expect(r.stderr).toMatch(pattern);
      expect(r.code).toBe(code);
      expect(r.stdout).toBe("");
    }
  });
  test("bad recipes: invalid JSON, unknown plugin (lists known ones), invalid options (names fields)", () => {
    const write = (name: string, text: string) => (writeFileSync(join(dir, name), text), join(dir, name));
    const badJson = cli("generate", "--prompt", "x", "--recipe", write("a.json", "[{"));
    expect(badJson.stderr).toMatch(/a\.json: not valid JSON/);
    const unknown = cli("generate", "--prompt", "x", "--recipe", write("b.json", '[{"plugin":"nope"}]'));
    expect(unknown.stderr).toMatch(/unknown plugin "nope" in recipe\[0\]; known plugins: ablate-direction, add-vector, logger/);
    const invalid = cli("generate", "--prompt", "x", "--recipe", write("c.json", '[{"plugin":"logger","options":{"topK":-3,"rows":"some"}}]'));
    expect(invalid.stderr).toMatch(/recipe\[0\] \(plugin "logger"\): invalid options:[\s\S]*topK[\s\S]*rows/);
    const shape = cli("generate", "--prompt", "x", "--recipe", write("d.json", '{"plugin":"logger"}'));
    expect(shape.stderr).toMatch(/d\.json: expected an array/);
    for (const r of [badJson, unknown, invalid, shape]) expect(r.code).toBe(1);
  });
  test("a bad model file is refused with the reason, not a crash", () => {
    const fake = join(dir, "fake.gguf");
    writeFileSync(fake, "definitely not a model file, just text");
    const r = cli("inspect", fake);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/fake\.gguf: not a valid GGUF file: magic is "defi"/);
  });
});
