/**
 * Train a TopK or ReLU (L1) sparse autoencoder on residual rows, in plain TypeScript.
 *
 * The model is SAELens's (and sparsify's): x̃ = x − b_dec, pre = W_enc·x̃ + b_enc, f = act(pre),
 * x̂ = W_decᵀ·f + b_dec, loss = Σ‖x̂ − x‖² / batch (+ l1·Σf / batch for ReLU), trained with Adam.
 * Choices, and why:
 * - Decoder rows are kept at unit norm: the gradient component parallel to each row is removed
 *   before the step and rows are renormalized after it (SAELens / sparsify). With unit rows the
 *   L1 penalty cannot be dodged by shrinking activations and growing the decoder, and a latent's
 *   activation is in residual units, which `sae-clamp` relies on.
 * - b_dec starts at the geometric median of the data (Weiszfeld, as Anthropic and SAELens do), or
 *   the mean: the SAE then encodes deviations from a typical row, not the (large) common offset.
 * - Dead latents (not fired in `deadTokens` training tokens) are handled per architecture:
 *   TopK uses the AuxK loss (Gao et al. 2024; sparsify, SAELens): the top-k_aux dead latents of
 *   each row reconstruct the live latents' residual, so dead latents get gradient and revive
 *   without disturbing live ones or Adam's state. ReLU latents get gradient only when they fire,
 *   and an AuxK-style selection has no meaning for them, so dead ReLU latents are resampled
 *   (Anthropic 2023): their decoder row becomes the normalized residual of a row sampled by
 *   squared error, the encoder row that direction scaled to 0.2× the mean live encoder norm, and
 *   their Adam moments are reset.
 * - Learning rate: linear warm-up over the first 5% of steps (at most 1000), linear decay to 0
 *   over the last 20% (SAELens's schedule knobs, fixed here).
 * - Deterministic: one seeded xoshiro128** stream (core's `createRng`) for init and batch order,
 *   sequential float loops; the same data, options and seed give identical weights.
 * Matmuls are plain loops over latent-major rows (contiguous dot products over dIn); the sparse
 * parts (decode and every backward pass through f) cost O(batch · L0 · dIn).
 *
 * FVU (fraction of variance unexplained) = Σ‖x − x̂‖² / Σ‖x − mean(x)‖² and L0 (active latents
 * per row) are measured on held-out rows (the last `evalFraction` of the data, i.e. the last
 * texts: no row of an eval text is trained on when rows come from `collectResiduals`).
 */
import { createRng } from "../core/sampling.ts";
import { toTransformerLens, type HookPoint } from "../core/sites.ts";
import type { Sae } from "./sae.ts";
import { evaluateSae } from "./evaluate.ts";
import { geometricMedian, initWeights, meanRow, resampleDead, shuffle } from "./train-init.ts";
import { adamStep, backEncoder, forward, normalizeRows, topAmong, type LatentShape } from "./train-kernels.ts";


export type TrainArchitecture = "topk" | "relu";

export interface TrainOptions {
  readonly architecture: TrainArchitecture;
  /** Number of latents. */
  readonly dSae: number;
  /** Active latents per row (TopK). */
  readonly k?: number;
  /** L1 coefficient (ReLU); default 1. */
  readonly l1?: number;
  /** Optimizer steps; default: `epochs` (1 when neither is given) passes over the training rows. */
  readonly steps?: number;
  readonly epochs?: number;
  /** Adam learning rate; default 1e-3. */
  readonly lr?: number;
  /** Rows per step; default 1024. */
  readonly batch?: number;
  readonly seed: number;
  /** b_dec initialization; default "geometric-median". */
  readonly bDecInit?: "geometric-median" | "mean";
  /** A latent that has not fired in this many training rows is dead; default min(1e6, steps·batch / 4). */
  readonly deadTokens?: number;
  /** AuxK loss weight (TopK); default 1/32 (Gao et al. 2024). */
  readonly auxKCoefficient?: number;
  /** Resample dead latents every this many steps (ReLU); default steps / 8. Never in the last 30% of steps. */
  readonly resampleEvery?: number;
  /** Fraction of rows (taken from the end) held out for evaluation; default 0.1. */
  readonly evalFraction?: number;
  /** The point the rows were read at: recorded in the SAE (hook name, point). */
  readonly point?: HookPoint | null;
  /** Called every `progressEvery` steps (default 10) and after the last step. */
  readonly onProgress?: (p: TrainProgress) => void;
  readonly progressEvery?: number;
}

export interface TrainProgress {
  readonly step: number;
  readonly steps: number;
  /** Of the last batch: reconstruction MSE (sum over dIn, mean over rows), FVU and L0. */
  readonly mse: number;
  readonly fvu: number;
  readonly l0: number;
  /** Latents not fired in the last `deadTokens` training rows. */
  readonly dead: number;
}

