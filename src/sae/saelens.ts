/**
 * SAELens directories: `cfg.json` + `sae_weights.safetensors` (+ `sparsity.safetensors`, unused here).
 *
 * Checked against SAELens's public source (decoderesearch/SAELens, formerly jbloomAus/SAELens):
 * - writer: `SAE.save_model` / `TrainingSAE.save_inference_model` (`sae_lens/saes/sae.py`): the state
 *   dict as-is (`W_enc [d_in, d_sae]`, `W_dec [d_sae, d_in]`, `b_enc`, `b_dec`, and `threshold` for
 *   jumprelu, `b_gate`/`r_mag`/`b_mag` for gated) and `cfg.to_dict()` (`d_in`, `d_sae`, `dtype`,
 *   `apply_b_dec_to_input`, `normalize_activations`, `architecture`, `metadata.hook_name`, `k` and
 *   `rescale_acts_by_decoder_norm` for topk).
 * - configs before 6.0 (no `sae_lens_version`, or < 6): `handle_pre_6_0_config` in
 *   `sae_lens/loading/pretrained_sae_loaders.py`: `hook_point` -> hook name, `activation_fn_str` ->
 *   activation, `architecture` defaults to "standard", `activation_fn` "topk" with
 *   `activation_fn_kwargs.k` makes a topk SAE, a boolean `normalize_activations` means
 *   "expected_average_only_in", `apply_b_dec_to_input` defaults to true.
 * - `read_sae_components_from_disk` (same file): a `scaling_factor` tensor of all ones is dropped;
 *   otherwise it is the finetuning scaling factor, which `apply_finetuning_scaling_factor` multiplies
 *   into the activations before decoding: folded here into the decoder rows (exact for acts and recon).
 * - normalization (`SAE._setup_activation_normalization`): `constant_norm_rescale` and `layer_norm` run
 *   at inference (see `SaeNormalization` in sae.ts); `expected_average_only_in` does nothing at
 *   inference: SAELens's trainer folds its factor into the weights before the final save, and
 *   `from_pretrained` folds a factor from its release list (`get_norm_scaling_factor`). With
 *   `normScalingFactor` we apply it as `fold_activation_norm_scaling_factor` would; without, we do what
 *   `load_from_disk` does (nothing) and say so in `info.warnings`.
 * - topk with `rescale_acts_by_decoder_norm` (`sae_lens/saes/topk_sae.py`): pre-activations are scaled by
 *   ‖W_dec[i]‖ and activations divided by it before decoding; `_fold_norm_topk` folds this into
 *   `W_enc`, `b_enc`, `W_dec` exactly, and so do we.
 * - jumprelu (`jumprelu_sae.py`): relu(pre)·[pre > relu(threshold)]; older training checkpoints store
 *   `log_threshold` (`process_state_dict_for_loading`), exponentiated here.
 */
import { join } from "node:path";
import type { Sae, SaeArchitecture, SaeInfo, SaeNormalization } from "./sae.ts";
import { positiveInt, readJsonObject, rowNorms, saeFail, safetensorsSource, transpose } from "./files.ts";
import { pointFromHookName } from "./hook-names.ts";

export const SAELENS_CONFIG = "cfg.json";
export const SAELENS_WEIGHTS = "sae_weights.safetensors";

const ARCHITECTURES: Record<string, SaeArchitecture> = { standard: "relu", relu: "relu", jumprelu: "jumprelu", topk: "topk", gated: "gated" };
const NORMALIZATIONS = ["none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"];

export interface SaelensOptions {
  /** SAELens's `norm_scaling_factor` for an `expected_average_only_in` SAE (from its release list). */
  readonly normScalingFactor?: number;
}

/** The config fields we use, after SAELens's pre-6.0 defaulting. */
interface SaelensConfig {
  readonly architecture: string;
  readonly dIn: number;
  readonly dSae: number;
  readonly k: number | null;
  readonly applyBDecToInput: boolean;
  readonly normalize: string;
  readonly hookName: string | null;
  readonly headIndex: unknown;
  readonly rescaleByDecoderNorm: boolean;
  readonly finetuningScalingFactor: boolean;
  readonly normalizeDecoder: boolean;
}

