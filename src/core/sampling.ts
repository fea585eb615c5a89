/**
 * Sampling: repetition penalty, temperature, top-k, top-p, min-p, in llama.cpp's order and with its
 * meanings, driven by a seeded PRNG so the same seed on the same backend and chain gives the same
 * tokens. Buffers are allocated once per sampler, not per token.
 *
 * The PRNG is SplitMix32-seeded xoshiro128**: a few lines, well studied, and no npm package adds
 * anything but a dependency for it.
 */

export interface SamplingOptions {
  /** 0 = greedy (argmax). */
  readonly temperature: number;
  /** Keep the k most likely tokens; 0 = off. */
  readonly topK: number;
  /** Keep the smallest set whose probability reaches p; 1 = off. */
  readonly topP: number;
  /** Drop tokens below minP times the top probability; 0 = off. */
  readonly minP: number;
  /** llama.cpp's penalty: positive logits divided, negative multiplied; 1 = off. */
  readonly repetitionPenalty: number;
  /** How many recent tokens the penalty looks at. */
  readonly repetitionWindow: number;
  /** 32-bit seed. */
  readonly seed: number;
}

export type Rng = () => number;

/** xoshiro128** seeded through SplitMix32; returns floats in [0, 1). */
export function createRng(seed: number): Rng {
  let x = seed >>> 0;
  const splitmix = () => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let a = splitmix(), b = splitmix(), c = splitmix(), d = splitmix();
  return () => {
    const result = Math.imul(rotl(Math.imul(b, 5) >>> 0, 7), 9) >>> 0;
    const t = (b << 9) >>> 0;
    c ^= a;
    d ^= b;
    b ^= c;
    a ^= d;
    c ^= t;
    d = rotl(d, 11);
    return result / 4294967296;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export interface Sampler {
  /** Pick the next token. May modify `logits` (penalty) in place. */
  sample(logits: Float32Array, history: readonly number[]): number;
}

export function createSampler(vocabSize: number, o: SamplingOptions): Sampler {
  const rng = createRng(o.seed);
  const index = new Int32Array(vocabSize);
  const prob = new Float64Array(vocabSize);
  const penalized = new Uint8Array(vocabSize);

  return {
    sample(logits, history) {
      const n = logits.length;
      if (o.repetitionPenalty !== 1 && history.length > 0) {
        const from = Math.max(0, history.length - o.repetitionWindow);
        for (let i = from; i < history.length; i++) {
          const t = history[i]!;
          if (t < 0 || t >= n || penalized[t]) continue;
          penalized[t] = 1;
          const l = logits[t]!;
          logits[t] = l > 0 ? l / o.repetitionPenalty : l * o.repetitionPenalty;
        }
        for (let i = from; i < history.length; i++) {
          const t = history[i]!;
          if (t >= 0 && t < n) penalized[t] = 0;
        }
      }
      if (o.temperature <= 0) return argmaxFinite(logits);

      // Candidates: all tokens, or the top k by a partial selection (a full sort of a 150k vocab per token is too slow).
      let m = 0;
      for (let i = 0; i < n; i++) if (logits[i]! > -Infinity) index[m++] = i;
      if (m === 0) throw new RangeError("sampling: every logit is -Infinity or NaN; no token can be chosen");
      const byLogit = (a: number, b: number) => logits[b]! - logits[a]! || a - b;
      if (o.topK > 0 && o.topK < m) {
        selectTop(index, m, o.topK, logits);
        m = o.topK;
      }
      const cand = index.subarray(0, m);
      cand.sort(byLogit);

      const maxLogit = logits[cand[0]!]!;
      let sum = 0;
      for (let i = 0; i < m; i++) {
        const p = Math.exp((logits[cand[i]!]! - maxLogit) / o.temperature);
        prob[i] = p;
        sum += p;
      }
      for (let i = 0; i < m; i++) prob[i] = prob[i]! / sum;

      let keep = m;
      if (o.topP < 1) {
        let cum = 0;
        for (let i = 0; i < m; i++) {
          cum += prob[i]!;
          if (cum >= o.topP) {
            keep = i + 1;
            break;
          }
        }
      }
      if (o.minP > 0) {
        const floor = o.minP * prob[0]!;
        let j = 1;
        while (j < keep && prob[j]! >= floor) j++;
        keep = j;
      }
      let total = 0;
      for (let i = 0; i < keep; i++) total += prob[i]!;
      let r = rng() * total;
      for (let i = 0; i < keep; i++) {
        r -= prob[i]!;
        if (r < 0) return cand[i]!;
      }
      return cand[keep - 1]!;
    },
  };
}

function argmaxFinite(a: Float32Array): number {
  let best = -1;
  let bestValue = -Infinity;
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  if (best < 0) throw new RangeError("sampling: every logit is -Infinity or NaN; no token can be chosen");
  return best;
}

/** Move the k largest (by logit) of index[0..m) into index[0..k), in no particular order (quickselect). */
function selectTop(index: Int32Array, m: number, k: number, logits: Float32Array): void {
  let lo = 0;
  let hi = m - 1;
  const greater = (a: number, b: number) => logits[a]! > logits[b]! || (logits[a] === logits[b] && a < b);
  while (lo < hi) {
    const pivot = index[(lo + hi) >> 1]!;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (greater(index[i]!, pivot)) i++;
      while (greater(pivot, index[j]!)) j--;
      if (i <= j) {
        const t = index[i]!;
        index[i] = index[j]!;
        index[j] = t;
        i++;
        j--;
      }
    }
    if (k - 1 <= j) hi = j;
    else if (k - 1 >= i) lo = i;
    else return;
  }
}
