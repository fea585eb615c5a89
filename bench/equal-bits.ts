/**
 * Both backends at equal bits per weight, on the 271M random llama (bench/make-random-gguf.ts):
 *
 *   f16   GGUF F16 on llama.cpp            vs  ONNX fp16 (weights, activations, KV cache)
 *   8-bit GGUF Q8_0 on llama.cpp           vs  ONNX int8 MatMulNBits (Q8_0 blocks repacked: the same weights)
 *   8-bit GGUF Q8_0 on llama.cpp           vs  ONNX int8-dynamic: DynamicQuantizeLinear + MatMulInteger
 *                                              (onnxruntime's quantize_dynamic layout; Q8_0 re-rounded to
 *                                              per-column scales; optimum layout only)
 *   4-bit GGUF Q4_0 (--pure) on llama.cpp  vs  ONNX int4 MatMulNBits (Q4_0 blocks repacked: the same weights)
 *
 * The quantized GGUFs come from libllama's own quantizer (`steerkit quantize`, `pure` so the output
 * head is Q4_0 too, as the int4 export's is) and the ONNX exports from `steerkit convert --weights`;
 * all are written once next to the input (bench/models/, gitignored). Decode tokens/s through core
 * `generate` (what a user calls), pair by pair, the two backends alternating within each round;
 * ratio = ONNX / llama.cpp from the same rounds. `--profile` adds ONNX Runtime's own per-operator
 * times (enableProfiling) for each export, from a plain session decoding the same tokens.
 *
 * Each ONNX export comes in two layouts: Steerkit's default (standard ops: the attention is
 * MatMul/Softmax/Where) and onnxruntime-genai's (`--layout genai`: GroupQueryAttention, packed q/k/v,
 * Skip norms; fp32 activations only, so no fp16 row).
 *
 *   bun bench/equal-bits.ts [--gguf bench/models/random-d1024-l16-f16.gguf] [--tokens 32] [--rounds 3]
 *       [--threads 2] [--pairs f16,8bit,8bit-dynamic,4bit,4bit-b128] [--layouts optimum,genai] [--profile]
 *       [--llama-cpu auto,icelake,haswell,auto+plain]
 *
 * `--llama-cpu` adds llama.cpp rows on other ggml CPU paths (bench/llama-cpu-path.ts: one prebuilt
 * CPU variant only, and/or without ggml's extra buffer types), each in a child process whose decode
 * rounds interleave with the rest; `auto` is the adapter as users get it, in this process.
 *
 * `4bit-b128` is the faster int4 on ONNX Runtime's kernels: MatMulNBits block 128 (4.25 bits per
 * weight, fewer than Q4_0's 4.5), rounded from the F16 original.
 */
import { existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp, loadLlamaLibrary, quantizeGguf, type QuantType } from "../src/adapters/llama-cpp/index.ts";
import { onnx } from "../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../src/convert/gguf-to-onnx.ts";
import type { WeightFormat } from "../src/convert/quantize-weights.ts";
import type { Model } from "../src/core/backend.ts";
import { generate } from "../src/core/generate.ts";
import { cpuFeatures, type LlamaCpuPath, startLlamaCpuPath } from "./llama-cpu-path.ts";
import { PlainDecoder } from "./ort-decode.ts";

const { values: args } = parseArgs({
  options: {
    gguf: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    tokens: { type: "string", default: "32" },
    rounds: { type: "string", default: "3" },
    threads: { type: "string", default: "2" },
    pairs: { type: "string", default: "f16,8bit,8bit-dynamic,4bit,4bit-b128" },
    layouts: { type: "string", default: "optimum,genai" },
    profile: { type: "boolean", default: false },
    "llama-cpu": { type: "string", default: "auto" },
  },
});
const f16 = args.gguf!;
if (!existsSync(f16)) {
  console.error(`${f16} does not exist: run \`bun bench/make-random-gguf.ts\` first`);
  process.exit(1);
}
const threads = Number(args.threads);
const tokens = Number(args.tokens);
const rounds = Number(args.rounds);
const PROMPT = Array.from({ length: 16 }, (_, i) => 300 + i);
const cpuPaths = args["llama-cpu"]!.split(",");
if (!cpuPaths.includes("auto")) {
  console.error("--llama-cpu must include auto (the adapter's own path, the baseline of every ratio)");
  process.exit(1);
}
const otherPaths = cpuPaths.filter((p) => p !== "auto");
const loadAverage = () => loadavg().map((x) => x.toFixed(1)).join(" ");
const loadAtStart = loadAverage();

