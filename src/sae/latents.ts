/**
 * Fast activations of chosen SAE latents, one residual row at a time, for the hot path
 * (`sae-clamp`, `sae-latents`) and for discovery (every latent).
 *
 * Why not sae.ts's `encode`: that is the dense reference (O(dSae·dIn) per row, allocates). Here a
 * {@link LatentPlan} is built once per SAE and latent set (in a plugin's `prepare`: immutable, shared
 * by every request) and a {@link LatentReader} per request holds the scratch, so reading a row
 * allocates nothing.
 *
 * The math is sae.ts's, rearranged so no normalized copy of the row is made: with the row's
 * normalization `x₁ = (x − shift)/scale` (see `RowScale`),
 *   w·(x₁ − b_dec) = (w·x − shift·Σw)/scale − w·b_dec
 * where Σw and w·b_dec are per-latent constants folded in when the plan is built.
 *
 * Cost per row:
 * - relu, jumprelu, gated, and TopK `"approximate"`: O(m·dIn) for m chosen latents (each latent
 *   depends only on its own encoder row);
 * - TopK `"exact"`: O(dSae·dIn + dSae·log k): whether a latent survives TopK depends on every other
 *   latent's pre-activation, so every pre-activation is computed (a full encoder pass; the decode
 *   side stays sparse). `"approximate"` treats a chosen TopK latent as ReLU of its pre-activation;
 *   it differs from exact only when that pre-activation is positive but not among the k largest
 *   (exact says 0, approximate says the pre-activation).
 */
import { normalizeRow, type RowScale, type Sae } from "./sae.ts";

export type TopKMode = "exact" | "approximate";

/** Everything per SAE and latent set, precomputed; read-only once built. */
export interface LatentPlan {
  readonly sae: Sae;
  /** The latents read, in the order `read` writes them. */
  readonly indices: Int32Array;
  /** True when every pre-activation is computed per row (TopK exact). */
  readonly full: boolean;
  /** Encoder rows dotted per row: the chosen rows packed `[m, dIn]`, or the whole encoder (full or all latents). */
  readonly rows: Float32Array;
  readonly nRows: number;
  /** Per computed row: the constant added after dividing by the row scale (b_enc − w·b_dec; gated: −w·b_dec). */
  readonly bias: Float64Array;
  /** Per computed row: Σw (layer norm subtracts the row mean), else null. */
  readonly wsum: Float64Array | null;
  /** Per chosen latent (packed): JumpReLU thresholds, gated parameters. */
  readonly threshold: Float64Array | null;
  readonly gate: { readonly bGate: Float64Array; readonly expRMag: Float64Array; readonly bMag: Float64Array } | null;
}

/**
 * Plan reading `indices` of `sae` (each in 0..dSae-1; callers check and report bad ones).
 * `topk` only matters for TopK SAEs.
 */
export function latentPlan(sae: Sae, indices: ArrayLike<number>, topk: TopKMode = "exact"): LatentPlan {
  const { dIn: d, dSae, architecture, normalization, applyBDecToInput } = sae.info;
  const idx = Int32Array.from(indices);
  for (const i of idx) if (!(i >= 0 && i < dSae)) throw new RangeError(`latent ${i} is out of range 0..${dSae - 1}`);
  const full = architecture === "topk" && topk === "exact";
  const identity = idx.length === dSae && idx.every((v, i) => v === i);
  // Rows to dot: the whole encoder when every pre-activation is needed, else the chosen rows packed.
  const rowIndex = full || identity ? null : idx;
  const nRows = rowIndex ? rowIndex.length : dSae;
  let rows: Float32Array;
  if (rowIndex) {
    rows = new Float32Array(nRows * d);
    rowIndex.forEach((i, r) => rows.set(sae.encoder.subarray(i * d, (i + 1) * d), r * d));
  } else rows = sae.encoder;

  const bias = new Float64Array(nRows);
  const wsum = normalization.kind === "layer_norm" ? new Float64Array(nRows) : null;
  const bDec = sae.decoderBias;
  for (let r = 0; r < nRows; r++) {
    const i = rowIndex ? rowIndex[r]! : r;
    let wb = 0;
    let ws = 0;
    for (let j = 0, o = r * d; j < d; j++) {
      wb += rows[o + j]! * bDec[j]!;
      ws += rows[o + j]!;
    }
    bias[r] = (architecture === "gated" ? 0 : sae.encoderBias[i]!) - (applyBDecToInput ? wb : 0);
    if (wsum) wsum[r] = ws;
  }
  const pick = (t: Float32Array, f: (x: number) => number = (x) => x) => Float64Array.from(idx, (i) => f(t[i]!));
  const threshold = architecture === "jumprelu" ? pick(sae.threshold!) : null;
  const gate = architecture === "gated" ? { bGate: pick(sae.gated!.bGate), expRMag: pick(sae.gated!.rMag, Math.exp), bMag: pick(sae.gated!.bMag) } : null;
  return { sae, indices: idx, full, rows, nRows, bias, wsum, threshold, gate };
}

