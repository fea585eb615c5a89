/**
 * What both training roads take and give: Steerkit's TypeScript trainer (`trainLlama`, llama.ts) and
 * llama.cpp's training API (`finetune`, src/adapters/llama-cpp/train.ts). One shape, so a script can
 * switch roads with one flag (scripts/stories260K-chat/train.ts does).
 */

export interface TrainingSchedule {
  /** Tokens per training window; every window holds `window + 1` tokens (inputs and next-token labels). */
  readonly window: number;
  readonly epochs: number;
  /** AdamW learning rate at the first step, decaying linearly to `learningRateEnd` at the last. */
  readonly learningRate: number;
  readonly learningRateEnd?: number;
  readonly weightDecay?: number;
  /** Seeds the order of the windows in each epoch. */
  readonly seed: number;
  /**
   * Per-position loss weights, one array of `window` weights per training window: weight r scales the
   * loss of predicting token r + 1 from tokens 0..r. A step then follows the gradient of
   * `sum_r w[r] * loss_r / window`: 0 masks a position, and weights averaging 1 over the data keep
   * the step size of the unweighted loss. Omitted: every position weighs 1.
   */
  readonly lossWeights?: readonly Float32Array[];
  /** Called after every optimizer step with the step's training loss. */
  readonly onStep?: (step: number, steps: number, loss: number) => void;
}

export interface TrainingResult {
  readonly steps: number;
  /** Mean training loss (nats per token, weighted as trained) of each epoch. */
  readonly trainLoss: number[];
  /** Mean loss on the validation windows after each epoch (empty without validation windows). */
  readonly validationLoss: number[];
  readonly seconds: number;
}

/**
 * Check loss weights against their windows; `fail` throws the caller's error. A window whose weights
 * are all zero is refused too: it has nothing to learn, yet AdamW's momentum would still move the weights.
 * @example
 * ```ts
 * checkLossWeights("lossWeights", options.lossWeights, windows.length, 256, (m) => { throw new Error(m); });
 * ```
 */
export function checkLossWeights(name: string, weights: readonly Float32Array[] | undefined, count: number, window: number, fail: (message: string) => never): void {
  if (!weights) return;
  if (weights.length !== count) fail(`${name} has ${weights.length} arrays, expected one per window (${count})`);
  weights.forEach((w, i) => {
    if (w.length !== window) fail(`${name}[${i}] has ${w.length} weights, expected window = ${window}`);
    const bad = w.findIndex((x) => !Number.isFinite(x) || x < 0);
    if (bad >= 0) fail(`${name}[${i}][${bad}] is ${w[bad]}: weights must be finite and >= 0`);
    if (!w.some((x) => x > 0)) fail(`${name}[${i}] are all zero: window ${i} has nothing to learn (drop it)`);
  });
}
