/**
 * Batched decoding on ONNX Runtime: aggregate decode tokens/s with N concurrent sequences on the
 * batched view (`model.batched`: one session.run per step for all N, src/adapters/onnx/batch.ts)
 * vs one session.run per sequence per step (`createSequence`), same export, same run; plus the
 * batched view with half the sequences carrying a JS hook at every layer and half an in-graph
 * affine edit at every layer. The ratio batched / one-each is what batching B rows costs in ORT per
 * step against B single runs.
 *
 *   bun bench/make-random-gguf.ts && bun bench/onnx.ts --converted   # once: bench/models/random-d1024-l16-f16-onnx
 *   bun bench/batched-onnx.ts [--onnx <export dir>] [--threads 2] [--prompt 32] [--decode 16] [--n 1,2,4,8] [--rounds 2]
 *   STEERKIT_BENCH_ONNX=<export dir> bun bench/batched.ts ...   # the same table after the llama.cpp one
 *
 * Prefill and decode are separate phases (as in bench/batched.ts): every prompt goes in first,
 * then each sequence decodes `--decode` tokens greedily; aggregate = N × decode / the decode
 * phase's wall time. Configurations alternate order every other round; the table shows medians.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { onnx } from "../src/adapters/onnx/index.ts";
import type { Model, Sequence } from "../src/core/backend.ts";
import { compileChain } from "../src/core/chain.ts";
import { argmax } from "../src/core/tensor.ts";
import { progressBar } from "../src/cli/progress.ts";
import { everyLayerSteering } from "./lib/shared.ts";

export interface OnnxBatchedBenchOptions {
  readonly dir: string;
  readonly threads: number;
  readonly nPrompt: number;
  readonly nDecode: number;
  readonly Ns: readonly number[];
  readonly rounds: number;
}

/** Runs the ONNX batched bench and returns its table (markdown lines). */
export async function runOnnxBatchedBench(o: OnnxBatchedBenchOptions): Promise<string[]> {
  const model = await onnx.load(o.dir, { threads: o.threads, contextLength: o.nPrompt + o.nDecode + 8 });
  if (!model.batched) throw new Error(`${o.dir}: this export cannot batch: ${model.batchRefusal}`);
  const { nLayers, dModel, vocabSize } = model.info;
  const recipeOf = everyLayerSteering(nLayers, dModel);
  const prompt = (i: number) => Array.from({ length: o.nPrompt }, (_, k) => 1 + ((i * 31 + k * 7) % Math.min(500, vocabSize - 1)));

  /** Tokens/s of the decode phase with n sequences of `m`, all calls of a step in flight together. */
  const drive = async (m: Model, n: number, steered: boolean): Promise<number> => {
    const seqs: Sequence[] = [];
    const last: number[] = [];
    try {
      for (let i = 0; i < n; i++) seqs.push(m.createSequence({ hooks: compileChain(recipeOf(steered, i), m, { promptTokens: prompt(i) }).residual }));
      await Promise.all(seqs.map(async (s, i) => (last[i] = argmax(await s.prefill(prompt(i))))));
      const t0 = performance.now();
      for (let k = 0; k < o.nDecode; k++) await Promise.all(seqs.map(async (s, i) => (last[i] = argmax(await s.decode(last[i]!)))));
      return (n * o.nDecode * 1000) / (performance.now() - t0);
    } finally {
      for (const s of seqs) s.free();
    }
  };

  type Config = "batched" | "steered" | "single";
  const configs: Config[] = ["batched", "steered", "single"];
  const results = new Map<string, number[]>();
  await drive(model, 1, false); // warm-up: fault the weights in
  const bar = progressBar(o.rounds * o.Ns.length * configs.length, "onnx batched bench");
  for (let r = 0; r < o.rounds; r++) {
    for (const n of o.Ns) {
      const view = model.batched({ sequences: n });
      for (const c of r % 2 ? [...configs].reverse() : configs) {
        const tps = c === "single" ? await drive(model, n, false) : await drive(view, n, c === "steered");
        results.set(`${c}:${n}`, [...(results.get(`${c}:${n}`) ?? []), tps]);
        bar.tick(1, `N=${n} ${c}`);
      }
      view.dispose();
    }
  }
  bar.done();
  model.dispose();
  const med = (c: Config, n: number) => {
    const xs = [...(results.get(`${c}:${n}`) ?? [])].sort((a, b) => a - b);
    return xs[Math.floor(xs.length / 2)] ?? NaN;
  };
  const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
  const lines = [
    `ONNX Runtime: ${model.info.name} (${o.dir}), threads ${o.threads}, prompt ${o.nPrompt}, decode ${o.nDecode}, rounds ${o.rounds}`,
    "",
    "| N | batched t/s | steered t/s | steered vs batched | one session.run each t/s | batched vs one each | batched vs batched N=1 |",
    "|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const n of o.Ns) {
    const b = med("batched", n), s = med("steered", n), one = med("single", n);
    lines.push(`| ${n} | ${fmt(b)} | ${fmt(s)} | ${fmt(s / b, 2)} | ${fmt(one)} | ${fmt(b / one, 2)} | ${fmt(b / med("batched", o.Ns[0]!), 2)} |`);
  }
  return lines;
}

if (import.meta.main) {
  const { values: args } = parseArgs({
    options: {
      onnx: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16-onnx") },
      threads: { type: "string", default: "2" },
      prompt: { type: "string", default: "32" },
      decode: { type: "string", default: "16" },
      n: { type: "string", default: "1,2,4,8" },
      rounds: { type: "string", default: "2" },
    },
  });
  if (!existsSync(args.onnx!)) {
    console.error(`${args.onnx} does not exist: run \`bun bench/make-random-gguf.ts && bun bench/onnx.ts --converted\` first, or pass --onnx <export dir>`);
    process.exit(1);
  }
  const lines = await runOnnxBatchedBench({ dir: args.onnx!, threads: Number(args.threads), nPrompt: Number(args.prompt), nDecode: Number(args.decode), Ns: args.n!.split(",").map(Number), rounds: Number(args.rounds) });
  console.log(`\n${lines.join("\n")}`);
}