/** Reads a plan's latents from residual rows; one per request (it owns scratch). */
export interface LatentReader {
  /**
   * Activations of the plan's latents for the row `x[off .. off+dIn)`, into `out[0 .. m)`; `row`
   * receives the row's normalization (residual = scale · normalized + shift), so a decoder row can
   * be added in residual units as `delta · row.scale · W_dec[i]`.
   */
  read(x: ArrayLike<number>, off: number, out: Float64Array, row: RowScale): void;
  /** Only the row's normalization (O(dIn) or O(1)), for edits that need no activation. */
  rowScale(x: ArrayLike<number>, off: number, row: RowScale): void;
}

export function latentReader(plan: LatentPlan): LatentReader {
  const { sae, indices, full, rows, nRows, bias, wsum, threshold, gate } = plan;
  const { dIn: d, architecture } = sae.info;
  const k = sae.info.k ?? 0;
  const m = indices.length;
  // TopK exact: every pre-activation, and a min-heap of the k largest to find the k-th.
  const pre = full ? new Float32Array(nRows) : null;
  const heap = full && k < nRows ? new Float32Array(k) : null;

  const normalize = (x: ArrayLike<number>, off: number, row: RowScale): void => normalizeRow(sae, x, off, row);

  return {
    rowScale: normalize,
    read(x, off, out, row) {
      normalize(x, off, row);
      const { divisor, shift } = row;
      const inv = 1 / divisor;

      if (pre) {
        for (let r = 0; r < nRows; r++) pre[r] = (dotRow(rows, r * d, x, off, d) - (wsum ? shift * wsum[r]! : 0)) * inv + bias[r]!;
        const kth = heap ? kthLargest(pre, heap) : -Infinity;
        for (let c = 0; c < m; c++) out[c] = topKValue(pre, indices[c]!, kth, k);
        return;
      }
      for (let c = 0; c < m; c++) {
        const s = (dotRow(rows, c * d, x, off, d) - (wsum ? shift * wsum[c]! : 0)) * inv + bias[c]!;
        if (architecture === "gated") {
          if (!(s + gate!.bGate[c]! > 0)) out[c] = 0;
          else {
            const mag = s * gate!.expRMag[c]! + gate!.bMag[c]!;
            out[c] = mag > 0 ? mag : 0;
          }
        } else if (architecture === "jumprelu") out[c] = s > threshold![c]! ? s : 0;
        else out[c] = s > 0 ? s : 0; // relu, and TopK approximate
      }
    },
  };
}

/** w[wo..wo+d) · x[xo..xo+d), four accumulators (float64). */
function dotRow(w: Float32Array, wo: number, x: ArrayLike<number>, xo: number, d: number): number {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let j = 0;
  for (; j + 3 < d; j += 4) {
    s0 += w[wo + j]! * x[xo + j]!;
    s1 += w[wo + j + 1]! * x[xo + j + 1]!;
    s2 += w[wo + j + 2]! * x[xo + j + 2]!;
    s3 += w[wo + j + 3]! * x[xo + j + 3]!;
  }
  for (; j < d; j++) s0 += w[wo + j]! * x[xo + j]!;
  return s0 + s1 + s2 + s3;
}

/** The k-th largest of `values` (k = heap.length < values.length), with a min-heap; NaN counts as smallest. */
function kthLargest(values: Float32Array, heap: Float32Array): number {
  const k = heap.length;
  for (let i = 0; i < k; i++) {
    heap[i] = values[i]! === values[i]! ? values[i]! : -Infinity;
    siftUp(heap, i);
  }
  for (let i = k; i < values.length; i++) {
    const v = values[i]!;
    if (v > heap[0]!) {
      heap[0] = v;
      siftDown(heap, k);
    }
  }
  return heap[0]!;
}

function siftUp(h: Float32Array, i: number): void {
  while (i > 0) {
    const p = (i - 1) >> 1;
    if (h[p]! <= h[i]!) return;
    const t = h[p]!;
    h[p] = h[i]!;
    h[i] = t;
    i = p;
  }
}

function siftDown(h: Float32Array, n: number): void {
  let i = 0;
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let s = i;
    if (l < n && h[l]! < h[s]!) s = l;
    if (r < n && h[r]! < h[s]!) s = r;
    if (s === i) return;
    const t = h[s]!;
    h[s] = h[i]!;
    h[i] = t;
    i = s;
  }
}

/**
 * Latent `i`'s TopK activation given every pre-activation and the k-th largest, with sae.ts's
 * `keepTopK` rules: strictly larger values stay, values equal to the k-th stay lowest index first
 * until k are kept, then ReLU.
 */
function topKValue(pre: Float32Array, i: number, kth: number, k: number): number {
  const v = pre[i]!;
  if (!(v > 0) || v < kth) return 0;
  if (v > kth) return v;
  let greater = 0;
  let before = 0;
  for (let j = 0; j < pre.length; j++) {
    if (pre[j]! > kth) greater++;
    else if (j < i && pre[j]! === kth) before++;
  }
  return before < k - greater ? v : 0;
}
