/**
 * SAEs built in memory for tests: random ones (every architecture and normalization, to compare
 * fast paths with sae.ts's dense reference), and tied orthonormal ones whose encoder row i reads
 * exactly what decoder row i writes (w_i · d_j = δ_ij), so re-encoding an edited residual shows
 * the edit did what it says.
 */
import { createRng } from "../../src/core/sampling.ts";
import type { HookPoint } from "../../src/core/sites.ts";
import type { Sae, SaeArchitecture, SaeInfo, SaeNormalization } from "../../src/sae/sae.ts";

export function gaussian(seed: number): () => number {
  const rng = createRng(seed);
  return () => {
    const u = 1 - rng(); // (0, 1]
    const v = rng();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export interface SaeSpec {
  architecture: SaeArchitecture;
  dIn: number;
  dSae: number;
  k?: number;
  normalization?: SaeNormalization;
  applyBDecToInput?: boolean;
  point?: HookPoint | null;
  hookName?: string | null;
  seed?: number;
}

function info(s: SaeSpec): SaeInfo {
  return {
    family: "saelens",
    architecture: s.architecture,
    dIn: s.dIn,
    dSae: s.dSae,
    k: s.architecture === "topk" ? (s.k ?? 4) : null,
    hookName: s.hookName ?? null,
    point: s.point ?? null,
    dtype: "float32",
    applyBDecToInput: s.applyBDecToInput ?? true,
    normalization: s.normalization ?? { kind: "none" },
  };
}

/** Random weights scaled so roughly half the latents fire on residual-sized inputs. */
export function randomSae(s: SaeSpec): Sae {
  const g = gaussian(s.seed ?? 1);
  const { dIn, dSae } = s;
  const enc = Float32Array.from({ length: dSae * dIn }, () => g() / Math.sqrt(dIn));
  const dec = Float32Array.from({ length: dSae * dIn }, () => g() / Math.sqrt(dIn));
  const small = (n: number, scale: number) => Float32Array.from({ length: n }, () => g() * scale);
  return {
    info: info(s),
    encoder: enc,
    encoderBias: small(dSae, 0.1),
    decoder: dec,
    decoderBias: small(dIn, 0.05),
    threshold: s.architecture === "jumprelu" ? Float32Array.from({ length: dSae }, () => Math.abs(g()) * 0.1) : null,
    gated: s.architecture === "gated" ? { bGate: small(dSae, 0.1), rMag: small(dSae, 0.2), bMag: small(dSae, 0.1) } : null,
  };
}

/** `n` orthonormal vectors in R^d (Gram–Schmidt of Gaussian vectors), row-major `[n, d]`. */
export function orthonormal(n: number, d: number, seed: number): Float32Array {
  const g = gaussian(seed);
  const rows: Float64Array[] = [];
  while (rows.length < n) {
    const v = Float64Array.from({ length: d }, () => g());
    for (const r of rows) {
      let p = 0;
      for (let j = 0; j < d; j++) p += v[j]! * r[j]!;
      for (let j = 0; j < d; j++) v[j]! -= p * r[j]!;
    }
    const norm = Math.hypot(...v);
    rows.push(v.map((x) => x / norm));
  }
  const out = new Float32Array(n * d);
  rows.forEach((r, i) => out.set(r, i * d));
  return out;
}

/**
 * Tied SAE: encoder = decoder = orthonormal rows, so latent i reads exactly what decoder row i
 * writes. `bias` per latent (a large one keeps a latent active at every token).
 */
export function tiedSae(s: SaeSpec & { bias?: (i: number) => number }): Sae {
  const rows = orthonormal(s.dSae, s.dIn, s.seed ?? 7);
  const bias = Float32Array.from({ length: s.dSae }, (_, i) => s.bias?.(i) ?? 0);
  const zeros = new Float32Array(s.dSae);
  return {
    info: info(s),
    encoder: rows,
    encoderBias: bias,
    decoder: Float32Array.from(rows),
    decoderBias: Float32Array.from({ length: s.dIn }, (_, j) => 0.01 * Math.sin(j)),
    threshold: s.architecture === "jumprelu" ? new Float32Array(s.dSae) : null,
    // Gated: gate bias and magnitude bias equal the latent's bias, r_mag = 0, so f = w·x₂ + bias when the gate opens.
    gated: s.architecture === "gated" ? { bGate: Float32Array.from(bias), rMag: zeros, bMag: Float32Array.from(bias) } : null,
  };
}
