/** `steerkit sae info|encode`, end to end through the CLI process, against numpy's expected values. */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const root = join(import.meta.dir, "../..");
const FIXTURES = join(root, "test/fixtures/sae");
const dir = mkdtempSync(join(tmpdir(), "steerkit-cli-sae-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(...args: string[]) {
  const p = Bun.spawnSync(["bun", join(root, "src/cli/main.ts"), ...args], { cwd: dir, env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

const expected = JSON.parse(readFileSync(join(FIXTURES, "expected.json"), "utf8")) as {
  tolerance: { abs: number; rel: number };
  cases: { name: string; dir: string; inputs: number[][]; acts: number[][]; recon: number[][] }[];
};

describe("steerkit sae", () => {
  test("info --json: family, architecture, widths, k, point, dtype, normalization", () => {
    const r = cli("sae", "info", join(FIXTURES, "saelens-v6-topk-f16-layernorm"), "--json");
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({
      family: "saelens", architecture: "topk", dIn: 16, dSae: 48, k: 6, hookName: "blocks.1.hook_resid_pre", point: "resid_pre.1",
      dtype: "float16", applyBDecToInput: true, normalization: { kind: "layer_norm", eps: 1e-5 }, warnings: [],
    });
  });

  test("info takes --point when the files name none, and prints a table without --json", () => {
    const real = join(FIXTURES, "saelens-v6-jumprelu-128x512");
    expect(JSON.parse(cli("sae", "info", real, "--json").stdout).point).toBeNull();
    expect(JSON.parse(cli("sae", "info", real, "--point", "resid_post.3", "--json").stdout).point).toBe("resid_post.3");
    const table = cli("sae", "info", real).stdout;
    expect(table).toContain("point            (unknown: give --point)");
    expect(table).toContain("d_sae            512");
  });

  for (const name of ["sparsify-bf16", "gemma-scope-2b-pt-mlp/layer_1/width_1k/average_l0_5", "saelens-v6-gated-bf16"]) {
    test(`encode --json equals numpy's acts and recon: ${name}`, () => {
      const c = expected.cases.find((x) => x.name === name)!;
      const input = join(dir, "in.json");
      writeFileSync(input, JSON.stringify(c.inputs));
      const r = cli("sae", "encode", join(FIXTURES, c.dir), "--input", input, "--json");
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as { acts: number[][]; recon: number[][] };
      const { abs, rel } = expected.tolerance;
      for (const key of ["acts", "recon"] as const) {
        expect(out[key].length).toBe(c[key].length);
        out[key].forEach((row, i) => row.forEach((v, j) => expect(Math.abs(v - c[key][i]![j]!)).toBeLessThanOrEqual(abs + rel * Math.abs(c[key][i]![j]!))));
      }
    });
  }

  test("encode without --json summarizes each vector", () => {
    const c = expected.cases.find((x) => x.name === "sparsify-bf16")!;
    const input = join(dir, "one.json");
    writeFileSync(input, JSON.stringify(c.inputs.slice(0, 2)));
    const lines = cli("sae", "encode", join(FIXTURES, c.dir), "--input", input).stdout.trim().split("\n");
    expect(lines.length).toBe(2);
    expect(lines[0]).toStartWith("vector 0: 6 active latents (top: ");
  });

  test("--help on sae and on each subcommand", () => {
    expect(cli("sae", "--help").stdout).toContain("Subcommands:\n  info");
    expect(cli("sae", "info", "--help").stdout).toStartWith("steerkit sae info");
    expect(cli("sae", "encode", "--help").stdout).toStartWith("steerkit sae encode");
    expect(cli("--help").stdout).toContain("sae ");
  });

  test("usage errors exit 2, bad files exit 1, each named", () => {
    expect(cli("sae").code).toBe(2);
    const unknown = cli("sae", "decode");
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown subcommand "decode"; expected one of info, encode');
    const sparsify = join(FIXTURES, "sparsify-bf16/layers.3");
    const noInput = cli("sae", "encode", sparsify);
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toContain("--input <vectors.json> is required");
    const flat = join(dir, "flat.json");
    writeFileSync(flat, JSON.stringify(new Array(16).fill(1)));
    expect(cli("sae", "encode", sparsify, "--input", flat).stderr).toContain("wrap a single vector in brackets");
    const short = join(dir, "short.json");
    writeFileSync(short, JSON.stringify([[1, 2, 3]]));
    const s = cli("sae", "encode", sparsify, "--input", short);
    expect(s.code).toBe(2);
    expect(s.stderr).toContain("--input vector 0 must be an array of 16 numbers (the SAE's d_in), got 3 values");
    const missing = cli("sae", "info", join(dir, "no-sae"));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("no such file or directory");
    expect(cli("sae", "info", sparsify, "--norm-scaling-factor", "-2").code).toBe(2);
  });
});
