/**
 * Gemma Scope directories: `params.npz` (Gemma Scope, Gemma 2) or `params.safetensors` (Gemma Scope 2,
 * Gemma 3), with no config file: the shapes give d_in and d_sae, the path gives the layer and site.
 *
 * Checked against SAELens's public loaders for them (`sae_lens/loading/pretrained_sae_loaders.py`):
 * - `gemma_2_sae_huggingface_loader`: `np.load(params.npz)` with keys `W_enc [d_in, d_sae]`, `W_dec
 *   [d_sae, d_in]`, `b_enc`, `b_dec`, `threshold` (lowercase `w_` keys renamed to `W_`); architecture
 *   jumprelu, `apply_b_dec_to_input` false, no normalization. Embedding SAEs ("embedding" in the path)
 *   need their weights rescaled by √d_in and sit at `hook_embed`, which Steerkit has no point for: refused.
 * - `get_gemma_2_config_from_hf`: the layer is `layer_(\d+)` in the path; a `res` release is
 *   `blocks.L.hook_resid_post`, `mlp` is `hook_mlp_out`, `att` is `attn.hook_z`.
 * - `gemma_3_sae_huggingface_loader`: `params.safetensors` with `w_enc`, `w_dec`, `b_enc`, `b_dec`,
 *   `threshold`; folder names say `resid_post`, `attn_out`, `mlp_out` or `transcoder` (with
 *   `affine_skip_connection`): transcoders are refused.
 * The activation is Gemma Scope's own JumpReLU: relu(pre)·[pre > threshold], pre = x·W_enc + b_enc.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Sae } from "./sae.ts";
import { npzSource, saeFail, safetensorsSource, transpose, type TensorSource } from "./files.ts";
import { pointFromHookName } from "./hook-names.ts";

export const GEMMA_NPZ = "params.npz";
export const GEMMA_SAFETENSORS = "params.safetensors";

export function loadGemmaScope(dir: string, label: string): Sae {
  const npz = existsSync(join(dir, GEMMA_NPZ));
  const src: TensorSource = npz ? npzSource(join(dir, GEMMA_NPZ), GEMMA_NPZ, label) : safetensorsSource(join(dir, GEMMA_SAFETENSORS), GEMMA_SAFETENSORS, label);
  const file = src.file;
  // Only the release/layer/width/l0 part of the path says anything (not the user's own directories).
  const path = dir.replaceAll("\\", "/").split("/").slice(-4).join("/");
  if (/embedding/i.test(path)) saeFail(label, "Gemma Scope embedding SAEs (hook_embed, before Gemma's √d scaling) are not supported");
  if (/transcoder/i.test(path) || src.has("affine_skip_connection")) saeFail(label, "Gemma Scope transcoders are not supported (not an SAE over one point)");
  const key = (name: string) => {
    if (src.has(name)) return name;
    const lower = name.toLowerCase();
    if (src.has(lower)) return lower;
    return saeFail(label, `${file}: missing tensor "${name}"`);
  };
  const wEncKey = key("W_enc");
  const shape = src.shape(wEncKey)!;
  if (shape.length !== 2) saeFail(label, `${file}: "${wEncKey}" must be a matrix [d_in, d_sae], got shape [${shape.join(", ")}]`);
  const [dIn, dSae] = shape as [number, number];
  if (!(dIn > 0 && dSae > 0)) saeFail(label, `${file}: "${wEncKey}" has an empty shape [${shape.join(", ")}]`);
  const dtype = src.dtype(wEncKey);
  const encoder = transpose(src.read(wEncKey, [dIn, dSae]), dIn, dSae);
  const { hookName, point, warnings } = hookFromPath(path);
  return {
    info: { family: "gemma-scope", architecture: "jumprelu", dIn, dSae, k: null, hookName, point, dtype, applyBDecToInput: false, normalization: { kind: "none" }, warnings },
    encoder,
    encoderBias: src.read(key("b_enc"), [dSae]),
    decoder: src.read(key("W_dec"), [dSae, dIn]),
    decoderBias: src.read(key("b_dec"), [dIn]),
    threshold: src.read(key("threshold"), [dSae]),
    gated: null,
  };
}

/** The hook a Gemma Scope path names, as SAELens's `get_gemma_2_config_from_hf` / `get_gemma_3_config_from_hf` read it. */
export function hookFromPath(path: string): { hookName: string | null; point: ReturnType<typeof pointFromHookName>; warnings: string[] } {
  const layer = /(?:^|\/)layer_(\d+)(?:\/|$)/.exec(path) ?? /layer_(\d+)/.exec(path);
  if (!layer) return { hookName: null, point: null, warnings: ["the path names no layer (layer_N): give the point"] };
  const L = Number(layer[1]);
  let hookName: string;
  if (/resid_post|-res(?:-|\/|$)|(?:^|\/)res(?:\/|$)/.test(path)) hookName = `blocks.${L}.hook_resid_post`;
  else if (/mlp/.test(path)) hookName = `blocks.${L}.hook_mlp_out`;
  else if (/attn_out/.test(path)) hookName = `blocks.${L}.hook_attn_out`;
  else if (/-att(?:-|\/|$)/.test(path)) hookName = `blocks.${L}.attn.hook_z`;
  else return { hookName: `layer_${L}`, point: null, warnings: [`the path names layer ${L} but not the site (res, mlp or att): give the point`] };
  return { hookName, point: pointFromHookName(hookName), warnings: [] };
}
