/**
 * A sparse autoencoder in memory, whatever tool wrote it, and its math.
 *
 * Every loader (SAELens, EleutherAI sparsify, Gemma Scope, Steerkit's trainer) produces this one
 * shape, converted to float32 and to one layout, so `sae-clamp`, the CLI and the trainer never ask
 * which tool wrote a file:
 * - `encoder` is latent-major `[dSae, dIn]` (SAELens stores `W_enc` as `[d_in, d_sae]`; loaders
 *   transpose it) so the sparse path reads one contiguous row per chosen latent: O(k·d) per token.
 * - `decoder` is `[dSae, dIn]`, as every tool stores `W_dec`.
 *
 * The forward pass, per residual row x (SAELens's order; `normalization` is applied first and
 * undone on the reconstruction):
 *   x₁ = normalize(x)                       (see SaeNormalization)
 *   x₂ = applyBDecToInput ? x₁ − b_dec : x₁
 *   pre = encoder·x₂ + b_enc
 *   f = activation(pre)                     (relu | jumprelu: relu(pre)·[pre > θ] | topk: relu of the k largest | gated)
 *   x̂ = denormalize(decoderᵀ·f + b_dec)
 *
 * The functions here are the dense reference: simple loops and float64 sums, for loading checks,
 * the CLI and tests (not for a hot path). Fast paths (one latent at a time in `sae-clamp`) must
 * agree with them.
 */
import type { HookPoint } from "../core/sites.ts";

export type SaeArchitecture = "relu" | "jumprelu" | "topk" | "gated";

/** Which tool's layout and conventions a file followed. */
export type SaeFamily = "saelens" | "sparsify" | "gemma-scope";

/**
 * Input normalization, as SAELens names it:
 * - `none`;
 * - `scale`: multiply the input by `factor` and divide the reconstruction by it (SAELens's
 *   `expected_average_only_in` with its stored scaling factor, folded or not);
 * - `constant_norm_rescale`: scale each input to norm √dIn, undo on the reconstruction;
 * - `layer_norm`: SAELens's `run_time_activation_ln_in/out` (`sae_lens/saes/sae.py`): subtract the
 *   row mean μ, divide by (σ + eps) where σ is the *unbiased* std of the centred row (torch's
 *   `x.std()`, n − 1) and eps 1e-5; the reconstruction is undone with σ·x̂ + μ (no eps there).
 */
export type SaeNormalization =
  | { readonly kind: "none" }
  | { readonly kind: "scale"; readonly factor: number }
  | { readonly kind: "constant_norm_rescale" }
  | { readonly kind: "layer_norm"; readonly eps: number };

export interface SaeInfo {
  readonly family: SaeFamily;
  readonly architecture: SaeArchitecture;
  readonly dIn: number;
  readonly dSae: number;
  /** Active latents per token for TopK SAEs; null otherwise. */
  readonly k: number | null;
  /** The hook name as the file gives it (`blocks.8.hook_resid_post`, `layers.8`), or null when it gives none. */
  readonly hookName: string | null;
  /** The Steerkit point the hook name maps to, or null when the file names none or it is ambiguous (the user gives it). */
  readonly point: HookPoint | null;
  /** The dtype the weights were stored in (they are float32 in memory). */
  readonly dtype: "float32" | "float16" | "bfloat16";
  readonly applyBDecToInput: boolean;
  readonly normalization: SaeNormalization;
  /**
   * What a loader could not settle from the files and the user should know (e.g. SAELens's
   * `expected_average_only_in` without its scaling factor); empty or absent when there is nothing.
   */
  readonly warnings?: readonly string[];
}

/** The weights of a gated SAE (Rajamanoharan et al. 2024; SAELens's `gated`). */
export interface GatedWeights {
  /** `[dSae]`: the gate path's bias (`b_gate`). */
  readonly bGate: Float32Array;
  /** `[dSae]`: `r_mag`, the magnitude path scales the shared encoder rows by exp(r_mag). */
  readonly rMag: Float32Array;
  /** `[dSae]`: the magnitude path's bias (`b_mag`). */
  readonly bMag: Float32Array;
}

export interface Sae {
  readonly info: SaeInfo;
  /** `[dSae, dIn]`, latent-major. */
  readonly encoder: Float32Array;
  /** `[dSae]`. Unused by gated SAEs (they use `gated.bGate` and `gated.bMag`). */
  readonly encoderBias: Float32Array;
  /** `[dSae, dIn]`. */
  readonly decoder: Float32Array;
  /** `[dIn]`. */
  readonly decoderBias: Float32Array;
  /** `[dSae]` JumpReLU thresholds, else null. */
  readonly threshold: Float32Array | null;
  readonly gated: GatedWeights | null;
}

/**
 * How one row was normalized, so its reconstruction (or a decoder row added to the residual) can
 * be put back in residual units: residual = scale · normalized + shift (shift is a scalar added to
 * every component: the layer-norm mean). This is the *undo* side; for `layer_norm` the input side
 * divides by σ + eps while the undo multiplies by σ, exactly as SAELens does.
 */
export interface RowScale {
  /** Residual units per normalized unit: how a reconstruction (or a decoder row) is put back. */
  scale: number;
  /** Added to every component when putting back (the layer-norm mean). */
  shift: number;
  /** What the centred input was divided by (`scale`, except layer_norm: std + eps, as SAELens does). */
  divisor: number;
}

export function newRowScale(): RowScale {
  return { scale: 1, shift: 0, divisor: 1 };
}

/**
 * How residual row `x[off .. off + dIn)` is normalized: fills `row` (normalized = (x − shift) /
 * divisor; residual = scale · normalized + shift). The one implementation the dense reference and
 * the sparse latent reader share.
 */
