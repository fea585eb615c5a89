/**
 * What checking a GGUF's weights for NaN / ±Inf costs next to opening the model (issue 8): the
 * llama.cpp adapter's load to first logits (validate the header, llama.cpp maps the file, one 8-token
 * prefill, dispose) with no weight check, against the same with the default check (1-D tensors only)
 * and with the full scan (`checkWeights: "all"`), and the scans alone. Warm page cache (every
 * variant runs once before timing), rounds in a fresh shuffled order; the table shows medians and
 * the ratio to the unchecked load of the same run.
 *
 *   bun bench/weights-scan.ts [--model bench/models/random-d1024-l16-f16.gguf] [--rounds 5]
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadModel } from "../src/adapters/llama-cpp/index.ts";
import { readGgufHeader } from "../src/formats/gguf.ts";
import { scanGgufWeights, type WeightCheck } from "../src/formats/gguf-scan.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    rounds: { type: "string", default: "5" },
  },
});
const path = args.model!;
if (!existsSync(path)) throw new Error(`${path} not found: make it with bun bench/make-random-gguf.ts`);
const rounds = Number(args.rounds);

async function loadToLogits(checkWeights: WeightCheck): Promise<void> {
  const m = loadModel(path, { checkWeights, contextLength: 64, threads: 2 });
  try {
    const seq = m.createSequence();
    await seq.prefill([1, 2, 3, 4, 5, 6, 7, 8]);
    seq.free();
  } finally {
    m.dispose();
  }
}

const file = readGgufHeader(path);
const variants: Record<string, () => Promise<void> | void> = {
  "load to first logits, no weight check": () => loadToLogits("none"),
  "load to first logits, default check (1-D tensors)": () => loadToLogits("small"),
  "load to first logits, full scan (checkWeights: all)": () => loadToLogits("all"),
  "1-D tensor scan alone": () => void scanGgufWeights(file, { tensors: (t) => t.dims.length <= 1 }),
  "full scan alone": () => void scanGgufWeights(file),
};
const names = Object.keys(variants);
const times = new Map<string, number[]>(names.map((n) => [n, []]));
for (const n of names) await variants[n]!(); // warm the page cache and the library
for (let r = 0; r < rounds; r++) {
  const order = [...names].sort(() => Math.random() - 0.5);
  for (const n of order) {
    const t = performance.now();
    await variants[n]!();
    times.get(n)!.push(performance.now() - t);
  }
  process.stderr.write(`round ${r + 1}/${rounds}\r`);
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const base = median(times.get(names[0]!)!);
const mb = (file.tensors.reduce((s, t) => s + t.byteLength, 0) / 1e6).toFixed(0);
console.log(`\n${path} (${file.tensors.length} tensors, ${mb} MB of weights), ${rounds} rounds, warm cache`);
console.log(`| variant | median ms | vs unchecked load |`);
console.log(`|---|---:|---:|`);
for (const n of names) console.log(`| ${n} | ${median(times.get(n)!).toFixed(1)} | ${(median(times.get(n)!) / base).toFixed(2)}x |`);
