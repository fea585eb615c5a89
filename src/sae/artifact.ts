/**
 * The `sae` artifact kind: an SAE registered by name, so recipes (`sae-clamp`, `sae-latents`)
 * name it and never give a path. Register an SAE directory (`{ path }`: any family `loadSae` reads)
 * or an SAE already in memory (`{ value: sae }`, e.g. `loadSae(dir, { point })` when the files name
 * no point); its weights are checked here once, so every plugin can trust the shape.
 */
import { ArtifactError, defineArtifactKind } from "../core/artifacts.ts";
import { loadSae } from "./load.ts";
import type { Sae } from "./sae.ts";

const ARCHITECTURES = ["relu", "jumprelu", "topk", "gated"];

/** Check an in-memory SAE's shape and values; errors name the SAE and the tensor. */
export function checkSae(value: unknown, name: string): Sae {
  const where = `SAE "${name}"`;
  const bad = (msg: string): never => {
    throw new ArtifactError("INVALID_ARTIFACT", `${where}: ${msg}`);
  };
  if (typeof value !== "object" || value === null || !("info" in value)) return bad("expected an SAE object with info and weights");
  const sae = value as Sae;
  const { info } = sae;
  const positive = (n: unknown) => Number.isInteger(n) && (n as number) > 0;
  if (!ARCHITECTURES.includes(info.architecture)) bad(`architecture "${info.architecture}" is not one of ${ARCHITECTURES.join(", ")}`);
  if (!positive(info.dIn) || !positive(info.dSae)) bad(`dIn and dSae must be positive integers, got ${info.dIn} and ${info.dSae}`);
  if (info.architecture === "topk" && !(positive(info.k) && info.k! <= info.dSae)) bad(`a TopK SAE needs k in 1..${info.dSae}, got ${info.k}`);
  const tensor = (label: string, t: Float32Array | null | undefined, n: number) => {
    if (!(t instanceof Float32Array) || t.length !== n) bad(`${label} must be a Float32Array of ${n} values, got ${t instanceof Float32Array ? t.length : String(t)}`);
    for (let i = 0; i < n; i++) if (!Number.isFinite(t![i]!)) bad(`${label}[${i}] is ${t![i]}`);
  };
  tensor("encoder", sae.encoder, info.dSae * info.dIn);
  tensor("decoder", sae.decoder, info.dSae * info.dIn);
  tensor("encoderBias", sae.encoderBias, info.dSae);
  tensor("decoderBias", sae.decoderBias, info.dIn);
  if (info.architecture === "jumprelu") tensor("threshold", sae.threshold, info.dSae);
  if (info.architecture === "gated") {
    if (!sae.gated) bad("a gated SAE needs gated weights (bGate, rMag, bMag)");
    tensor("gated.bGate", sae.gated!.bGate, info.dSae);
    tensor("gated.rMag", sae.gated!.rMag, info.dSae);
    tensor("gated.bMag", sae.gated!.bMag, info.dSae);
  }
  const norm = info.normalization;
  if (norm.kind === "scale" && !(Number.isFinite(norm.factor) && norm.factor > 0)) bad(`normalization scale factor must be finite and > 0, got ${norm.factor}`);
  return sae;
}

export const saeArtifact = defineArtifactKind<Sae>({
  name: "sae",
  description: "a sparse autoencoder",
  load(source, name) {
    if ("value" in source) return checkSae(source.value, name);
    // Errors name the artifact, not its path (they may reach a request).
    return loadSae(source.path, { label: `SAE "${name}"` });
  },
});
