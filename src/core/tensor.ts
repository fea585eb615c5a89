/**
 * Tensors are plain typed-array views: a `Float32Array` plus its dims, row-major.
 * Residuals are `[tokens, dModel]`, logits are `[vocab]` for one position.
 *
 * The vector helpers below are the few that steering needs. They are plain loops over
 * typed arrays on purpose: hooks run once per layer per step inside a native forward pass,
 * so nothing here allocates unless it says so.
 */

export interface Tensor {
  /** Row-major values. A residual hook may edit them in place. */
  readonly data: Float32Array;
  /** Shape, outermost first: `[tokens, dModel]` for residuals, `[vocab]` for logits. */
  readonly dims: readonly number[];
}

export function tensor(data: Float32Array, dims: readonly number[]): Tensor {
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new RangeError(`tensor: dims [${dims.join(", ")}] hold ${size} values, data has ${data.length}`);
  }
  return { data, dims };
}

/** Row `i` of a `[rows, cols]` tensor, as a view (no copy). */
export function row(t: Tensor, i: number): Float32Array {
  const cols = t.dims[t.dims.length - 1]!;
  return t.data.subarray(i * cols, (i + 1) * cols);
}

export function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  if (b.length !== n) throw new RangeError(`dot: lengths differ (${n} vs ${b.length})`);
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i]! * b[i]!;
  return s;
}

/** y += alpha * x, in place. */
export function axpy(alpha: number, x: ArrayLike<number>, y: Float32Array): Float32Array {
  const n = y.length;
  if (x.length !== n) throw new RangeError(`axpy: lengths differ (${x.length} vs ${n})`);
  for (let i = 0; i < n; i++) y[i] = y[i]! + alpha * x[i]!;
  return y;
}

export function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/** A unit-length copy of `v` (allocates; call it when a plugin is created, not per step). */
export function normalize(v: ArrayLike<number>): Float32Array {
  const n = norm(v);
  if (!(n > 0) || !Number.isFinite(n)) throw new RangeError(`normalize: vector norm is ${n}`);
  const out = new Float32Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = v[i]! / n;
  return out;
}

/** x -= (x·u)u for a unit vector u, in place; returns the removed coefficient x·u. */
export function projectOut(x: Float32Array, unit: ArrayLike<number>): number {
  const c = dot(x, unit);
  axpy(-c, unit, x);
  return c;
}

/** Apply `projectOut` to every row of a `[tokens, dModel]` residual, in place. */
export function projectOutRows(t: Tensor, unit: ArrayLike<number>): void {
  const d = unit.length;
  const { data } = t;
  for (let off = 0; off < data.length; off += d) {
    let c = 0;
    for (let i = 0; i < d; i++) c += data[off + i]! * unit[i]!;
    for (let i = 0; i < d; i++) data[off + i] = data[off + i]! - c * unit[i]!;
  }
}

/** Add `alpha * v` to every row of a `[tokens, dModel]` residual, in place. */
export function addRows(t: Tensor, v: ArrayLike<number>, alpha = 1): void {
  const d = v.length;
  const { data } = t;
  for (let off = 0; off < data.length; off += d) {
    for (let i = 0; i < d; i++) data[off + i] = data[off + i]! + alpha * v[i]!;
  }
}

/**
 * out = M x for a row-major `[rows, cols]` matrix M and x of length cols.
 * `out` is written, not accumulated; pass a preallocated one on hot paths.
 */
export function matvec(
  m: ArrayLike<number>,
  rows: number,
  cols: number,
  x: ArrayLike<number>,
  out: Float32Array = new Float32Array(rows),
): Float32Array {
  if (m.length !== rows * cols) throw new RangeError(`matvec: matrix has ${m.length} values, expected ${rows}x${cols}`);
  if (x.length !== cols) throw new RangeError(`matvec: vector has ${x.length} values, expected ${cols}`);
  if (out.length !== rows) throw new RangeError(`matvec: output has ${out.length} values, expected ${rows}`);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    const off = r * cols;
    for (let c = 0; c < cols; c++) s += m[off + c]! * x[c]!;
    out[r] = s;
  }
  return out;
}

/**
 * out = xᵀ M for x of length rows and a row-major `[rows, cols]` M (i.e. Mᵀx).
 * Decoding an SAE (`z W_dec`) and encoding rows against column directions both need it.
 */
export function vecmat(
  x: ArrayLike<number>,
  m: ArrayLike<number>,
  rows: number,
  cols: number,
  out: Float32Array = new Float32Array(cols),
): Float32Array {
  if (m.length !== rows * cols) throw new RangeError(`vecmat: matrix has ${m.length} values, expected ${rows}x${cols}`);
  if (x.length !== rows) throw new RangeError(`vecmat: vector has ${x.length} values, expected ${rows}`);
  if (out.length !== cols) throw new RangeError(`vecmat: output has ${out.length} values, expected ${cols}`);
  out.fill(0);
  for (let r = 0; r < rows; r++) {
    const a = x[r]!;
    if (a === 0) continue;
    const off = r * cols;
    for (let c = 0; c < cols; c++) out[c] = out[c]! + a * m[off + c]!;
  }
  return out;
}

/** Index of the largest value (first on ties); -1 for an empty array. */
export function argmax(a: ArrayLike<number>): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < a.length; i++) {
    if (a[i]! > bestValue || best < 0) {
      best = i;
      bestValue = a[i]!;
    }
  }
  return best;
}