interface Pair {
  readonly key: string;
  readonly label: string;
  readonly quant: QuantType | null;
  readonly weights: WeightFormat;
  /** MatMulNBits block size; other than 32 the export is rounded from the F16 original, not repacked. */
  readonly blockSize?: number;
}
const PAIRS: Pair[] = [
  { key: "f16", label: "F16 vs fp16", quant: null, weights: "fp16" },
  { key: "8bit", label: "Q8_0 vs int8", quant: "q8_0", weights: "int8" },
  { key: "8bit-dynamic", label: "Q8_0 vs int8-dynamic (MatMulInteger)", quant: "q8_0", weights: "int8-dynamic" },
  { key: "4bit", label: "Q4_0 (pure) vs int4", quant: "q4_0", weights: "int4" },
  { key: "4bit-b128", label: "Q4_0 (pure, 4.5 bits) vs int4 block 128 (4.25 bits, from F16)", quant: "q4_0", weights: "int4", blockSize: 128 },
];

type Layout = "optimum" | "genai";

/** The GGUF and ONNX export of a pair, made once. */
async function prepare(p: Pair, layout: Layout): Promise<{ gguf: string; onnxDir: string }> {
  const gguf = p.quant ? f16.replace(/(-f16)?\.gguf$/, `-${p.quant}-pure.gguf`) : f16;
  if (p.quant && !existsSync(gguf)) {
    console.error(`quantizing ${f16} -> ${gguf}`);
    quantizeGguf(f16, gguf, { type: p.quant, pure: true, threads });
  }
  const source = p.blockSize ? f16 : gguf;
  const onnxDir = source.replace(/\.gguf$/, `-onnx-${p.weights}${p.blockSize ? `-b${p.blockSize}` : ""}${layout === "genai" ? "-genai" : ""}`);
  if (!existsSync(join(onnxDir, "model.onnx"))) {
    console.error(`converting ${source} -> ${onnxDir} (--weights ${p.weights}${p.blockSize ? ` --block-size ${p.blockSize}` : ""} --layout ${layout})`);
    await convertGgufToOnnx(source, onnxDir, { weights: p.weights, layout, blockSize: p.blockSize });
  }
  return { gguf, onnxDir };
}

async function decodeRate(model: Model): Promise<number> {
  const r = await generate(model, { tokens: PROMPT, maxTokens: tokens, temperature: 0, ignoreEos: true });
  return r.timings.tokensPerSecond;
}

/** A file's size in MB. */
function sizeMb(path: string): number {
  return Bun.file(path).size / 1e6;
}

type Row = { pair: Pair; layout: Layout; llama: number; onnx: number; ggufMb: number; onnxMb: number };
const rows: Row[] = [];
/** llama.cpp on the other CPU paths, per pair: best decode rate of the same rounds. */
type PathRow = { pair: Pair; path: string; features: string; llama: number; onnx: number[] };
const pathRows: PathRow[] = [];
let autoFeatures = "";
const chosen = PAIRS.filter((p) => args.pairs!.split(",").includes(p.key));
const layoutsFor = (p: Pair): Layout[] => (args.layouts!.split(",") as Layout[]).filter((l) => l === "optimum" || (l === "genai" && p.weights !== "fp16" && p.weights !== "int8-dynamic"));
for (const pair of chosen) {
  const layouts = layoutsFor(pair);
  const exports = await Promise.all(layouts.map((l) => prepare(pair, l)));
  const gguf = exports[0]!.gguf;
  const a = await llamaCpp.load(gguf, { threads });
  const paths: LlamaCpuPath[] = [];
  for (const spec of otherPaths) paths.push(await startLlamaCpuPath(spec, gguf, { threads, tokens, prompt: PROMPT }));
  const bs = await Promise.all(exports.map((e) => onnx.load(e.onnxDir, { threads })));
  let llama = 0;
  const best = bs.map(() => 0);
  const bestPath = paths.map(() => 0);
  await decodeRate(a); // warm-up: page in the weights
  for (const p of paths) await p.rate();
  for (const b of bs) await decodeRate(b);
  for (let round = 0; round < rounds; round++) {
    llama = Math.max(llama, await decodeRate(a));
    for (let i = 0; i < paths.length; i++) bestPath[i] = Math.max(bestPath[i]!, await paths[i]!.rate());
    for (let i = 0; i < bs.length; i++) best[i] = Math.max(best[i]!, await decodeRate(bs[i]!));
  }
  a.dispose();
  for (const p of paths) p.close();
  for (const b of bs) b.dispose();
  layouts.forEach((layout, i) => {
    const onnxDir = exports[i]!.onnxDir;
    const data = join(onnxDir, "model.onnx.data");
    rows.push({ pair, layout, llama, onnx: best[i]!, ggufMb: sizeMb(gguf), onnxMb: sizeMb(join(onnxDir, "model.onnx")) + (existsSync(data) ? sizeMb(data) : 0) });
  });
  if (!autoFeatures) autoFeatures = cpuFeatures(loadLlamaLibrary().systemInfo);
  pathRows.push({ pair, path: "auto", features: autoFeatures, llama, onnx: best });
  paths.forEach((p, i) => pathRows.push({ pair, path: p.name, features: p.features, llama: bestPath[i]!, onnx: best }));
}

