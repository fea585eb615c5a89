import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadTestModel } from "../../src/testing/index.ts";
import { collectResiduals, generateCorpus } from "../../src/sae/collect.ts";
import type { Sae } from "../../src/sae/sae.ts";
import { evaluateSae } from "../../src/sae/train.ts";

const DIR = join(import.meta.dir, "../../models/sae/stories260K-resid_post.2-topk");

/** The shipped SAE read with a minimal safetensors parse (the loaders live elsewhere). */
function readShipped(): { cfg: Record<string, any>; sae: Sae } {
  const cfg = JSON.parse(readFileSync(join(DIR, "cfg.json"), "utf8"));
  const bytes = readFileSync(join(DIR, "sae_weights.safetensors"));
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString("utf8"));
  const t = (name: string) => {
    const [s, e] = header[name].data_offsets;
    expect(header[name].dtype).toBe("F32");
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + n + s, bytes.byteOffset + 8 + n + e));
  };
  const { d_in: dIn, d_sae: dSae } = cfg;
  const wEnc = t("W_enc");
  const encoder = new Float32Array(dSae * dIn);
  for (let j = 0; j < dIn; j++) for (let i = 0; i < dSae; i++) encoder[i * dIn + j] = wEnc[j * dSae + i]!;
  return {
    cfg,
    sae: {
      info: { family: "saelens", architecture: "topk", dIn, dSae, k: cfg.k, hookName: cfg.metadata.hook_name, point: { site: "resid_post", layer: 2 }, dtype: "float32", applyBDecToInput: cfg.apply_b_dec_to_input, normalization: { kind: "none" } },
      encoder, encoderBias: t("b_enc"), decoder: t("W_dec"), decoderBias: t("b_dec"), threshold: null, gated: null,
    },
  };
}

describe("the shipped stories260K SAE", () => {
  test("is what its README says, and reconstructs residuals of stories it never saw", async () => {
    const { cfg, sae } = readShipped();
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
