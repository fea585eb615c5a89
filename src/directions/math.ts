/**
 * The arithmetic of direction extraction, on plain `[n, d]` row-major Float32Arrays, kept apart
 * from model I/O so each formula can be tested against a hand-computed case:
 *
 * - difference of means (Arditi et al. 2024): `r = mean(A) - mean(B)`, kept at its raw length (the
 *   paper adds it as is and ablates its unit vector);
 * - repeng's `pca_diff`: the first principal component of the paired differences `A_i - B_i`
 *   (centred, as sklearn's PCA centres), unit length, with repeng's sign rule: flip it when more
 *   pairs project A below B than above;
 * - the summary numbers: norms, cosines, and the separation of the two sets' projections.
 *
 * Sums run in float64; only the results are float32. The principal component comes from power
 * iteration on the smaller of the two Gram matrices (d x d or n x n), started from a fixed vector,
 * so the result is deterministic; it refuses to answer when the top two eigenvalues are too close
 * for the direction to be defined.
 */

/** Mean of the rows of `x` ([n, d]) in float64. */
export function meanRows(x: Float32Array, n: number, d: number): Float64Array {
  const m = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) m[i]! += x[r * d + i]!;
  for (let i = 0; i < d; i++) m[i]! /= n;
  return m;
}

/** mean(A) - mean(B). */
export function differenceOfMeans(a: Float32Array, b: Float32Array, n: number, d: number): Float32Array {
  const ma = meanRows(a, n, d);
  const mb = meanRows(b, b.length / d, d);
  return Float32Array.from(ma, (x, i) => x - mb[i]!);
}

export interface PcaResult {
  /** Unit vector, sign-corrected so that set A projects higher in most pairs. */
  readonly direction: Float32Array;
  /** Share of the centred differences' variance along the direction (0..1). */
  readonly explainedVariance: number;
  /** Whether the sign was flipped by the pair vote. */
  readonly flipped: boolean;
}

/**
 * repeng's `pca_diff`: first principal component of the paired differences `a_i - b_i` (both
 * `[n, d]`, row i of A paired with row i of B), then its sign rule.
 */
export function pcaOfDifferences(a: Float32Array, b: Float32Array, n: number, d: number): PcaResult {
  if (n < 2) throw new RangeError(`PCA of differences needs at least 2 pairs, got ${n}`);
  const diff = new Float64Array(n * d);
  for (let k = 0; k < n * d; k++) diff[k] = a[k]! - b[k]!;
  const mean = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) mean[i]! += diff[r * d + i]!;
  for (let i = 0; i < d; i++) mean[i]! /= n;
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) diff[r * d + i]! -= mean[i]!;
  const { vector, value, trace } = topComponent(diff, n, d);
  if (!(value > 0)) throw new RangeError("the paired differences have no variance: PCA of differences is undefined (are the two sets identical up to a constant shift?)");
  // repeng's sign: project the uncentred residuals of both sets; count pairs where A is above / below B.
  let above = 0;
  let below = 0;
  for (let r = 0; r < n; r++) {
    let pa = 0;
    let pb = 0;
    for (let i = 0; i < d; i++) {
      pa += a[r * d + i]! * vector[i]!;
      pb += b[r * d + i]! * vector[i]!;
    }
    if (pa > pb) above++;
    else if (pa < pb) below++;
  }
  const flipped = below > above;
  return { direction: Float32Array.from(vector, (x) => (flipped ? -x : x)), explainedVariance: value / trace, flipped };
}

/**
 * The top eigenvector of `XᵀX` for centred rows X ([n, d], float64), its eigenvalue and the trace.
 * Power iteration on whichever Gram matrix is smaller; throws when it does not converge (the top
 * eigenvalue is not separated from the next one, so no single direction exists).
 */