export function loadSaelens(dir: string, label: string, options: SaelensOptions = {}): Sae {
  const raw = readJsonObject(join(dir, SAELENS_CONFIG), SAELENS_CONFIG, label);
  const cfg = parseConfig(raw, label);
  const src = safetensorsSource(join(dir, SAELENS_WEIGHTS), SAELENS_WEIGHTS, label);
  const { dIn, dSae } = cfg;
  const architecture = ARCHITECTURES[cfg.architecture];
  if (!architecture) {
    return saeFail(label, `${SAELENS_CONFIG}: architecture "${cfg.architecture}" is not supported (supported: ${Object.keys(ARCHITECTURES).join(", ")})`);
  }
  if (cfg.normalizeDecoder && architecture === "gated") saeFail(label, `${SAELENS_CONFIG}: gated SAEs with normalize_decoder are not supported`);
  const need = (name: string, shape: readonly number[]) => {
    if (!src.has(name)) saeFail(label, `${SAELENS_WEIGHTS}: missing tensor "${name}" (a ${cfg.architecture} SAE needs it)`);
    return src.read(name, shape);
  };
  const wEnc = need("W_enc", [dIn, dSae]);
  const decoder = need("W_dec", [dSae, dIn]);
  const decoderBias = need("b_dec", [dIn]);
  let encoderBias = architecture === "gated" ? new Float32Array(dSae) : need("b_enc", [dSae]);
  let encoder = transpose(wEnc, dIn, dSae);
  let threshold: Float32Array | null = null;
  if (architecture === "jumprelu") {
    if (src.has("threshold") || !src.has("log_threshold")) threshold = need("threshold", [dSae]);
    else threshold = need("log_threshold", [dSae]).map(Math.exp);
  }
  const gated = architecture === "gated" ? { bGate: need("b_gate", [dSae]), rMag: need("r_mag", [dSae]), bMag: need("b_mag", [dSae]) } : null;

  if (src.has("scaling_factor")) {
    const s = need("scaling_factor", [dSae]);
    if (s.some((v) => v !== 1)) {
      if (!cfg.finetuningScalingFactor) saeFail(label, `${SAELENS_WEIGHTS}: has a scaling_factor tensor but ${SAELENS_CONFIG} says finetuning_scaling_factor is false`);
      for (let i = 0; i < dSae; i++) for (let j = 0; j < dIn; j++) decoder[i * dIn + j] = decoder[i * dIn + j]! * s[i]!;
    }
  }
  if (architecture === "topk" && cfg.rescaleByDecoderNorm) {
    // _fold_norm_topk: b_enc *= n, W_enc[:, i] *= n, W_dec[i] /= n (n = ‖W_dec[i]‖ clamped at 1e-8).
    const n = rowNorms(decoder, dSae, dIn);
    encoderBias = encoderBias.map((b, i) => b * n[i]!);
    encoder = encoder.map((w, idx) => w * n[Math.floor(idx / dIn)]!);
    for (let i = 0; i < dSae; i++) for (let j = 0; j < dIn; j++) decoder[i * dIn + j] = decoder[i * dIn + j]! / n[i]!;
  }

  const warnings: string[] = [];
  let normalization: SaeNormalization = { kind: "none" };
  if (cfg.normalize === "constant_norm_rescale") normalization = { kind: "constant_norm_rescale" };
  else if (cfg.normalize === "layer_norm") normalization = { kind: "layer_norm", eps: 1e-5 };
  else if (cfg.normalize === "expected_average_only_in") {
    const f = options.normScalingFactor;
    if (f !== undefined) {
      if (!(Number.isFinite(f) && f > 0)) saeFail(label, `normScalingFactor must be a finite number > 0, got ${f}`);
      normalization = { kind: "scale", factor: f };
    } else {
      warnings.push(
        "normalize_activations is expected_average_only_in but no scaling factor was given: inputs are used unscaled, as SAELens's load_from_disk does; pass the release's norm_scaling_factor to scale them",
      );
    }
  }
  const hookName = cfg.hookName;
  const point = cfg.headIndex === null || cfg.headIndex === undefined ? pointFromHookName(hookName) : null;
  const info: SaeInfo = {
    family: "saelens",
    architecture,
    dIn,
    dSae,
    k: architecture === "topk" ? cfg.k : null,
    hookName,
    point,
    dtype: src.dtype("W_enc"),
    applyBDecToInput: cfg.applyBDecToInput,
    normalization,
    warnings,
  };
  if (architecture === "topk" && (cfg.k === null || cfg.k > dSae)) saeFail(label, `${SAELENS_CONFIG}: a topk SAE needs k in 1..${dSae}, got ${cfg.k}`);
  return { info, encoder, encoderBias, decoder, decoderBias, threshold, gated };
}

