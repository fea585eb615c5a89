/**
 * Confidence intervals for the eval table, 95% throughout:
 * - a proportion over independent items (a refusal rate with one generation per prompt, a
 *   multiple-choice accuracy): the Wilson score interval, which stays inside [0, 1] and behaves at
 *   0% and 100%, where the normal approximation collapses to a zero-width interval;
 * - anything else (perplexity, a ratio of sums; a rate over several seeds per prompt, whose samples
 *   of one prompt are not independent): a percentile bootstrap that resamples items (all of an
 *   item's seeds together), 2000 resamples from a fixed seed, so the table is deterministic.
 * Written here (a few lines each) rather than imported: no small, maintained npm package offers
 * both with a seeded generator.
 */
import { createRng } from "../core/sampling.ts";

export interface Interval {
  readonly low: number;
  readonly high: number;
  readonly method: "wilson" | "bootstrap";
}

const Z95 = 1.959963984540054;

/**
 * Wilson score interval for k successes in n trials (95%).
 * @example
 * ```ts
 * wilson(0, 20); // { low: 0, high: 0.161, method: "wilson" }
 * ```
 */
export function wilson(k: number, n: number): Interval {
  if (n === 0) return { low: NaN, high: NaN, method: "wilson" };
  const p = k / n;
  const z2 = Z95 * Z95;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (Z95 * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / (1 + z2 / n);
  return { low: Math.max(0, centre - half), high: Math.min(1, centre + half), method: "wilson" };
}

/**
 * Percentile bootstrap (95%) of `statistic` over resamples of `items` (with replacement).
 * @example
 * ```ts
 * const texts = [{ logprob: -40, tokens: 20 }, { logprob: -90, tokens: 30 }];
 * bootstrap(texts, (xs) => Math.exp(-sum(xs, "logprob") / sum(xs, "tokens")));
 * ```
 */
export function bootstrap<T>(items: readonly T[], statistic: (sample: readonly T[]) => number, options: { resamples?: number; seed?: number } = {}): Interval {
  const n = items.length;
  if (n === 0) return { low: NaN, high: NaN, method: "bootstrap" };
  const resamples = options.resamples ?? 2000;
  const rng = createRng(options.seed ?? 0x5eed);
  const values = new Float64Array(resamples);
  const sample: T[] = new Array(n);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) sample[i] = items[Math.floor(rng() * n)]!;
    values[r] = statistic(sample);
  }
  values.sort();
  return { low: quantile(values, 0.025), high: quantile(values, 0.975), method: "bootstrap" };
}

/** Linear-interpolated quantile of sorted values. */
function quantile(sorted: Float64Array, q: number): number {
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/**
 * Sum of a numeric field over items.
 * @example
 * ```ts
 * sum([{ tokens: 2 }, { tokens: 3 }], "tokens"); // 5
 * ```
 */
export function sum<K extends string>(items: readonly Record<K, number>[], key: K): number {
  let s = 0;
  for (const x of items) s += x[key];
  return s;
}
