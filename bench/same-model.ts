/**
 * The same model on both backends: a random-weight llama GGUF of realistic width on llama.cpp, and
 * its `steerkit convert` ONNX export on ONNX Runtime, through core `generate` (what a user calls).
 * Decode tokens/s unsteered and with an additive recipe at every block output (native paths, and
 * JS hooks), as ratios against llama.cpp unsteered measured in the same run.
 *
 *   bun bench/same-model.ts [--gguf bench/models/random-d1024-l16-f16.gguf] [--tokens 32] [--rounds 3] [--threads 2]
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import { onnx } from "../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../src/convert/gguf-to-onnx.ts";
import type { Model } from "../src/core/backend.ts";
import { generate } from "../src/core/generate.ts";
import type { ConfiguredPlugin } from "../src/core/plugin.ts";
import { addVector } from "../src/plugins/index.ts";

const { values: args } = parseArgs({
  options: {
    gguf: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    tokens: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
  },
});
const gguf = args.gguf!;
if (!existsSync(gguf)) {
  console.error(`${gguf} does not exist: run \`bun bench/make-random-gguf.ts\` first`);
  process.exit(1);
}
const onnxDir = gguf.replace(/\.gguf$/, "-onnx");
if (!existsSync(join(onnxDir, "model.onnx"))) {
  console.error(`converting ${gguf} -> ${onnxDir}`);
  await convertGgufToOnnx(gguf, onnxDir);
}
const threads = Number(args.threads);
const tokens = Number(args.tokens);
const models: [string, Model][] = [
  ["llama.cpp", await llamaCpp.load(gguf, { threads })],
  ["ONNX Runtime (converted)", await onnx.load(onnxDir, { threads })],
];
const d = models[0]![1].info.dModel;
const vector = Array.from({ length: d }, (_, i) => Math.sin(i) * 0.1);
const steer = (m: Model): ConfiguredPlugin[] => [addVector({ points: Array.from({ length: m.info.nLayers }, (_, l) => `resid_post.${l}`), vector })];

type Row = { backend: string; recipe: string; best: number };
const rows: Row[] = [];
const RECIPES = ["unsteered", "add-vector at every block output (native path)", "add-vector at every block output (JS hooks)"];
for (const [name] of models) for (const recipe of RECIPES) rows.push({ backend: name, recipe, best: 0 });

for (let round = 0; round < Number(args.rounds); round++) {
  for (const row of rows) {
    const model = models.find(([n]) => n === row.backend)![1];
    const r = await generate(model, {
      tokens: Array.from({ length: 16 }, (_, i) => 300 + i),
      maxTokens: tokens,
      temperature: 0,
      ignoreEos: true,
      plugins: row.recipe === "unsteered" ? [] : steer(model),
      fastPath: !row.recipe.includes("JS"),
    });
    row.best = Math.max(row.best, r.timings.tokensPerSecond);
  }
}
const base = rows[0]!.best;
console.log(`\nSame model on both backends: ${models[0]![1].info.name}, ${threads} threads, ${tokens} decode tokens, best of ${args.rounds} rounds\n`);
console.log("| backend | recipe | decode tok/s | vs llama.cpp unsteered |");
console.log("|---|---|---:|---:|");
for (const r of rows) console.log(`| ${r.backend} | ${r.recipe} | ${r.best.toFixed(1)} | ${(r.best / base).toFixed(2)} |`);
for (const [, m] of models) m.dispose();
