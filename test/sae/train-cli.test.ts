import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "steerkit-sae-train-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const p = Bun.spawnSync(["bun", join(root, "src/cli/main.ts"), ...args], { cwd: dir });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const tiny = ["--generate-corpus", "16", "--corpus-tokens", "96", "--d-sae", "128", "--k", "4", "--steps", "300", "--batch", "256", "--seed", "3", "--json"];

describe("steerkit sae train", () => {
  test("TopK on stories260K end to end: FVU well below 1, L0 == k, SAELens files; the same seed writes the same bytes", () => {
    const a = cli("sae", "train", ...tiny, "--out", join(dir, "a"));
    expect(a.stderr).toBe("");
    expect(a.code).toBe(0);
    const s = JSON.parse(a.stdout);
    expect(s).toMatchObject({ point: "resid_post.2", architecture: "topk", dIn: 64, dSae: 128, k: 4, steps: 300, tokens: 300 * 256, seed: 3, texts: 16 });
    expect(s.fvu).toBeLessThan(0.5);
    expect(s.l0).toBe(4);
    expect(s.evalRows).toBeGreaterThan(0);
    const cfg = JSON.parse(readFileSync(join(dir, "a", "cfg.json"), "utf8"));
    expect(cfg).toMatchObject({ architecture: "topk", k: 4, d_in: 64, d_sae: 128, metadata: { hook_name: "blocks.2.hook_resid_post", model_name: "stories260K" } });
    expect(cfg.metadata.steerkit_training.fvu).toBe(s.fvu);

    const b = cli("sae", "train", ...tiny, "--out", join(dir, "b"));
    expect(b.code).toBe(0);
    for (const f of ["sae_weights.safetensors", "cfg.json", "sparsity.safetensors"]) {
      expect([f, readFileSync(join(dir, "a", f)).equals(readFileSync(join(dir, "b", f)))]).toEqual([f, true]);
    }
  });

  test("ReLU from a JSONL corpus on the reference backend", () => {
    const corpus = join(dir, "corpus.jsonl");
    const stories = ["Once upon a time, there was a little dog named Max.", "It was a rainy day. Lily was sad.", "Tom and Sue went to the park to play."];
    writeFileSync(corpus, Array.from({ length: 24 }, (_, i) => JSON.stringify(i % 2 ? { text: stories[i % 3] } : stories[i % 3])).join("\n"));
    const r = cli("sae", "train", "--backend", "reference", "--corpus", corpus, "--architecture", "relu", "--d-sae", "64", "--l1", "0.5", "--epochs", "20", "--batch", "64", "--point", "resid_mid.1", "--json", "--out", join(dir, "relu"));
    expect(r.code).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s).toMatchObject({ architecture: "relu", point: "resid_mid.1", texts: 24, k: null, l1: 0.5 });
    expect(s.fvu).toBeLessThan(1);
    expect(s.l0).toBeGreaterThan(0);
    expect(JSON.parse(readFileSync(join(dir, "relu", "cfg.json"), "utf8")).architecture).toBe("standard");
  });

  test("usage errors exit 2 and name the flag; help lists the options", () => {
    const out = join(dir, "x");
    expect(cli("sae", "train", "--generate-corpus", "2").stderr).toContain("--out <dir> is required");
    expect(cli("sae", "train", "--out", out).stderr).toContain("give one of --corpus <file> or --generate-corpus <n>");
    const arch = cli("sae", "train", "--generate-corpus", "2", "--architecture", "gated", "--out", out);
    expect([arch.code, arch.stderr.includes("--architecture must be topk or relu")]).toEqual([2, true]);
    expect(cli("sae", "train", "--generate-corpus", "2", "--k", "0", "--out", out).stderr).toContain("--k must be an integer >= 1");
    expect(cli("sae", "train", "--corpus", join(dir, "missing.txt"), "--out", out).stderr).toContain("cannot read");
    expect(cli("sae", "frobnicate").stderr).toContain('unknown subcommand "frobnicate"');
    const help = cli("sae", "train", "--help");
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("--generate-corpus <n>");
  });
});
