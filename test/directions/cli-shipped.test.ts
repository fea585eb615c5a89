/**
 * `steerkit directions` from a shell, and the shipped stories260K dog control vector: the command in
 * its README rebuilds both files byte for byte, and the vector steers stories towards dogs.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { countDogStories, countStories, DOG_DIR } from "../../examples/directions-dog.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { readControlVector } from "../../src/directions/control-vector.ts";
import { readDirectionFile, writeDirectionFile } from "../../src/directions/file.ts";
import { ablateDirection } from "../../src/plugins/steering.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";

const root = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "steerkit-directions-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cli = (...args: string[]) => {
  const p = Bun.spawnSync(["bun", join(root, "src/cli/main.ts"), "directions", ...args], { cwd: dir });
  return { code: p.exitCode, out: p.stdout.toString(), err: p.stderr.toString() };
};

describe("steerkit directions", () => {
  test("extract + export rebuild the shipped files byte for byte (the README's commands)", () => {
    const ex = cli("extract", "--a", join(DOG_DIR, "dog.txt"), "--b", join(DOG_DIR, "other.txt"), "--positions", "mean", "--points", "resid_post.1-3", "--out", "dog.safetensors", "--json");
    expect(ex.err).toBe("");
    const summary = JSON.parse(ex.out);
    expect(summary.points.map((p: { point: string }) => p.point)).toEqual(["resid_post.1", "resid_post.2", "resid_post.3"]);
    expect(summary.prompts.a.size).toBe(24);
    const exp = cli("export", "dog.safetensors", "--to", "gguf", "--scale", "0.1", "--relative-to", "mean-norm", "--out", "dog.gguf");
    expect(exp.code).toBe(0);
    expect(readFileSync(join(dir, "dog.safetensors")).equals(readFileSync(join(DOG_DIR, "dog.safetensors")))).toBe(true);
    expect(readFileSync(join(dir, "dog.gguf")).equals(readFileSync(join(DOG_DIR, "dog.gguf")))).toBe(true);
    // And back: the control vector as a direction file holds the same numbers.
    expect(cli("export", join(DOG_DIR, "dog.gguf"), "--to", "safetensors", "--n-layers", "5", "--out", "back.safetensors").code).toBe(0);
    const info = JSON.parse(cli("info", "back.safetensors", "--json").out);
    const cv = readControlVector(join(DOG_DIR, "dog.gguf"));
    const norms = [1, 2, 3].map((l) => Math.hypot(...cv.layers.get(l)!));
    info.points.forEach((p: { norm: number }, i: number) => expect(p.norm).toBeCloseTo(norms[i]!, 6));
  });

  test("extract --positions each-post-instruction writes one file per position; select ranks them together", () => {
    const a = join(DOG_DIR, "dog.txt");
    const b = join(DOG_DIR, "other.txt");
    const ex = cli("extract", "--a", a, "--b", b, "--chat", "--positions", "each-post-instruction", "--points", "resid_post.1-2", "--out", "pp.safetensors", "--json");
    expect(ex.err).toBe("");
    const summary = JSON.parse(ex.out);
    const files: { out: string; positions: string }[] = summary.files;
    expect(files.length).toBeGreaterThan(1);
    files.forEach((f, i) => expect(f).toMatchObject({ out: `pp.pos-${i + 1}.safetensors`, positions: `-${i + 1}` }));
    const single = cli("extract", "--a", a, "--b", b, "--chat", "--positions=-2", "--points", "resid_post.1-2", "--out", "p2.safetensors");
    expect(single.code).toBe(0);
    expect(readFileSync(join(dir, "p2.safetensors")).equals(readFileSync(join(dir, "pp.pos-2.safetensors")))).toBe(true);
    const three = files.slice(0, 3);
    const sel = cli("select", ...three.map((f) => f.out), "--a", a, "--b", b, "--chat", "--tokens", "dog", "--max-kl", "1", "--json", "sel.json");
    expect(sel.code).toBe(0);
    const rows: { position: string; point: string }[] = JSON.parse(readFileSync(join(dir, "sel.json"), "utf8")).rows;
    expect(rows).toHaveLength(2 * three.length);
    expect(new Set(rows.map((r) => r.position))).toEqual(new Set(three.map((f) => f.positions)));
    expect(sel.out).toContain("| rank | position | point |");
    expect(cli("extract", "--a", a, "--b", b, "--positions", "each-post-instruction", "--out", "x.safetensors").err).toMatch(/each-post-instruction needs --chat/);
    expect(cli("extract", "--a", a, "--b", b, "--positions", "first", "--out", "x.safetensors").err).toMatch(/--positions must be last, mean, post-instruction, each-post-instruction or -k/);
  });

  test("usage errors exit 2 and name the flag; unexportable points say which", () => {
    const unequal = cli("extract", "--a", join(DOG_DIR, "dog.txt"), "--b", join(root, "test/fixtures/tokenizer/README.md"), "--out", "x.safetensors");
    expect(unequal.code).toBe(2);
    expect(unequal.err).toMatch(/--a has 24 prompts, --b has \d+: the sets must have the same size/);
    expect(cli("extract", "--a", "a.txt", "--out", "x.safetensors").err).toMatch(/--a <file> and --b <file> are required/);
    expect(cli("extract", "--a", "a", "--b", "b", "--out", "x.bin").err).toMatch(/--out must end in .safetensors/);
    expect(cli("extract", "--a", "a", "--b", "b", "--out", "x.safetensors", "--positions", "post-instruction").err).toMatch(/needs --chat/);
    writeDirectionFile(join(dir, "zero.safetensors"), { vectors: new Map([["resid_post.0", Float32Array.of(1, 2)], ["resid_post.1", Float32Array.of(1, 2)]]), metadata: { n_layers: "5" } });
    const zero = cli("export", "zero.safetensors", "--to", "gguf", "--out", "z.gguf");
    expect(zero.code).toBe(2);
    expect(zero.err).toMatch(/resid_post.0.*cannot address block 0's output.*--points/);
    expect(cli("export", join(DOG_DIR, "dog.safetensors"), "--to", "onnx", "--out", "z").err).toMatch(/--to must be gguf or safetensors/);
  });
});

describe("the shipped dog control vector (stories260K, llama.cpp)", () => {
  test("more of 30 seeded stories mention a dog with it than without, none degenerate", async () => {
    const model = await llamaCpp.load(DEFAULT_MODEL_PATH);
    try {
      const plain = await countDogStories(model, 30, null, "unsteered");
      const steered = await countDogStories(model, 30, join(DOG_DIR, "dog.gguf"), "dog.gguf");
      // README: 4/30 unsteered, 19/30 steered on this machine; margins for other CPUs' float rounding.
      expect(plain.stories).toBeLessThanOrEqual(8);
      expect(steered.stories).toBeGreaterThanOrEqual(14);
      expect(steered.degenerate).toBe(0);
    } finally {
      model.dispose();
    }
  });

  test("ablating the selected layer's direction at every point removes the dog from stories that start with one", async () => {
    const model = await llamaCpp.load(DEFAULT_MODEL_PATH);
    try {
      const dog = readDirectionFile(join(DOG_DIR, "dog.safetensors"), "dog").byPoint.get("resid_post.2")!;
      const prompt = "Once upon a time, there was a dog.";
      const plain = await countStories(model, 30, { label: "unsteered", prompt });
      const ablated = await countStories(model, 30, { label: "ablated", prompt, plugins: [ablateDirection({ direction: Array.from(dog), points: "all" })] });
      // docs/directions-demo.md: 27/30 -> 0/30 on this machine; margins for other CPUs' float rounding.
      expect(plain.stories).toBeGreaterThanOrEqual(20);
      expect(ablated.stories).toBeLessThanOrEqual(4);
      expect(ablated.degenerate).toBe(0);
    } finally {
      model.dispose();
    }
  });
});
