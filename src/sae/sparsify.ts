/**
 * EleutherAI sparsify directories: `<hookpoint>/cfg.json` + `<hookpoint>/sae.safetensors`.
 *
 * Checked against sparsify's public source (EleutherAI/sparsify, `sparsify/sparse_coder.py`):
 * - `save_to_disk` writes `safetensors.torch.save_model(self)` (state dict `encoder.weight [n, d_in]`,
 *   `encoder.bias [n]`, `W_dec [n, d_in]`, `b_dec [d_in]`, plus `W_skip [d_in, d_in]` with a skip
 *   connection) and `cfg.json` = the `SparseCoderConfig` fields + `d_in`; `load_from_disk` takes the dtype
 *   of the first tensor and `num_latents or d_in * expansion_factor` latents.
 * - `encode`: `x - b_dec` (unless `transcode`), then `fused_encoder` (`sparsify/fused_encoder.py`):
 *   relu(encoder(x)) and the top k. `decode`: `top_acts @ W_dec + b_dec`. Dense, that is TopK over
 *   relu'd pre-activations with b_dec subtracted: our `topk` with `applyBDecToInput`.
 * - The directory name is the hookpoint, an HF module name (`layers.8`).
 * Transcoders, skip connections and the `groupmax` activation are refused: none is an SAE over one point.
 * (SAELens's `sparsify_disk_loader` transposes `W_dec` and ties `apply_b_dec_to_input` to
 * `normalize_decoder`; sparsify's own `encode`/`decode` above are what we follow.)
 */
import { basename, join } from "node:path";
import type { Sae } from "./sae.ts";
import { positiveInt, readJsonObject, saeFail, safetensorsSource } from "./files.ts";
import { pointFromHookName } from "./hook-names.ts";

export const SPARSIFY_CONFIG = "cfg.json";
export const SPARSIFY_WEIGHTS = "sae.safetensors";

export function loadSparsify(dir: string, label: string): Sae {
  const cfg = readJsonObject(join(dir, SPARSIFY_CONFIG), SPARSIFY_CONFIG, label);
  const file = SPARSIFY_CONFIG;
  const dIn = positiveInt(cfg.d_in, "d_in", file, label);
  const numLatents = cfg.num_latents === undefined || cfg.num_latents === 0 ? null : positiveInt(cfg.num_latents, "num_latents", file, label);
  const dSae = numLatents ?? dIn * positiveInt(cfg.expansion_factor ?? 32, "expansion_factor", file, label);
  const k = positiveInt(cfg.k ?? 32, "k", file, label);
  if (k > dSae) saeFail(label, `${file}: k ${k} exceeds the ${dSae} latents`);
  const activation = cfg.activation ?? "topk";
  if (activation !== "topk") saeFail(label, `${file}: activation ${JSON.stringify(activation)} is not supported (only topk)`);
  if (cfg.transcode === true) saeFail(label, `${file}: this is a transcoder (transcode: true), not an SAE; transcoders are not supported`);
  if (cfg.skip_connection === true) saeFail(label, `${file}: skip connections (skip_connection: true) are not supported`);

  const src = safetensorsSource(join(dir, SPARSIFY_WEIGHTS), SPARSIFY_WEIGHTS, label);
  const need = (name: string, shape: readonly number[]) => {
    if (!src.has(name)) saeFail(label, `${SPARSIFY_WEIGHTS}: missing tensor "${name}"`);
    return src.read(name, shape);
  };
  const hookName = basename(dir);
  return {
    info: {
      family: "sparsify",
      architecture: "topk",
      dIn,
      dSae,
      k,
      hookName,
      point: pointFromHookName(hookName),
      dtype: src.dtype("encoder.weight"),
      applyBDecToInput: true,
      normalization: { kind: "none" },
      warnings: [],
    },
    encoder: need("encoder.weight", [dSae, dIn]), // nn.Linear weight: already latent-major
    encoderBias: need("encoder.bias", [dSae]),
    decoder: need("W_dec", [dSae, dIn]),
    decoderBias: need("b_dec", [dIn]),
    threshold: null,
    gated: null,
  };
}