export function normalizeRow(sae: Sae, x: ArrayLike<number>, off: number, row: RowScale): void {
  const { dIn, normalization: norm } = sae.info;
  let scale = 1;
  let shift = 0;
  if (norm.kind === "scale") scale = 1 / norm.factor;
  else if (norm.kind === "constant_norm_rescale") {
    let ss = 0;
    for (let i = 0; i < dIn; i++) ss += x[off + i]! * x[off + i]!;
    const n = Math.sqrt(ss);
    scale = n > 0 ? n / Math.sqrt(dIn) : 1;
  } else if (norm.kind === "layer_norm") {
    let mean = 0;
    for (let i = 0; i < dIn; i++) mean += x[off + i]!;
    mean /= dIn;
    let v = 0;
    for (let i = 0; i < dIn; i++) v += (x[off + i]! - mean) ** 2;
    // torch's x.std() is unbiased (n - 1); SAELens divides by std + eps and undoes with std alone.
    scale = dIn > 1 ? Math.sqrt(v / (dIn - 1)) : 0;
    shift = mean;
  }
  row.scale = scale;
  row.shift = shift;
  row.divisor = norm.kind === "layer_norm" ? scale + norm.eps : scale;
}

/**
 * Write the encoder's input for residual row `x` into `out` (`[dIn]`): normalized, then b_dec
 * subtracted when the SAE says so. Fills `row` with how to undo the normalization.
 */
export function encoderInput(sae: Sae, x: ArrayLike<number>, out: Float32Array, row: RowScale): void {
  const { dIn, applyBDecToInput } = sae.info;
  normalizeRow(sae, x, 0, row);
  const { shift, divisor } = row;
  const b = sae.decoderBias;
  for (let i = 0; i < dIn; i++) out[i] = (x[i]! - shift) / divisor - (applyBDecToInput ? b[i]! : 0);
}

/** The pre-activation of latent `i` for an encoder input (from {@link encoderInput}). */
export function preActivation(sae: Sae, input: Float32Array, i: number): number {
  const d = sae.info.dIn;
  const w = sae.encoder;
  let s = 0;
  for (let j = 0, o = i * d; j < d; j++) s += w[o + j]! * input[j]!;
  return s + sae.encoderBias[i]!;
}

/**
 * The activation of latent `i` alone, for architectures where a latent does not depend on the
 * others (relu, jumprelu, gated): O(dIn). TopK latents depend on every other latent's
 * pre-activation; use {@link encode}.
 */
export function latentActivation(sae: Sae, input: Float32Array, i: number): number {
  const { architecture } = sae.info;
  if (architecture === "topk") throw new RangeError("a TopK latent depends on every other latent: encode the whole row");
  if (architecture === "gated") {
    const g = sae.gated!;
    const d = sae.info.dIn;
    let s = 0;
    for (let j = 0, o = i * d; j < d; j++) s += sae.encoder[o + j]! * input[j]!;
    if (s + g.bGate[i]! <= 0) return 0;
    const mag = s * Math.exp(g.rMag[i]!) + g.bMag[i]!;
    return mag > 0 ? mag : 0;
  }
  const pre = preActivation(sae, input, i);
  // SAELens (`jumprelu_sae.py`): relu(pre) · [pre > relu(θ)]; Gemma Scope: relu(pre) · [pre > θ]. Both are
  // pre where pre > max(θ, 0), else 0 (a negative θ must not let a negative pre through).
  if (architecture === "jumprelu") return pre > sae.threshold![i]! && pre > 0 ? pre : 0;
  return pre > 0 ? pre : 0;
}

/** Dense encode of residual row `x` into `acts` (`[dSae]`). `scratch` is `[dIn]`. */
export function encode(sae: Sae, x: ArrayLike<number>, acts: Float32Array, scratch: Float32Array, row: RowScale = newRowScale()): void {
  const { dSae, architecture, k } = sae.info;
  encoderInput(sae, x, scratch, row);
  if (architecture !== "topk") {
    for (let i = 0; i < dSae; i++) acts[i] = latentActivation(sae, scratch, i);
    return;
  }
  for (let i = 0; i < dSae; i++) acts[i] = preActivation(sae, scratch, i);
  keepTopK(acts, k!);
}

/** Zero all but the k largest values (ties: lower index first), then ReLU. */
export function keepTopK(values: Float32Array, k: number): void {
  const n = values.length;
  if (k >= n) {
    for (let i = 0; i < n; i++) if (!(values[i]! > 0)) values[i] = 0;
    return;
  }
  // Threshold = the k-th largest value; count how many equal values may stay.
  const sorted = Float32Array.from(values).sort();
  const kth = sorted[n - k]!;
  let greater = 0;
  for (let i = 0; i < n; i++) if (values[i]! > kth) greater++;
  let ties = k - greater;
  for (let i = 0; i < n; i++) {
    const v = values[i]!;
    if (v > kth) continue;
    if (v === kth && ties > 0) {
      ties--;
      continue;
    }
    values[i] = 0;
  }
  for (let i = 0; i < n; i++) if (!(values[i]! > 0)) values[i] = 0;
}

/** Reconstruction of a row from its activations, in residual units (`row` from the encode). */
export function decode(sae: Sae, acts: Float32Array, out: Float32Array, row: RowScale = newRowScale()): void {
  const { dIn, dSae } = sae.info;
  const w = sae.decoder;
  const b = sae.decoderBias;
  const acc = new Float64Array(dIn);
  for (let i = 0; i < dSae; i++) {
    const a = acts[i]!;
    if (a === 0) continue;
    for (let j = 0, o = i * dIn; j < dIn; j++) acc[j] = acc[j]! + a * w[o + j]!;
  }
  for (let j = 0; j < dIn; j++) out[j] = (acc[j]! + b[j]!) * row.scale + row.shift;
}
