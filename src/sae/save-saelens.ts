/**
 * Write an in-memory SAE as SAELens 6.x writes one (`SAE.save_model` / `save_inference_model`),
 * so SAELens, and anything that reads its directories, loads what Steerkit trains:
 *
 *   <dir>/cfg.json                  json.dump of the inference config (one line, Python's ", " / ": " separators)
 *   <dir>/sae_weights.safetensors   W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in],
 *                                   + threshold [d_sae] (jumprelu) or b_gate, r_mag, b_mag (gated); all F32
 *   <dir>/sparsity.safetensors      optional: "sparsity" [d_sae], log10 of each latent's firing frequency
 *
 * Checked against the real SAELens 6.39 output in `test/fixtures/sae/saelens-v6-jumprelu-128x512/` (copied from shared/ with its provenance)
 * (test/sae/save-saelens.test.ts): the same cfg keys and value types, key order, tensor names,
 * dtypes and shapes. `W_enc` is stored input-major, so our latent-major encoder is transposed here.
 *
 * Architectures map to SAELens names: relu -> "standard", jumprelu, topk (+ `k`,
 * `rescale_acts_by_decoder_norm: false`: our TopK selects on raw pre-activations), gated.
 * Normalization: a `scale` factor is folded into the weights (as SAELens's
 * `fold_activation_norm_scaling_factor` does) and written as "none"; the others keep their names.
 *
 * `metadata` carries `hook_name` (TransformerLens `blocks.L.hook_resid_post`, from the SAE's point),
 * `sae_lens_version` / `sae_lens_training_version` set to the SAELens release whose layout this
 * matches, and whatever the caller adds (model name, training summary): SAELens keeps unknown
 * metadata keys.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { serializeSafetensors, type TensorToWrite } from "../formats/safetensors/write.ts";
import { toTransformerLens } from "../core/sites.ts";
import { checkSae } from "./artifact.ts";
import type { Sae } from "./sae.ts";

/** The SAELens release whose on-disk layout this writer reproduces. */
export const SAELENS_FORMAT_VERSION = "6.39.0";

export interface SaveSaelensOptions {
  /** Extra `metadata` entries (JSON values): `model_name`, `context_size`, a training summary, ... */
  readonly metadata?: Readonly<Record<string, unknown>>;
  /** `[dSae]` firing frequency of each latent (0..1): written as `sparsity.safetensors` (log10(freq + 1e-10)). */
  readonly firingFrequency?: Float32Array;
}

const ARCHITECTURE_NAMES = { relu: "standard", jumprelu: "jumprelu", topk: "topk", gated: "gated" } as const;

/** The `cfg.json` object SAELens would write for this SAE (key order as SAELens 6.39 wrote the fixture). */
export function saelensConfig(sae: Sae, options: SaveSaelensOptions = {}): Record<string, unknown> {
  const { info } = sae;
  const norm = info.normalization.kind === "scale" ? "none" : info.normalization.kind;
  const hookName = info.point ? toTransformerLens(info.point) : info.hookName;
  const metadata: Record<string, unknown> = {
    sae_lens_version: SAELENS_FORMAT_VERSION,
    sae_lens_training_version: SAELENS_FORMAT_VERSION,
    ...(hookName !== null ? { hook_name: hookName, hook_head_index: null } : {}),
    ...options.metadata,
  };
  const cfg: Record<string, unknown> = {
    dtype: "float32",
    normalize_activations: norm,
    device: "cpu",
    d_sae: info.dSae,
    metadata,
    d_in: info.dIn,
    reshape_activations: "none",
    apply_b_dec_to_input: info.applyBDecToInput,
  };
  if (info.architecture === "topk") {
    cfg.k = info.k;
    cfg.rescale_acts_by_decoder_norm = false;
  }
  cfg.architecture = ARCHITECTURE_NAMES[info.architecture];
  return cfg;
}

/** The tensors of `sae_weights.safetensors`, in SAELens's names and layouts. */
export function saelensTensors(sae: Sae): Record<string, TensorToWrite> {
  const { dIn, dSae, normalization } = sae.info;
  // A stored input scale is folded: W_enc·f, W_dec/f, b_dec/f give the same reconstruction on raw inputs.
  const f = normalization.kind === "scale" ? normalization.factor : 1;
  const wEnc = new Float32Array(dIn * dSae);
  for (let i = 0; i < dSae; i++) for (let j = 0; j < dIn; j++) wEnc[j * dSae + i] = sae.encoder[i * dIn + j]! * f;
  const scaled = (t: Float32Array) => (f === 1 ? t : t.map((x) => x / f));
  const f32 = (data: Float32Array, shape: number[]): TensorToWrite => ({ dtype: "F32", shape, data });
  const out: Record<string, TensorToWrite> = {
    W_enc: f32(wEnc, [dIn, dSae]),
    W_dec: f32(scaled(sae.decoder), [dSae, dIn]),
    b_dec: f32(scaled(sae.decoderBias), [dIn]),
  };
  if (sae.info.architecture === "gated") {
    const g = sae.gated!;
    out.b_gate = f32(g.bGate, [dSae]);
    out.r_mag = f32(g.rMag, [dSae]);
    out.b_mag = f32(g.bMag, [dSae]);
  } else {
    out.b_enc = f32(sae.encoderBias, [dSae]);
  }
  if (sae.info.architecture === "jumprelu") out.threshold = f32(sae.threshold!, [dSae]);
  return out;
}

/** Write `cfg.json`, `sae_weights.safetensors` (and `sparsity.safetensors` when frequencies are given) into `dir`. */
export function saveSaelens(dir: string, sae: Sae, options: SaveSaelensOptions = {}): void {
  checkSae(sae, dir);
  const freq = options.firingFrequency;
  if (freq !== undefined && freq.length !== sae.info.dSae) throw new RangeError(`firingFrequency has ${freq.length} values; the SAE has ${sae.info.dSae} latents`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "sae_weights.safetensors"), serializeSafetensors(saelensTensors(sae)));
  writeFileSync(join(dir, "cfg.json"), pythonJson(saelensConfig(sae, options)));
  if (freq !== undefined) {
    const log = freq.map((p) => Math.log10(p + 1e-10));
    writeFileSync(join(dir, "sparsity.safetensors"), serializeSafetensors({ sparsity: { dtype: "F32", shape: [freq.length], data: log } }));
  }
}

/** JSON as Python's `json.dump` writes it by default: `", "` and `": "` separators, one line, non-ASCII escaped. */
export function pythonJson(value: unknown): string {
  if (value === null || typeof value !== "object") {
    if (typeof value === "number" && !Number.isFinite(value)) throw new RangeError(`cannot write ${value} as JSON`);
    if (typeof value === "string") return asciiJsonString(value);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(pythonJson).join(", ")}]`;
  const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
  return `{${entries.map(([k, v]) => `${asciiJsonString(k)}: ${pythonJson(v)}`).join(", ")}}`;
}

function asciiJsonString(s: string): string {
  return JSON.stringify(s).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}
