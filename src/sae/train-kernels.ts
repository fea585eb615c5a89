/**
 * The SAE trainer's inner loops (train.ts): the batched forward pass, the encoder's backward step,
 * TopK selection and Adam. Plain float loops over latent-major rows, sequential so the same inputs
 * give bit-identical outputs (training is deterministic for a seed); `evaluateSae` and dead-latent
 * resampling reuse `forward`, so the measured FVU is of the exact function trained.
 */

/** What the kernels need to know of an SAE's latents. */
export interface LatentShape {
  readonly architecture: "topk" | "relu";
  readonly dSae: number;
  /** TopK's k (unused for ReLU). */
  readonly k: number;
}

/** Encode a batch (x̃ = x − bIn, pre-activations, sparse activations) and decode it (+ bDec). */
export function forward(
  o: LatentShape, enc: Float32Array, bEnc: Float32Array, dec: Float32Array, bDec: Float32Array, bIn: Float32Array,
  x: Float32Array, xc: Float32Array, pre: Float32Array, actIdx: Int32Array, actVal: Float32Array, actCount: Int32Array,
  xhat: Float32Array, batch: number,
): void {
  const { dSae } = o;
  const dIn = bDec.length;
  const maxActive = o.architecture === "topk" ? o.k : dSae;
  if (g64.length < dIn) g64 = new Float64Array(dIn);
  for (let b = 0; b < batch; b++) {
    const xo = b * dIn;
    for (let j = 0; j < dIn; j++) xc[xo + j] = x[xo + j]! - bIn[j]!;
  }
  // pre = xc · encᵀ + b_enc, four latents at a time so each input value is loaded once per four dot products.
  for (let b = 0; b < batch; b++) {
    const xo = b * dIn;
    const po = b * dSae;
    let i = 0;
    for (; i + 3 < dSae; i += 4) {
      const o0 = i * dIn, o1 = o0 + dIn, o2 = o1 + dIn, o3 = o2 + dIn;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let j = 0; j < dIn; j++) {
        const v = xc[xo + j]!;
        s0 += enc[o0 + j]! * v;
        s1 += enc[o1 + j]! * v;
        s2 += enc[o2 + j]! * v;
        s3 += enc[o3 + j]! * v;
      }
      pre[po + i] = s0 + bEnc[i]!;
      pre[po + i + 1] = s1 + bEnc[i + 1]!;
      pre[po + i + 2] = s2 + bEnc[i + 2]!;
      pre[po + i + 3] = s3 + bEnc[i + 3]!;
    }
    for (; i < dSae; i++) {
      let s = 0;
      for (let j = 0, oo = i * dIn; j < dIn; j++) s += enc[oo + j]! * xc[xo + j]!;
      pre[po + i] = s + bEnc[i]!;
    }
    const base = b * maxActive;
    let n: number;
    if (o.architecture === "topk") {
      n = topK(pre, po, dSae, o.k, actIdx, actVal, base);
      for (let a = 0; a < n; a++) if (!(actVal[base + a]! > 0)) actVal[base + a] = 0;
    } else {
      n = 0;
      for (let i2 = 0; i2 < dSae; i2++) {
        const v = pre[po + i2]!;
        if (v > 0) {
          actIdx[base + n] = i2;
          actVal[base + n] = v;
          n++;
        }
      }
    }
    actCount[b] = n;
    // x̂ = b_dec + Σ f_i dec_i
    for (let j = 0; j < dIn; j++) g64[j] = bDec[j]!;
    for (let a = 0; a < n; a++) {
      const f = actVal[base + a]!;
      if (f === 0) continue;
      const io = actIdx[base + a]! * dIn;
      for (let j = 0; j < dIn; j++) g64[j] = g64[j]! + f * dec[io + j]!;
    }
    for (let j = 0; j < dIn; j++) xhat[xo + j] = g64[j]!;
  }
}

// A float64 accumulator for one decoded row, grown once: forward allocates nothing per batch.
let g64 = new Float64Array(0);

/** Encoder gradient of one latent for one row: enc_i += df·x̃, b_enc_i += df, and dx̃ += df·enc_i. */
export function backEncoder(i: number, df: number, xc: Float32Array, xo: number, enc: Float32Array, gEnc: Float32Array, gBEnc: Float32Array, dxc: Float64Array, dIn: number): void {
  if (df === 0) return;
  const io = i * dIn;
  for (let j = 0; j < dIn; j++) {
    gEnc[io + j] = gEnc[io + j]! + df * xc[xo + j]!;
    dxc[j] = dxc[j]! + df * enc[io + j]!;
  }
  gBEnc[i] = gBEnc[i]! + df;
}

/**
 * The k largest of `values[from .. from+n)` into idx/val at `out` (descending), ties to the lower
 * index, as `keepTopK` in sae.ts chooses. Returns k (or n when smaller).
 */
export function topK(values: Float32Array, from: number, n: number, k: number, idx: Int32Array, val: Float32Array, out: number): number {
  let size = 0;
  for (let i = 0; i < n; i++) {
    const v = values[from + i]!;
    if (size === k && !(v > val[out + k - 1]!)) continue;
    let p = size < k ? size++ : k - 1;
    while (p > 0 && v > val[out + p - 1]!) {
      val[out + p] = val[out + p - 1]!;
      idx[out + p] = idx[out + p - 1]!;
      p--;
    }
    val[out + p] = v;
    idx[out + p] = i;
  }
  return size;
}

/** The k largest positive values among latents with mask[i] = 1. Returns how many were found. */
export function topAmong(values: Float32Array, from: number, n: number, mask: Uint8Array, k: number, idx: Int32Array, val: Float32Array): number {
  let size = 0;
  for (let i = 0; i < n; i++) {
    if (!mask[i]) continue;
    const v = values[from + i]!;
    if (!(v > 0)) continue;
    if (size === k && !(v > val[k - 1]!)) continue;
    let p = size < k ? size++ : k - 1;
    while (p > 0 && v > val[p - 1]!) {
      val[p] = val[p - 1]!;
      idx[p] = idx[p - 1]!;
      p--;
    }
    val[p] = v;
    idx[p] = i;
  }
  return size;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPS = 1e-8;

export function adamStep(params: Float32Array[], grads: Float32Array[], state: { m: Float32Array; v: Float32Array }[], lr: number, t: number): void {
  const c1 = 1 - BETA1 ** t;
  const c2 = 1 - BETA2 ** t;
  for (let p = 0; p < params.length; p++) {
    const w = params[p]!;
    const gr = grads[p]!;
    const { m, v } = state[p]!;
    for (let i = 0; i < w.length; i++) {
      const gi = gr[i]!;
      const mi = BETA1 * m[i]! + (1 - BETA1) * gi;
      const vi = BETA2 * v[i]! + (1 - BETA2) * gi * gi;
      m[i] = mi;
      v[i] = vi;
      w[i] = w[i]! - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + EPS);
    }
  }
}

export function normalizeRows(w: Float32Array, rows: number, d: number): void {
  for (let i = 0; i < rows; i++) {
    let ss = 0;
    for (let j = 0, o = i * d; j < d; j++) ss += w[o + j]! * w[o + j]!;
    const s = ss > 0 ? 1 / Math.sqrt(ss) : 0;
    for (let j = 0, o = i * d; j < d; j++) w[o + j] = w[o + j]! * s;
  }
}
