/**
 * Do any ONNX Runtime session options move MatMulNBits decode speed? (issue 9's equal-bits point:
 * "say where the remaining time goes".) The options a user of onnxruntime-node 1.30 can set that
 * could touch a quantized decode step — thread spinning, worker affinity, graph optimization level,
 * the thread pool's dynamic block base, denormals — each on a plain session (bench/ort-decode.ts) over the same exports as bench/equal-bits.ts,
 * rounds interleaved with llama.cpp on the matching GGUF through the adapter, so every figure is
 * also a ratio to llama.cpp from the same minutes.
 *
 *   bun bench/ort-options.ts [--gguf bench/models/random-d1024-l16-f16.gguf] [--threads 2]
 *       [--rounds 3] [--tokens 32] [--exports int4-genai,int8-genai]
 *
 * The exports must exist (run bench/equal-bits.ts once first, which writes them).
 *
 * Not measured: the 1.30 binary's `mlas.*` keys. `mlas.use_lut_gemm` (MLAS's T-MAC-style lookup-table
 * kernel) is refused for anything but 2-bit weights (MlasIsLutGemmAvailable: "currently only 2-bit
 * is supported"), so it cannot touch int4/int8; the others are KleidiAI (Arm) and NCHWc convolution
 * keys. `session.disable_prepacking` only removes MatMulNBits' packed layout.
 */
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import type { ort } from "../src/adapters/onnx/ort.ts";
import { generate } from "../src/core/generate.ts";
import { PlainDecoder } from "./ort-decode.ts";

const { values: args } = parseArgs({
  options: {
    gguf: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    threads: { type: "string", default: "2" },
    rounds: { type: "string", default: "3" },
    tokens: { type: "string", default: "32" },
    exports: { type: "string", default: "int4-genai,int8-genai" },
  },
});
const threads = Number(args.threads);
const rounds = Number(args.rounds);
const tokens = Number(args.tokens);
const PROMPT = Array.from({ length: 16 }, (_, i) => 300 + i);

/** The export key -> (GGUF llama.cpp runs, ONNX directory), named as bench/equal-bits.ts writes them. */
function files(key: string): { gguf: string; onnxDir: string } {
  const [weights, layout] = key.split("-") as [string, string | undefined];
  const quant = weights === "int4" ? "q4_0" : weights === "int8" ? "q8_0" : null;
  if (!quant) throw new Error(`--exports: ${key} is not int4[-genai] or int8[-genai]`);
  const gguf = args.gguf!.replace(/(-f16)?\.gguf$/, `-${quant}-pure.gguf`);
  const onnxDir = gguf.replace(/\.gguf$/, `-onnx-${weights}${layout === "genai" ? "-genai" : ""}`);
  for (const f of [gguf, join(onnxDir, "model.onnx")]) if (!existsSync(f)) throw new Error(`${f} does not exist: run bun bench/equal-bits.ts first`);
  return { gguf, onnxDir };
}

type Extra = Record<string, Record<string, string | Record<string, string>>>;
interface Variant {
  readonly name: string;
  readonly options: ort.InferenceSession.SessionOptions;
}
/** The adapter's options for its unhooked session (src/adapters/onnx/model.ts), then one change each. */
const adapterOptions: ort.InferenceSession.SessionOptions = { intraOpNumThreads: threads, graphOptimizationLevel: "all", executionMode: "sequential" };
const withExtra = (extra: Extra): ort.InferenceSession.SessionOptions => ({ ...adapterOptions, extra });
const VARIANTS: Variant[] = [
  { name: "adapter's options (spinning on, level all)", options: adapterOptions },
  { name: "intra_op.allow_spinning = 0", options: withExtra({ session: { intra_op: { allow_spinning: "0" } } }) },
  ...(threads > 1
    ? [{ name: `intra_op_thread_affinities = ${Array.from({ length: threads - 1 }, (_, i) => i + 2).join(";")}`, options: withExtra({ session: { intra_op_thread_affinities: Array.from({ length: threads - 1 }, (_, i) => String(i + 2)).join(";") } }) }]
    : []),
  { name: "graph optimization level extended", options: { ...adapterOptions, graphOptimizationLevel: "extended" } },
  { name: "graph optimization level basic", options: { ...adapterOptions, graphOptimizationLevel: "basic" } },
  { name: "session.dynamic_block_base = 4", options: withExtra({ session: { dynamic_block_base: "4" } }) },
  { name: "session.set_denormal_as_zero = 1", options: withExtra({ session: { set_denormal_as_zero: "1" } }) },
];

console.log(`\nONNX Runtime session options on MatMulNBits decode: ${threads} threads, ${PROMPT.length}-token prompt, ${tokens} decode tokens, best of ${rounds} rounds (load average at start ${loadAverage()})\n`);
console.log("| export | session option | ONNX Runtime tok/s | ratio vs adapter's options' ratio | llama.cpp tok/s (same rounds) | ONNX / llama.cpp |");
console.log("|---|---|---:|---:|---:|---:|");
for (const key of args.exports!.split(",")) {
  const { gguf, onnxDir } = files(key);
  const llama = await llamaCpp.load(gguf, { threads });
  const llamaRate = async () => (await generate(llama, { tokens: PROMPT, maxTokens: tokens, temperature: 0, ignoreEos: true })).timings.tokensPerSecond;
  await llamaRate(); // warm-up: page in the weights
  let baseRatio = 0;
  // One session at a time: idle sessions' spinning intra-op threads would steal the cores from the
  // one being timed. Each variant gets its own llama.cpp rounds, so its ratio is from its own minutes.
  for (const v of VARIANTS) {
    let decoder: PlainDecoder;
    try {
      decoder = await PlainDecoder.create(onnxDir, v.options);
    } catch (e) {
      console.log(`| ${key} | ${v.name} | session refused: ${(e as Error).message.split("\n")[0]} | | | |`);
      continue;
    }
    await decoder.decode(PROMPT, 4);
    let bestLlama = 0;
    let best = 0;
    for (let round = 0; round < rounds; round++) {
      bestLlama = Math.max(bestLlama, await llamaRate());
      best = Math.max(best, await decoder.decode(PROMPT, tokens));
    }
    await decoder.release();
    const ratio = best / bestLlama;
    if (!baseRatio) baseRatio = ratio;
    console.log(`| ${key} | ${v.name} | ${best.toFixed(1)} | ${(ratio / baseRatio).toFixed(2)} | ${bestLlama.toFixed(1)} | ${ratio.toFixed(2)} |`);
  }
  llama.dispose();
}
console.log(`\nload average at end: ${loadAverage()}`);

function loadAverage(): string {
  return loadavg()
    .map((x) => x.toFixed(1))
    .join(" ");
}