console.log(`\nEqual bits per weight: ${f16}, ${threads} threads, ${PROMPT.length}-token prompt, ${tokens} decode tokens, best of ${rounds} rounds; load average ${loadAtStart} at start, ${loadAverage()} at end\n`);
console.log("| weights (llama.cpp vs ONNX) | ONNX layout | GGUF MB | ONNX MB | llama.cpp tok/s | ONNX Runtime tok/s | ONNX / llama.cpp |");
console.log("|---|---|---:|---:|---:|---:|---:|");
for (const r of rows) {
  console.log(`| ${r.pair.label} | ${r.layout} | ${r.ggufMb.toFixed(0)} | ${r.onnxMb.toFixed(0)} | ${r.llama.toFixed(1)} | ${r.onnx.toFixed(1)} | ${(r.onnx / r.llama).toFixed(2)} |`);
}

if (otherPaths.length) {
  console.log("\nllama.cpp on other ggml CPU paths, the same rounds (auto = the adapter as shipped; +plain = without extra buffer types):\n");
  const layoutNames = (p: Pair) => layoutsFor(p).join(" / ");
  console.log("| weights | llama.cpp CPU path | ggml CPU features | llama.cpp tok/s | ONNX / llama.cpp (ONNX layouts) |");
  console.log("|---|---|---|---:|---:|");
  for (const r of pathRows) {
    console.log(`| ${r.pair.label} | ${r.path} | ${r.features} | ${r.llama.toFixed(1)} | ${r.onnx.map((o) => (o / r.llama).toFixed(2)).join(" / ")} (${layoutNames(r.pair)}) |`);
  }
}

if (args.profile) {
  for (const pair of chosen) for (const layout of layoutsFor(pair)) {
    const { onnxDir } = await prepare(pair, layout);
    console.log(`\nONNX Runtime per-operator time, ${pair.weights}${pair.blockSize ? ` block ${pair.blockSize}` : ""} export, ${layout} layout (${tokens} decode steps after the prompt, plain session):\n`);
    console.log("| operator | ms | share |");
    console.log("|---|---:|---:|");
    for (const [op, ms, share] of await profile(onnxDir)) console.log(`| ${op} | ${ms.toFixed(1)} | ${(share * 100).toFixed(1)}% |`);
  }
}

/** Decode `tokens` steps with onnxruntime's profiler on and sum kernel time per operator type. */
async function profile(onnxDir: string): Promise<[string, number, number][]> {
  const decoder = await PlainDecoder.create(onnxDir, {
    intraOpNumThreads: threads,
    graphOptimizationLevel: "all",
    enableProfiling: true,
    profileFilePrefix: join(onnxDir, "profile"),
  });
  await decoder.decode(PROMPT, tokens);
  decoder.session.endProfiling(); // writes <profileFilePrefix>_<timestamp>.json (onnxruntime-node returns nothing)
  await decoder.release();
  const file = readdirSync(onnxDir).filter((f) => f.startsWith("profile") && f.endsWith(".json")).map((f) => join(onnxDir, f))[0];
  if (!file) throw new Error(`onnxruntime wrote no profile in ${onnxDir}`);
  const events = JSON.parse(readFileSync(file, "utf8")) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
  rmSync(file, { force: true });
  const byOp = new Map<string, number>();
  let total = 0;
  for (const e of events) {
    if (e.cat !== "Node" || !e.name.endsWith("_kernel_time")) continue;
    const op = e.args?.op_name ?? "?";
    byOp.set(op, (byOp.get(op) ?? 0) + e.dur / 1000);
    total += e.dur / 1000;
  }
  return [...byOp].sort((x, y) => y[1] - x[1]).slice(0, 10).map(([op, ms]) => [op, ms, ms / total]);
}
