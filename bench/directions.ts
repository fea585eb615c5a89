/**
 * Directions benchmark (issue 11), two numbers on the 271M random llama (bench/make-random-gguf.ts):
 *
 * 1. `abliterate` wall time: one direction projected out of token_embd, 16 attn_output and 16
 *    ffn_down (F16 in, F16 out), every other tensor copied; plus a check that llama.cpp loads the
 *    result and runs a prefill.
 * 2. Extraction throughput: `extractDirections` (a read-only plugin at every resid_post, positions
 *    "last") vs a plain prefill of the same prompts through `generate` (maxTokens 1, no plugins),
 *    prompts/s, on llama.cpp. Rounds interleave the two in alternating order; medians. Aim: >= 0.9x.
 *
 *   bun bench/directions.ts [--model bench/models/random-d1024-l16-f16.gguf] [--rounds 5]
 *                           [--prompts 16] [--words 48] [--threads 2]
 *
 * Random weights: costs do not depend on the values.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import { generate } from "../src/core/generate.ts";
import { abliterate } from "../src/directions/abliterate.ts";
import { extractDirections } from "../src/directions/extract.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    rounds: { type: "string", default: "5" },
    prompts: { type: "string", default: "16" },
    words: { type: "string", default: "48" },
    threads: { type: "string", default: "2" },
  },
});
const rounds = Number(args.rounds), nPrompts = Number(args.prompts), nWords = Number(args.words), threads = Number(args.threads);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), "steerkit-bench-directions-"));
try {
  // 1. abliterate
  const d = 1024;
  const direction = { vector: Float32Array.from({ length: d }, (_, i) => Math.sin(i * 1.3)), byPoint: new Map(), width: d };
  const out = join(dir, "abliterated.gguf");
  const times: number[] = [];
  let report;
  for (let r = 0; r < Math.min(rounds, 3); r++) {
    const t0 = performance.now();
    report = abliterate(args.model, out, direction);
    times.push((performance.now() - t0) / 1000);
  }
  console.log(`abliterate (${report!.edited.length} tensors ${[...new Set(report!.edited.map((e) => `${e.from}->${e.to}`))].join(", ")}, ${report!.copied} copied): ` +
    `median ${median(times).toFixed(2)} s of ${times.map((t) => t.toFixed(2)).join(", ")}; max abs error ${report!.maxAbsError.toExponential(2)}`);
  const check = await llamaCpp.load(out, { contextLength: 256, threads });
  const res = await generate(check, { prompt: "Once upon a time", maxTokens: 4, temperature: 0 });
  console.log(`llama.cpp loads the abliterated model: ${res.tokens.length} tokens generated`);
  check.dispose();
  rmSync(out);

  // 2. extraction vs plain prefill
  const model = await llamaCpp.load(args.model, { contextLength: 512, threads });
  const words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "went", "home", "to", "sleep", "under", "blue", "sky"];
  const prompt = (seed: number) => Array.from({ length: nWords }, (_, i) => words[(seed * 7 + i * (seed + 3)) % words.length]).join(" ");
  const setA = Array.from({ length: nPrompts / 2 }, (_, i) => prompt(i));
  const setB = Array.from({ length: nPrompts / 2 }, (_, i) => prompt(i + 100));
  const all = [...setA, ...setB];
  const plain = async () => {
    for (const p of all) await generate(model, { prompt: p, maxTokens: 1, temperature: 0, ignoreEos: true });
  };
  const extract = async () => {
    await extractDirections(model, setA, setB, { points: ["resid_post.*"] });
  };
  const rate = { plain: [] as number[], extract: [] as number[] };
  await plain();
  await extract();
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? (["plain", "extract"] as const) : (["extract", "plain"] as const);
    for (const which of order) {
      const t0 = performance.now();
      await (which === "plain" ? plain() : extract());
      rate[which].push(all.length / ((performance.now() - t0) / 1000));
      await Bun.sleep(250);
    }
  }
  const tokens = model.tokenize(all[0]!).length;
  const p = median(rate.plain), e = median(rate.extract);
  console.log(`extraction vs plain prefill (${all.length} prompts of ~${tokens} tokens, resid_post.0-15, llama.cpp, ${threads} threads, ${rounds} rounds):`);
  console.log(`| | prompts/s | ratio |\n|---|---:|---:|\n| plain prefill | ${p.toFixed(2)} | 1.00 |\n| extractDirections | ${e.toFixed(2)} | ${(e / p).toFixed(2)} |`);
  model.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
