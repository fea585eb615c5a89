/**
 * How well an SAE reconstructs residual rows: FVU (fraction of variance unexplained), L0 and
 * per-latent firing frequencies. Shared by the trainer (held-out rows), `steerkit sae info` and the
 * shipped SAE's test, through the trainer's own forward kernel.
 */
import type { Sae } from "./sae.ts";
import { forward, type LatentShape } from "./train-kernels.ts";
import { meanRow } from "./train-init.ts";

export interface SaeEvaluation {
  readonly fvu: number;
  readonly l0: number;
  readonly mse: number;
  readonly firingFrequency: Float32Array;
}

/**
 * FVU, L0 and firing frequencies of any TopK or ReLU SAE (without input normalization) on rows
 * `[rows, dIn]`, with float64 sums.
 */
export function evaluateSae(sae: Sae, data: Float32Array): SaeEvaluation {
  const { dIn, dSae, architecture, k } = sae.info;
  if (architecture !== "topk" && architecture !== "relu") throw new RangeError(`evaluateSae: ${architecture} SAEs are not supported here`);
  if (sae.info.normalization.kind !== "none") throw new RangeError("evaluateSae: SAEs with input normalization are not supported here");
  const rows = data.length / dIn;
  const o: LatentShape = { architecture, dSae, k: k ?? 0 };
  const chunk = 512;
  const maxActive = architecture === "topk" ? k! : dSae;
  const x = new Float32Array(chunk * dIn);
  const xc = new Float32Array(chunk * dIn);
  const pre = new Float32Array(chunk * dSae);
  const actIdx = new Int32Array(chunk * maxActive);
  const actVal = new Float32Array(chunk * maxActive);
  const actCount = new Int32Array(chunk);
  const xhat = new Float32Array(chunk * dIn);
  const mean = meanRow(data, dIn);
  const fired = new Float64Array(dSae);
  let sse = 0;
  let sst = 0;
  let active = 0;
  const bIn = sae.info.applyBDecToInput ? sae.decoderBias : new Float32Array(dIn);
  for (let from = 0; from < rows; from += chunk) {
    const n = Math.min(chunk, rows - from);
    x.set(data.subarray(from * dIn, (from + n) * dIn));
    forward(o, sae.encoder, sae.encoderBias, sae.decoder, sae.decoderBias, bIn, x, xc, pre, actIdx, actVal, actCount, xhat, n);
    for (let b = 0; b < n; b++) {
      for (let j = 0; j < dIn; j++) {
        sse += (x[b * dIn + j]! - xhat[b * dIn + j]!) ** 2;
        sst += (x[b * dIn + j]! - mean[j]!) ** 2;
      }
      for (let a = 0; a < actCount[b]!; a++) {
        if (actVal[b * maxActive + a]! > 0) {
          active++;
          fired[actIdx[b * maxActive + a]!]! += 1;
        }
      }
    }
  }
  return {
    fvu: sst > 0 ? sse / sst : NaN,
    l0: active / rows,
    mse: sse / rows,
    firingFrequency: Float32Array.from(fired, (c) => c / rows),
  };
}
