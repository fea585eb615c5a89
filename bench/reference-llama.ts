/**
 * Reference backend speed on stories260K: decode ms/token at a few context positions, prefill
 * tokens/s, and the cost of a JS hook at every point vs native affine edits at every point.
 *
 *   bun bench/reference-llama.ts
 */
import { join } from "node:path";
import type { AffineEdit, Model, ResidualHooks } from "../src/core/backend.ts";
import { allPoints, pointName } from "../src/core/sites.ts";
import { argmax } from "../src/core/tensor.ts";
import { loadReferenceLlama } from "../src/testing/reference-llama.ts";

const model: Model = loadReferenceLlama(join(import.meta.dir, "../models/stories260K.gguf"), { contextLength: 512 });
const d = model.info.dModel;
const points = allPoints(model.info.nLayers);

function jsEverywhere(): ResidualHooks {
  const c = new Float32Array(d).fill(0.001);
  return {
    points, affine: new Map(), writes: true, readOnly: new Set(), error: null,
    run(_p, x) {
      for (let off = 0; off < x.data.length; off += d) for (let i = 0; i < d; i++) x.data[off + i] = x.data[off + i]! + c[i]!;
      return x;
    },
  };
}
function affineEverywhere(): ResidualHooks {
  const c = new Float32Array(d).fill(0.001);
  return { points, affine: new Map(points.map((p) => [pointName(p), { point: p, rank: 0, U: null, V: null, c } as AffineEdit])), writes: true, readOnly: new Set(), error: null, run: (_p, x) => x };
}

async function decodeMs(hooks: ResidualHooks | undefined, steps: number): Promise<number[]> {
  const seq = model.createSequence({ hooks });
  let logits = await seq.prefill(model.tokenize("Once upon a time"));
  const perWindow: number[] = [];
  let t0 = performance.now();
  for (let i = 1; i <= steps; i++) {
    logits = await seq.decode(argmax(logits));
    if (i % 100 === 0) {
      perWindow.push((performance.now() - t0) / 100);
      t0 = performance.now();
    }
  }
  seq.free();
  return perWindow;
}

// The machine is shared and the JIT warms up over the first runs: interleave the configurations and
// keep each one's best round.
const configs: [string, () => ResidualHooks | undefined][] = [
  ["unhooked", () => undefined],
  [`JS hook at all ${points.length} points`, jsEverywhere],
  [`affine at all ${points.length} points`, affineEverywhere],
];
const best = configs.map(() => [Infinity, Infinity, Infinity, Infinity]);
for (let round = 0; round < 8; round++) {
  for (let c = 0; c < configs.length; c++) {
    const ms = await decodeMs(configs[c]![1](), 400);
    ms.forEach((x, i) => (best[c]![i] = Math.min(best[c]![i]!, x)));
  }
}
console.log(`decode ms/token (best of 8 rounds) over positions 5-105 / 105-205 / 205-305 / 305-405:`);
configs.forEach(([name], c) => {
  const row = best[c]!;
  const ratio = c === 0 ? "" : `  (x${(row[0]! / best[0]![0]!).toFixed(2)} of unhooked at the start)`;
  console.log(`  ${name.padEnd(28)} ${row.map((x) => x.toFixed(3)).join(" / ")}${ratio}`);
});

const prompt = new Array(256).fill(0).map((_, i) => 259 + (i % 200));
const seq = model.createSequence();
const t0 = performance.now();
await seq.prefill(prompt);
const ms = performance.now() - t0;
console.log(`prefill of ${prompt.length} tokens: ${ms.toFixed(1)} ms (${((prompt.length / ms) * 1000).toFixed(0)} tokens/s)`);
