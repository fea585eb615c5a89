/**
 * Every SAE family, architecture, dtype and normalization mode loads and encodes/decodes to the
 * values numpy computed independently, following each tool's own forward pass
 * (test/fixtures/sae/make-fixtures.py -> expected.json; Python is not run here).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { pointName } from "../../src/core/sites.ts";
import { saeArtifact } from "../../src/sae/artifact.ts";
import { checkSaeFitsModel, detectSaeFamily, loadSae } from "../../src/sae/load.ts";
import { decode, encode, newRowScale, type Sae } from "../../src/sae/sae.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/sae");

interface Case {
  name: string;
  dir: string;
  options: { normScalingFactor?: number };
  info: Record<string, unknown> & { point: string | null };
  inputs: number[][];
  acts: number[][];
  recon: number[][];
}
const expected = JSON.parse(readFileSync(join(FIXTURES, "expected.json"), "utf8")) as { tolerance: { abs: number; rel: number }; cases: Case[] };
const { abs, rel } = expected.tolerance;

function run(sae: Sae, x: number[]) {
  const acts = new Float32Array(sae.info.dSae);
  const recon = new Float32Array(sae.info.dIn);
  const row = newRowScale();
  encode(sae, x, acts, new Float32Array(sae.info.dIn), row);
  decode(sae, acts, recon, row);
  return { acts, recon };
}

function expectClose(actual: Float32Array, want: number[], what: string) {
  expect(actual.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const tol = abs + rel * Math.abs(want[i]!);
    if (!(Math.abs(actual[i]! - want[i]!) <= tol)) throw new Error(`${what}[${i}]: got ${actual[i]}, numpy says ${want[i]} (tolerance ${tol})`);
  }
}

describe("loadSae against numpy", () => {
  test("the fixtures cover every family, architecture, dtype and normalization", () => {
    const seen = (key: string) => new Set(expected.cases.map((c) => JSON.stringify(key === "normalization" ? (c.info.normalization as { kind: string }).kind : c.info[key])));
    expect(seen("family")).toEqual(new Set(['"saelens"', '"sparsify"', '"gemma-scope"']));
    expect(seen("architecture")).toEqual(new Set(['"relu"', '"jumprelu"', '"topk"', '"gated"']));
    expect(seen("dtype")).toEqual(new Set(['"float32"', '"float16"', '"bfloat16"']));
    expect(seen("normalization")).toEqual(new Set(['"none"', '"constant_norm_rescale"', '"layer_norm"', '"scale"']));
  });

  for (const c of expected.cases) {
    test(`${c.name}: info, acts and recon`, () => {
      const sae = loadSae(join(FIXTURES, c.dir), c.options);
      const { point, ...rest } = c.info;
      expect({ ...sae.info, point: sae.info.point && pointName(sae.info.point), warnings: undefined }).toEqual({ ...rest, point, warnings: undefined } as never);
      c.inputs.forEach((x, r) => {
        const out = run(sae, x);
        expectClose(out.acts, c.acts[r]!, `${c.name} row ${r} acts`);
        expectClose(out.recon, c.recon[r]!, `${c.name} row ${r} recon`);
      });
    });
  }
});

describe("loadSae details", () => {
  test("families are detected from the files present", () => {
    expect(detectSaeFamily(join(FIXTURES, "saelens-v6-jumprelu-128x512"))).toBe("saelens");
    expect(detectSaeFamily(join(FIXTURES, "sparsify-bf16/layers.3"))).toBe("sparsify");
    expect(detectSaeFamily(join(FIXTURES, "gemma-scope-2b-pt-res/layer_3/width_1k/average_l0_9"))).toBe("gemma-scope");
    expect(detectSaeFamily(join(FIXTURES, "sparsify-bf16"))).toBeNull();
  });

  test("a sparsify run directory names its hookpoints", () => {
    expect(() => loadSae(join(FIXTURES, "sparsify-bf16"))).toThrow("SAEs in subdirectories (one per hookpoint in a sparsify run); choose one: layers.3");
  });

  test("a weights file path loads its directory", () => {
    const sae = loadSae(join(FIXTURES, "gemma-scope-2b-pt-res/layer_3/width_1k/average_l0_9/params.npz"));
    expect(sae.info.family).toBe("gemma-scope");
  });

  test("expected_average_only_in without a factor runs unscaled, as SAELens's load_from_disk, and says so", () => {
    const sae = loadSae(join(FIXTURES, "saelens-v6-jumprelu-f32-expavg"));
    expect(sae.info.normalization).toEqual({ kind: "none" });
    expect(sae.info.warnings?.[0]).toContain("expected_average_only_in but no scaling factor was given");
    expect(() => loadSae(join(FIXTURES, "saelens-v6-jumprelu-f32-expavg"), { normScalingFactor: -1 })).toThrow("normScalingFactor must be a finite number > 0, got -1");
  });

  test("a point is taken when the file names none, and refused when it contradicts the file", () => {
    const real = join(FIXTURES, "saelens-v6-jumprelu-128x512");
    expect(loadSae(real).info.point).toBeNull();
    expect(loadSae(real, { point: "resid_post.2" }).info.point).toEqual({ site: "resid_post", layer: 2 });
    const topk = join(FIXTURES, "saelens-v6-topk-f16-layernorm"); // blocks.1.hook_resid_pre
    expect(loadSae(topk, { point: "resid_post.0" }).info.point).toEqual({ site: "resid_pre", layer: 1 });
    expect(() => loadSae(topk, { point: "resid_post.1" })).toThrow("the files say this SAE reads resid_pre.1 (hook blocks.1.hook_resid_pre), but the point given is resid_post.1");
    expect(() => loadSae(real, { point: "layer 3" })).toThrow('point: cannot parse hook point "layer 3"');
  });

  test("checkSaeFitsModel names both widths, and the layer when the model lacks it", () => {
    const sae = loadSae(join(FIXTURES, "saelens-v6-jumprelu-128x512"), { point: "resid_post.2" });
    expect(() => checkSaeFitsModel(sae, { dModel: 64, nLayers: 5, name: "stories260K" }, "refusal")).toThrow(
      'SAE "refusal" has d_in 128, but model "stories260K" has width (dModel) 64',
    );
    expect(() => checkSaeFitsModel(sae, { dModel: 128, nLayers: 2 })).toThrow("the SAE reads resid_post.2, but the model has 2 layers (0..1)");
    expect(() => checkSaeFitsModel(sae, { dModel: 128, nLayers: 3 })).not.toThrow();
    try {
      checkSaeFitsModel(sae, { dModel: 64, nLayers: 5 });
    } catch (e) {
      expect((e as { code: string }).code).toBe("INVALID_OPTIONS");
    }
  });

  test("the sae artifact kind loads a directory once, naming the artifact (not the path) in errors", async () => {
    const artifacts = createArtifacts()
      .register("real", saeArtifact, { path: join(FIXTURES, "saelens-v6-jumprelu-128x512") })
      .register("missing", saeArtifact, { path: join(FIXTURES, "no-such-sae") });
    const a = await artifacts.load(saeArtifact, "real");
    expect(await artifacts.load(saeArtifact, "real")).toBe(a);
    expect(a.info.dSae).toBe(512);
    const err = await artifacts.load(saeArtifact, "missing").catch((e) => e);
    expect(err.code).toBe("INVALID_ARTIFACT");
    expect(err.message).toBe('SAE "missing": no such file or directory');
    expect(err.message).not.toContain(FIXTURES);
  });
});