export interface TrainStats {
  /** FVU and L0 on the held-out rows (or on the training rows when none are held out). */
  readonly fvu: number;
  readonly l0: number;
  /** Latents not fired in the last `deadTokens` training rows, at the end of training. */
  readonly deadLatents: number;
  /** Latents that never fired on the held-out rows. */
  readonly neverFiredOnEval: number;
  readonly trainRows: number;
  readonly evalRows: number;
  readonly steps: number;
  /** Rows processed (steps × batch). */
  readonly tokens: number;
  readonly deadTokens: number;
  readonly resampled: number;
  readonly seconds: number;
  /** `[dSae]` firing frequency of each latent on the evaluated rows. */
  readonly firingFrequency: Float32Array;
}

export interface TrainResult {
  readonly sae: Sae;
  readonly stats: TrainStats;
}

/** Train on `data` (`[rows, dIn]` row-major). */
export function trainSae(data: Float32Array, dIn: number, options: TrainOptions): TrainResult {
  const t0 = performance.now();
  const o = resolveOptions(data, dIn, options);
  const { dSae, batch, steps } = o;
  const rng = createRng(options.seed);
  const rows = data.length / dIn;
  const evalRows = o.evalFraction > 0 ? Math.min(rows - 1, Math.max(1, Math.round(rows * o.evalFraction))) : 0;
  const trainRows = rows - evalRows;
  if (trainRows < 1) throw new RangeError(`trainSae: no training rows (${rows} rows, evalFraction ${o.evalFraction})`);
  const train = data.subarray(0, trainRows * dIn);

  // Parameters (float32) and Adam moments.
  const enc = new Float32Array(dSae * dIn);
  const dec = new Float32Array(dSae * dIn);
  const bEnc = new Float32Array(dSae);
  const bDec = o.bDecInit === "mean" ? meanRow(train, dIn) : geometricMedian(train, dIn, rng);
  initWeights(enc, dec, dSae, dIn, rng, o.architecture === "relu" ? 0.1 : 1);
  const params = [enc, dec, bEnc, bDec];
  const adam = params.map((p) => ({ m: new Float32Array(p.length), v: new Float32Array(p.length) }));
  const grads = params.map((p) => new Float32Array(p.length));
  const [gEnc, gDec, gBEnc, gBDec] = grads as [Float32Array, Float32Array, Float32Array, Float32Array];

  // Batch buffers.
  const x = new Float32Array(batch * dIn);
  const xc = new Float32Array(batch * dIn);
  const pre = new Float32Array(batch * dSae);
  const xhat = new Float32Array(batch * dIn);
  const g = new Float64Array(dIn);
  const dxc = new Float64Array(dIn);
  const ga = new Float64Array(dIn);
  const batchMean = new Float64Array(dIn);
  const maxActive = o.architecture === "topk" ? o.k : dSae;
  const actIdx = new Int32Array(batch * maxActive);
  const actVal = new Float32Array(batch * maxActive);
  const actCount = new Int32Array(batch);
  const kAuxMax = Math.max(1, dIn >> 1);
  const auxIdx = new Int32Array(kAuxMax);
  const auxVal = new Float32Array(kAuxMax);
  const deadMask = new Uint8Array(dSae);

  const lastFired = new Float64Array(dSae); // training-row counter at each latent's last firing
  let seen = 0;
  let resampled = 0;
  const order = new Int32Array(trainRows);
  for (let i = 0; i < trainRows; i++) order[i] = i;
  let cursor = trainRows; // forces a shuffle on the first batch

  const warmup = Math.min(1000, Math.floor(steps * 0.05));
  const decayFrom = Math.floor(steps * 0.8);
  let last: TrainProgress = { step: 0, steps, mse: NaN, fvu: NaN, l0: NaN, dead: 0 };

  for (let step = 1; step <= steps; step++) {
    // 1. Next batch, in a seeded permutation per epoch.
    for (let b = 0; b < batch; b++) {
      if (cursor >= trainRows) {
        shuffle(order, rng);
        cursor = 0;
      }
      const r = order[cursor++]!;
      x.set(train.subarray(r * dIn, (r + 1) * dIn), b * dIn);
    }
    // 2. Forward: encode, activate, decode.
    forward(o, enc, bEnc, dec, bDec, bDec, x, xc, pre, actIdx, actVal, actCount, xhat, batch);

    // Dead latents as of this batch.
    for (let b = 0; b < batch; b++) {
      const base = b * maxActive;
      for (let a = 0; a < actCount[b]!; a++) if (actVal[base + a]! > 0) lastFired[actIdx[base + a]!] = seen + b + 1;
    }
    seen += batch;
    let nDead = 0;
    for (let i = 0; i < dSae; i++) {
      deadMask[i] = seen - lastFired[i]! > o.deadTokens ? 1 : 0;
      nDead += deadMask[i]!;
    }

    // 3. Backward.
    for (const gr of grads) gr.fill(0);
    let sse = 0;
    let sst = 0;
    let active = 0;
    batchMean.fill(0);
    for (let b = 0; b < batch; b++) for (let j = 0; j < dIn; j++) batchMean[j] = batchMean[j]! + x[b * dIn + j]! / batch;
    const auxScale = o.architecture === "topk" && nDead > 0 ? o.auxKCoefficient * Math.min(nDead / kAuxMax, 1) : 0;
    const kAux = Math.min(kAuxMax, nDead);
    for (let b = 0; b < batch; b++) {
      const xo = b * dIn;
      for (let j = 0; j < dIn; j++) {
        const e = xhat[xo + j]! - x[xo + j]!;
        sse += e * e;
        sst += (x[xo + j]! - batchMean[j]!) ** 2;
        g[j] = (2 * e) / batch;
        gBDec[j] = gBDec[j]! + g[j]!;
      }
      dxc.fill(0);
      const base = b * maxActive;
      for (let a = 0; a < actCount[b]!; a++) {
        const f = actVal[base + a]!;
        if (!(f > 0)) continue;
        active++;
        const i = actIdx[base + a]!;
        const io = i * dIn;
        let df = o.architecture === "relu" ? o.l1 / batch : 0;
        for (let j = 0; j < dIn; j++) {
          df += dec[io + j]! * g[j]!;
          gDec[io + j] = gDec[io + j]! + f * g[j]!;
        }
        backEncoder(i, df, xc, xo, enc, gEnc, gBEnc, dxc, dIn);
      }
      if (auxScale > 0) {
        // AuxK: the kAux largest positive pre-activations among dead latents reconstruct the residual x − x̂.
        const n = topAmong(pre, b * dSae, dSae, deadMask, kAux, auxIdx, auxVal);
        if (n > 0) {
          for (let j = 0; j < dIn; j++) ga[j] = x[xo + j]! - xhat[xo + j]!; // residual target r
          for (let j = 0; j < dIn; j++) ga[j] = -ga[j]!; // ê − r with ê = 0 so far
          for (let a = 0; a < n; a++) {
            const io = auxIdx[a]! * dIn;
            for (let j = 0; j < dIn; j++) ga[j] = ga[j]! + auxVal[a]! * dec[io + j]!;
          }
          for (let j = 0; j < dIn; j++) ga[j] = (2 * auxScale * ga[j]!) / batch;
          for (let a = 0; a < n; a++) {
            const i = auxIdx[a]!;
            const io = i * dIn;
            let df = 0;
            for (let j = 0; j < dIn; j++) {
              df += dec[io + j]! * ga[j]!;
              gDec[io + j] = gDec[io + j]! + auxVal[a]! * ga[j]!;
            }
            backEncoder(i, df, xc, xo, enc, gEnc, gBEnc, dxc, dIn);
          }
        }
      }
      // x̃ = x − b_dec: b_dec also gets the gradient through the encoder's input.
      for (let j = 0; j < dIn; j++) gBDec[j] = gBDec[j]! - dxc[j]!;
    }
    // 4. Keep decoder rows on the unit sphere: drop the radial part of their gradient.
    for (let i = 0; i < dSae; i++) {
      const io = i * dIn;
      let dot = 0;
      for (let j = 0; j < dIn; j++) dot += gDec[io + j]! * dec[io + j]!;
      for (let j = 0; j < dIn; j++) gDec[io + j] = gDec[io + j]! - dot * dec[io + j]!;
    }
    // 5. Adam.
    const lr = o.lr * (step <= warmup ? step / (warmup + 1) : step > decayFrom ? (steps - step + 1) / (steps - decayFrom + 1) : 1);
    adamStep(params, grads, adam, lr, step);
    normalizeRows(dec, dSae, dIn);

    // 6. Resample dead ReLU latents.
    if (o.architecture === "relu" && step % o.resampleEvery === 0 && step <= steps * 0.7 && nDead > 0) {
      resampled += resampleDead(o, deadMask, enc, bEnc, dec, bDec, adam, train, trainRows, dIn, rng);
      for (let i = 0; i < dSae; i++) if (deadMask[i]) lastFired[i] = seen;
    }

    if (step % o.progressEvery === 0 || step === steps) {
      last = { step, steps, mse: sse / batch, fvu: sst > 0 ? sse / sst : NaN, l0: active / batch, dead: nDead };
      options.onProgress?.(last);
    }
  }

  let nDead = 0;
  for (let i = 0; i < dSae; i++) if (seen - lastFired[i]! > o.deadTokens) nDead++;
  const sae: Sae = {
    info: {
      family: "saelens",
      architecture: o.architecture,
      dIn,
      dSae,
      k: o.architecture === "topk" ? o.k : null,
      hookName: options.point ? toTransformerLens(options.point) : null,
      point: options.point ?? null,
      dtype: "float32",
      applyBDecToInput: true,
      normalization: { kind: "none" },
    },
    encoder: enc,
    encoderBias: bEnc,
    decoder: dec,
    decoderBias: bDec,
    threshold: null,
    gated: null,
  };
  const evalData = evalRows > 0 ? data.subarray(trainRows * dIn) : train;
  const ev = evaluateSae(sae, evalData);
  return {
    sae,
    stats: {
      fvu: ev.fvu,
      l0: ev.l0,
      deadLatents: nDead,
      neverFiredOnEval: ev.firingFrequency.reduce((n, f) => n + (f === 0 ? 1 : 0), 0),
      trainRows,
      evalRows,
      steps,
      tokens: steps * batch,
      deadTokens: o.deadTokens,
      resampled,
      seconds: (performance.now() - t0) / 1000,
      firingFrequency: ev.firingFrequency,
    },
  };
}

