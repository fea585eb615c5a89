/**
 * Writes a seeded random-weight GGUF of any architecture Steerkit hooks (src/testing/random-gguf.ts
 * lays it out as llama.cpp's converter does). Benchmark models are never committed: the default
 * output is under bench/models/, which is gitignored. The 1.2 MB stories260K is too small to show
 * what hooks cost next to real matrix work.
 *
 *   bun bench/make-random-gguf.ts [--arch llama] [--size bench|tiny] [--seed 1] [--out <file>]
 *       [--d 1024] [--layers 16] [--ff 2816] [--heads 16] [--kv-heads 16] [--head-dim <d/heads>]
 *       [--vocab-size 32000] [--vocab stories|bpe] [--ctx 4096] [--type f16|f32]
 *
 * `--size bench` (default) is the 271M-parameter model the benchmarks use (d 1024, 16 layers, ff 2816,
 * 16 heads, vocabulary padded to 32000 (llama: stories' SentencePiece), f16 matrices, context 4096); `--size tiny` is what the tests
 * generate (d 64, 3-6 layers, f32). Explicit flags override either.
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { progressBar, type ProgressBar } from "../src/cli/progress.ts";
import { readGgufHeader } from "../src/formats/gguf.ts";
import { MORE_RANDOM_GGUF_ARCHITECTURES, RANDOM_GGUF_ARCHITECTURES, writeRandomGguf, type RandomGgufArchitecture, type RandomGgufOptions } from "../src/testing/random-gguf.ts";

const { values: args } = parseArgs({
  options: {
    arch: { type: "string", default: "llama" },
    size: { type: "string", default: "bench" },
    seed: { type: "string" },
    out: { type: "string" },
    d: { type: "string" },
    layers: { type: "string" },
    ff: { type: "string" },
    heads: { type: "string" },
    "kv-heads": { type: "string" },
    "head-dim": { type: "string" },
    "vocab-size": { type: "string" },
    vocab: { type: "string" },
    ctx: { type: "string" },
    type: { type: "string" },
  },
});

const arch = args.arch as RandomGgufArchitecture;
const known: readonly string[] = [...RANDOM_GGUF_ARCHITECTURES, ...MORE_RANDOM_GGUF_ARCHITECTURES];
if (!known.includes(arch)) {
  console.error(`--arch ${args.arch}: unknown (one of ${known.join(", ")})`);
  process.exit(2);
}
if (args.size !== "bench" && args.size !== "tiny") {
  console.error(`--size ${args.size}: expected bench or tiny`);
  process.exit(2);
}
if (args.vocab !== undefined && args.vocab !== "stories" && args.vocab !== "bpe") {
  console.error(`--vocab ${args.vocab}: expected stories or bpe`);
  process.exit(2);
}
if (args.type !== undefined && args.type !== "f16" && args.type !== "f32") {
  console.error(`--type ${args.type}: expected f16 or f32`);
  process.exit(2);
}
const num = (flag: string, v: string | undefined): number | undefined => {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) {
    console.error(`--${flag} ${v}: expected a non-negative integer`);
    process.exit(2);
  }
  return n;
};

const bench = args.size === "bench";
const options: RandomGgufOptions = {
  arch,
  seed: num("seed", args.seed),
  nEmbd: num("d", args.d) ?? (bench ? 1024 : undefined),
  nLayers: num("layers", args.layers) ?? (bench ? 16 : undefined),
  nFf: num("ff", args.ff) ?? (bench ? (arch === "gpt2" || arch === "phi2" ? 4096 : 2816) : undefined),
  nHead: num("heads", args.heads) ?? (bench ? 16 : undefined),
  nHeadKv: num("kv-heads", args["kv-heads"]) ?? (bench ? 16 : undefined),
  headDim: num("head-dim", args["head-dim"]),
  vocabSize: num("vocab-size", args["vocab-size"]) ?? (bench ? 32000 : undefined),
  // The benchmark llama keeps stories' SentencePiece vocabulary (padded), as it always had: every
  // bench (and `steerkit convert` of it) reads the same tokenizer as before.
  vocab: (args.vocab as "stories" | "bpe" | undefined) ?? (bench && arch === "llama" ? "stories" : undefined),
  nCtx: num("ctx", args.ctx) ?? (bench ? 4096 : undefined),
  weightType: (args.type as "f16" | "f32" | undefined) ?? (bench ? "f16" : "f32"),
};
const out = args.out ?? join(import.meta.dir, "models", arch === "llama" && bench && !args.d && !args.layers
  ? "random-d1024-l16-f16.gguf"
  : `random-${arch}-${args.size}-seed${options.seed ?? 1}.gguf`);
const started = performance.now();
let bar: ProgressBar | undefined;
const m = writeRandomGguf(out, options, (done, total) => {
  bar ??= progressBar(total, `writing ${arch}`);
  bar.update(done);
});
bar?.done();
const file = readGgufHeader(out); // validates what was written
console.log(
  `wrote ${out} (${arch}, d ${m.config.nEmbd}, ${m.config.nLayers} layers, ${(file.fileSize / 1e6).toFixed(1)} MB, ` +
    `${(m.params / 1e6).toFixed(1)}M params, ${file.tensors.length} tensors, ${((performance.now() - started) / 1000).toFixed(1)} s)`,
);