function parseConfig(raw: Record<string, unknown>, label: string): SaelensConfig {
  const file = SAELENS_CONFIG;
  const metadata = (typeof raw.metadata === "object" && raw.metadata !== null ? raw.metadata : {}) as Record<string, unknown>;
  const version = (raw.sae_lens_version ?? metadata.sae_lens_version) as unknown;
  const major = typeof version === "string" ? Number.parseInt(version, 10) : NaN;
  const current = Number.isInteger(major) && major >= 6;
  const dIn = positiveInt(raw.d_in, "d_in", file, label);
  const dSae = positiveInt(raw.d_sae, "d_sae", file, label);
  const bool = (v: unknown, field: string, dflt: boolean) => {
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") saeFail(label, `${file}: ${field} must be true or false, got ${JSON.stringify(v)}`);
    return v as boolean;
  };
  const str = (v: unknown, field: string): string | null => {
    if (v === undefined || v === null) return null;
    if (typeof v !== "string") saeFail(label, `${file}: ${field} must be a string, got ${JSON.stringify(v)}`);
    return v as string;
  };
  const kValue = (v: unknown, field: string): number | null => (v === undefined || v === null ? null : positiveInt(v, field, file, label));

  let architecture: string;
  let k: number | null;
  let normalize: unknown = raw.normalize_activations;
  let hookName: string | null;
  if (current) {
    architecture = str(raw.architecture, "architecture") ?? saeFail(label, `${file}: has no architecture`);
    k = kValue(raw.k, "k");
    hookName = str(metadata.hook_name, "metadata.hook_name") ?? str(raw.hook_name, "hook_name");
  } else {
    // handle_pre_6_0_config
    architecture = str(raw.architecture, "architecture") ?? "standard";
    const activation = str(raw.activation_fn ?? raw.activation_fn_str, "activation_fn_str") ?? "relu";
    const kwargs = (typeof raw.activation_fn_kwargs === "object" && raw.activation_fn_kwargs !== null ? raw.activation_fn_kwargs : {}) as Record<string, unknown>;
    k = kValue(raw.k, "k") ?? kValue(kwargs.k, "activation_fn_kwargs.k");
    if (activation === "topk" && k !== null) architecture = "topk";
    else if (architecture === "standard" && activation !== "relu") {
      saeFail(label, `${file}: activation_fn_str "${activation}" is not supported for a standard SAE (relu, or topk with activation_fn_kwargs.k)`);
    }
    if (typeof normalize === "boolean") normalize = normalize ? "expected_average_only_in" : "none";
    hookName = str(metadata.hook_name, "metadata.hook_name") ?? str(raw.hook_name, "hook_name") ?? str(raw.hook_point, "hook_point");
  }
  if (normalize === undefined || normalize === null) normalize = "none";
  if (typeof normalize !== "string" || !NORMALIZATIONS.includes(normalize)) {
    saeFail(label, `${file}: normalize_activations ${JSON.stringify(normalize)} is not one of ${NORMALIZATIONS.join(", ")}`);
  }
  return {
    architecture,
    dIn,
    dSae,
    k,
    applyBDecToInput: bool(raw.apply_b_dec_to_input, "apply_b_dec_to_input", true),
    normalize: normalize as string,
    hookName,
    headIndex: metadata.hook_head_index ?? raw.hook_head_index ?? raw.hook_point_head_index ?? null,
    rescaleByDecoderNorm: bool(raw.rescale_acts_by_decoder_norm, "rescale_acts_by_decoder_norm", false),
    finetuningScalingFactor: bool(raw.finetuning_scaling_factor, "finetuning_scaling_factor", false),
    normalizeDecoder: bool(raw.normalize_decoder, "normalize_decoder", false),
  };
}