export function topComponent(x: Float64Array, n: number, d: number): { vector: Float64Array; value: number; trace: number } {
  const useCov = d <= n;
  const m = useCov ? d : n;
  const g = new Float64Array(m * m);
  if (useCov) {
    for (let r = 0; r < n; r++) {
      const off = r * d;
      for (let i = 0; i < d; i++) {
        const xi = x[off + i]!;
        if (xi === 0) continue;
        for (let j = i; j < d; j++) g[i * d + j]! += xi * x[off + j]!;
      }
    }
  } else {
    for (let r = 0; r < n; r++) {
      for (let s = r; s < n; s++) {
        let acc = 0;
        for (let i = 0; i < d; i++) acc += x[r * d + i]! * x[s * d + i]!;
        g[r * n + s] = acc;
      }
    }
  }
  for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) g[i * m + j] = g[j * m + i]!;
  let trace = 0;
  for (let i = 0; i < m; i++) trace += g[i * m + i]!;
  if (!(trace > 0)) return { vector: new Float64Array(d), value: 0, trace: 0 };
  // Fixed start: not orthogonal to the top eigenvector except by measure-zero accident.
  let v = Float64Array.from({ length: m }, (_, i) => 1 + ((i * 0.6180339887498949) % 1));
  normalize(v);
  let value = 0;
  let converged = false;
  const next = new Float64Array(m);
  for (let it = 0; it < 10_000; it++) {
    for (let i = 0; i < m; i++) {
      let acc = 0;
      for (let j = 0; j < m; j++) acc += g[i * m + j]! * v[j]!;
      next[i] = acc;
    }
    value = normalize(next);
    let delta = 0;
    for (let i = 0; i < m; i++) delta = Math.max(delta, Math.abs(next[i]! - v[i]!));
    v = Float64Array.from(next);
    if (delta < 1e-12) {
      converged = true;
      break;
    }
  }
  if (!converged) throw new RangeError("PCA did not converge: the top two principal components have (nearly) equal variance, so no single direction is defined");
  if (useCov) return { vector: v, value, trace };
  // From the n x n Gram matrix's eigenvector u: the component is Xᵀu, normalized.
  const w = new Float64Array(d);
  for (let r = 0; r < n; r++) for (let i = 0; i < d; i++) w[i]! += x[r * d + i]! * v[r]!;
  normalize(w);
  return { vector: w, value, trace };
}

function normalize(v: Float64Array): number {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
  const n = Math.sqrt(ss);
  if (n > 0) for (let i = 0; i < v.length; i++) v[i]! /= n;
  return n;
}

export function norm(v: ArrayLike<number>): number {
  let ss = 0;
  for (let i = 0; i < v.length; i++) ss += v[i]! * v[i]!;
  return Math.sqrt(ss);
}

export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  for (let i = 0; i < a.length; i++) ab += a[i]! * b[i]!;
  return ab / (norm(a) * norm(b));
}

export interface Separation {
  /** Mean projection of set A's rows onto the unit direction. */
  readonly meanA: number;
  readonly meanB: number;
  /** (meanA - meanB) / pooled standard deviation (sample variances, averaged): Cohen's d. */
  readonly d: number;
  /** Share of rows a threshold halfway between the two means puts on their own set's side. */
  readonly accuracy: number;
}

/** How well the direction separates the two sets' rows (both `[*, d]`). */
export function separation(direction: ArrayLike<number>, a: Float32Array, b: Float32Array, d: number): Separation {
  const u = norm(direction);
  const project = (x: Float32Array) => {
    const n = x.length / d;
    const out = new Float64Array(n);
    for (let r = 0; r < n; r++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += x[r * d + i]! * direction[i]!;
      out[r] = s / u;
    }
    return out;
  };
  const pa = project(a);
  const pb = project(b);
  const stats = (p: Float64Array) => {
    let m = 0;
    for (const x of p) m += x;
    m /= p.length;
    let v = 0;
    for (const x of p) v += (x - m) ** 2;
    return { mean: m, variance: p.length > 1 ? v / (p.length - 1) : 0 };
  };
  const sa = stats(pa);
  const sb = stats(pb);
  const pooled = Math.sqrt((sa.variance + sb.variance) / 2);
  const mid = (sa.mean + sb.mean) / 2;
  const sign = sa.mean >= sb.mean ? 1 : -1;
  let right = 0;
  for (const x of pa) if (sign * (x - mid) > 0) right++;
  for (const x of pb) if (sign * (x - mid) < 0) right++;
  return { meanA: sa.mean, meanB: sb.mean, d: pooled > 0 ? (sa.mean - sb.mean) / pooled : sa.mean === sb.mean ? 0 : Math.sign(sa.mean - sb.mean) * Infinity, accuracy: right / (pa.length + pb.length) };
}
