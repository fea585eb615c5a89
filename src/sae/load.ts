/**
 * `loadSae(dir)`: read an SAE as its tool wrote it, whichever tool that was, into the one in-memory
 * {@link Sae} (float32, latent-major encoder). The family is detected from the files present:
 *
 * | family | files |
 * |---|---|
 * | SAELens (current and pre-6.0 configs) | `cfg.json` + `sae_weights.safetensors` |
 * | EleutherAI sparsify | `<hookpoint>/cfg.json` + `<hookpoint>/sae.safetensors` |
 * | Gemma Scope | `params.npz` or `params.safetensors` |
 *
 * Each family's details (and the source they were checked against) are in its module. The hook name
 * in the files maps to a Steerkit point through `sites.ts`; when it is absent, ambiguous or not the
 * residual stream, `info.point` is null and the caller gives `point`. A point given that contradicts
 * the file's is refused. Every problem is a SteerkitError: INVALID_MODEL_FILE for a damaged
 * safetensors/npz file, INVALID_ARTIFACT for anything else, each prefixed with `label` (the path by
 * default; the artifact store passes the artifact's name) and naming files relative to the SAE.
 */
import { existsSync, readdirSync } from "node:fs";
import { pathKind } from "../formats/files.ts";
import { basename, dirname, join, resolve } from "node:path";
import type { ModelInfo } from "../core/backend.ts";
import { SteerkitError } from "../core/errors.ts";
import { pointName, type HookPoint } from "../core/sites.ts";
import { checkSae } from "./artifact.ts";
import { saeFail, withLabel } from "./files.ts";
import { GEMMA_NPZ, GEMMA_SAFETENSORS, loadGemmaScope } from "./gemma-scope.ts";
import { samePoint, toPoint } from "./hook-names.ts";
import type { Sae, SaeFamily } from "./sae.ts";
import { loadSaelens, SAELENS_CONFIG, SAELENS_WEIGHTS } from "./saelens.ts";
import { loadSparsify, SPARSIFY_CONFIG, SPARSIFY_WEIGHTS } from "./sparsify.ts";

export interface LoadSaeOptions {
  /** The point the SAE reads, when the file names none (or to confirm the file's). */
  readonly point?: string | HookPoint;
  /** SAELens `expected_average_only_in`: the release's norm scaling factor (see saelens.ts). */
  readonly normScalingFactor?: number;
  /** How errors name this SAE (default: the path). */
  readonly label?: string;
}

/** Which family a directory holds, from its files; null when none matches. */
export function detectSaeFamily(dir: string): SaeFamily | null {
  const has = (f: string) => existsSync(join(dir, f));
  if (has(SAELENS_CONFIG) && has(SAELENS_WEIGHTS)) return "saelens";
  if (has(SPARSIFY_CONFIG) && has(SPARSIFY_WEIGHTS)) return "sparsify";
  if (has(GEMMA_NPZ) || has(GEMMA_SAFETENSORS)) return "gemma-scope";
  return null;
}

/**
 * Load an SAE directory (or its weights file: the directory is taken). Synchronous: it reads a few
 * files once; callers share the result read-only (the artifact store caches it).
 * @example
 * ```ts
 * const sae = loadSae("gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71");
 * sae.info.point; // { site: "resid_post", layer: 20 }
 * ```
 */
export function loadSae(path: string, options: LoadSaeOptions = {}): Sae {
  const label = options.label ?? path;
  return withLabel(label, () => {
    let dir = resolve(path);
    // pathKind tells a link loop, FIFO or device from a missing path, at once (no open, no hang).
    if (pathKind(dir, (reason) => saeFail(label, reason), "an SAE directory") !== "directory") {
      if (![SAELENS_WEIGHTS, SPARSIFY_WEIGHTS, GEMMA_NPZ, GEMMA_SAFETENSORS, SAELENS_CONFIG].includes(basename(dir))) {
        saeFail(label, "expected an SAE directory (or its cfg.json / weights file)");
      }
      dir = dirname(dir);
    }
    const family = detectSaeFamily(dir);
    let sae: Sae;
    if (family === "saelens") sae = loadSaelens(dir, label, { normScalingFactor: options.normScalingFactor });
    else if (family === "sparsify") sae = loadSparsify(dir, label);
    else if (family === "gemma-scope") sae = loadGemmaScope(dir, label);
    else return saeFail(label, notAnSae(dir));
    sae = withPoint(sae, options.point, label);
    try {
      return checkSae(sae, "loaded"); // the loaders checked each tensor; this guards the assembled shape
    } catch (e) {
      return saeFail(label, (e as Error).message.replace(/^SAE "loaded": /, ""));
    }
  });
}

function notAnSae(dir: string): string {
  // A sparsify run directory holds one subdirectory per hookpoint: name them.
  let subs: string[] = [];
  try {
    subs = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory() && detectSaeFamily(join(dir, e.name)) !== null)
      .map((e) => e.name)
      .sort();
  } catch {
    // unreadable: fall through to the generic message
  }
  if (subs.length > 0) return `holds no SAE itself but SAEs in subdirectories (one per hookpoint in a sparsify run); choose one: ${subs.slice(0, 20).join(", ")}${subs.length > 20 ? ", ..." : ""}`;
  return `not an SAE directory: expected ${SAELENS_CONFIG} + ${SAELENS_WEIGHTS} (SAELens), ${SPARSIFY_CONFIG} + ${SPARSIFY_WEIGHTS} (sparsify), or ${GEMMA_NPZ} / ${GEMMA_SAFETENSORS} (Gemma Scope)`;
}

function withPoint(sae: Sae, given: string | HookPoint | undefined, label: string): Sae {
  if (given === undefined) return sae;
  let p: HookPoint;
  try {
    p = toPoint(given);
  } catch (e) {
    return saeFail(label, `point: ${(e as Error).message}`);
  }
  const own = sae.info.point;
  if (own && !samePoint(own, p)) {
    saeFail(label, `the files say this SAE reads ${pointName(own)} (hook ${sae.info.hookName}), but the point given is ${pointName(p)}`);
  }
  return { ...sae, info: { ...sae.info, point: own ?? p } };
}

/**
 * Check that an SAE fits a model: its d_in is the model's width, and its point (when known) is one of
 * the model's layers. Throws INVALID_OPTIONS (the SAE is fine; it is the wrong one for this model)
 * naming both numbers.
 */
export function checkSaeFitsModel(sae: Sae, model: Pick<ModelInfo, "dModel" | "nLayers"> & { readonly name?: string }, name = "the SAE"): void {
  const subject = name === "the SAE" ? name : `SAE "${name}"`;
  const modelName = model.name ? `model "${model.name}"` : "the model";
  if (sae.info.dIn !== model.dModel) {
    throw new SteerkitError("INVALID_OPTIONS", `${subject} has d_in ${sae.info.dIn}, but ${modelName} has width (dModel) ${model.dModel}`);
  }
  const p = sae.info.point;
  if (p && p.layer >= model.nLayers) {
    throw new SteerkitError("INVALID_OPTIONS", `${subject} reads ${pointName(p)}, but ${modelName} has ${model.nLayers} layers (0..${model.nLayers - 1})`);
  }
}