interface Resolved extends LatentShape {
  architecture: TrainArchitecture;
  l1: number;
  steps: number;
  lr: number;
  batch: number;
  bDecInit: "geometric-median" | "mean";
  deadTokens: number;
  auxKCoefficient: number;
  resampleEvery: number;
  evalFraction: number;
  progressEvery: number;
}

function resolveOptions(data: Float32Array, dIn: number, options: TrainOptions): Resolved {
  const bad = (msg: string): never => {
    throw new RangeError(`trainSae: ${msg}`);
  };
  const int = (name: string, v: number | undefined, min: number) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min)) bad(`${name} must be an integer >= ${min}, got ${v}`);
  };
  if (!Number.isInteger(dIn) || dIn < 1 || data.length % dIn !== 0) bad(`data has ${data.length} values, not a whole number of rows of ${dIn}`);
  if (data.length === 0) bad("no data");
  for (let i = 0; i < data.length; i++) if (!Number.isFinite(data[i]!)) bad(`data[${i}] is ${data[i]}`);
  if (options.architecture !== "topk" && options.architecture !== "relu") bad(`architecture must be "topk" or "relu", got ${JSON.stringify(options.architecture)}`);
  int("dSae", options.dSae, 1);
  int("k", options.k, 1);
  int("steps", options.steps, 1);
  int("batch", options.batch, 1);
  int("seed", options.seed, 0);
  int("deadTokens", options.deadTokens, 1);
  int("resampleEvery", options.resampleEvery, 1);
  int("progressEvery", options.progressEvery, 1);
  if (options.architecture === "topk") {
    if (options.k === undefined) bad("a TopK SAE needs k");
    if (options.k! > options.dSae) bad(`k (${options.k}) must be <= dSae (${options.dSae})`);
  }
  const positive = (name: string, v: number | undefined) => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0)) bad(`${name} must be a finite number > 0, got ${v}`);
  };
  positive("lr", options.lr);
  positive("epochs", options.epochs);
  positive("l1", options.l1);
  if (options.auxKCoefficient !== undefined && !(options.auxKCoefficient >= 0)) bad(`auxKCoefficient must be >= 0, got ${options.auxKCoefficient}`);
  const evalFraction = options.evalFraction ?? 0.1;
  if (!(evalFraction >= 0 && evalFraction < 1)) bad(`evalFraction must be in [0, 1), got ${evalFraction}`);
  if (options.steps !== undefined && options.epochs !== undefined) bad("give steps or epochs, not both");
  const batch = options.batch ?? 1024;
  const trainRows = data.length / dIn - (evalFraction > 0 ? Math.max(1, Math.round((data.length / dIn) * evalFraction)) : 0);
  const steps = options.steps ?? Math.max(1, Math.ceil(((options.epochs ?? 1) * Math.max(1, trainRows)) / batch));
  return {
    architecture: options.architecture,
    dSae: options.dSae,
    k: options.k ?? 0,
    l1: options.l1 ?? 1,
    steps,
    lr: options.lr ?? 1e-3,
    batch,
    bDecInit: options.bDecInit ?? "geometric-median",
    deadTokens: options.deadTokens ?? Math.max(1, Math.min(1_000_000, Math.floor((steps * batch) / 4))),
    auxKCoefficient: options.auxKCoefficient ?? 1 / 32,
    resampleEvery: options.resampleEvery ?? Math.max(1, Math.floor(steps / 8)),
    evalFraction,
    progressEvery: options.progressEvery ?? 10,
  };
}
