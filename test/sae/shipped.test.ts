import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadTestModel } from "../../src/testing/index.ts";
import { collectResiduals, generateCorpus } from "../../src/sae/collect.ts";
import type { Sae } from "../../src/sae/sae.ts";
import { loadSae } from "../../src/sae/load.ts";
import { evaluateSae } from "../../src/sae/evaluate.ts";

const DIR = join(import.meta.dir, "../../models/sae/stories260K-resid_post.2-topk");

/** The shipped SAE through the SAELens loader, as a user opens it, and its cfg as written. */
async function readShipped(): Promise<{ cfg: Record<string, any>; sae: Sae }> {
  const cfg = JSON.parse(readFileSync(join(DIR, "cfg.json"), "utf8"));
  const sae = await loadSae(DIR);
  expect(sae.info).toMatchObject({ family: "saelens", architecture: "topk", k: 8, dIn: 64, dSae: 512, point: { site: "resid_post", layer: 2 } });
  return { cfg, sae };
}

describe("the shipped stories260K SAE", () => {
  test("is what its README says, and reconstructs residuals of stories it never saw", async () => {
    const { cfg, sae } = await readShipped();
    expect(cfg).toMatchObject({ architecture: "topk", k: 8, d_in: 64, d_sae: 512, normalize_activations: "none", metadata: { hook_name: "blocks.2.hook_resid_post" } });
    expect(cfg.metadata.steerkit_training).toMatchObject({ seed: 0, steps: 4000, batch: 1024, dead_latents: 0 });
    expect(readFileSync(join(DIR, "README.md"), "utf8")).toContain(`| ${cfg.metadata.steerkit_training.fvu.toFixed(4)} | 8 | 0 / 512 |`);
    // Fresh stories (seeds far from the training corpus's 0..799), on the reference backend.
    const model = await loadTestModel();
    const texts = await generateCorpus(model, { n: 4, seed: 100_000, maxTokens: 96 });
    const rows = await collectResiduals(model, texts, "resid_post.2");
    const ev = evaluateSae(sae, rows.data);
    expect(ev.l0).toBe(8);
    expect(ev.fvu).toBeLessThan(0.1);
  });
});
