/**
 * ONNX Runtime's one-row quantized matrix kernels side by side, against llama.cpp's decode on the
 * same machine in the same run: is MatMulNBits the fastest int8/int4 matrix-vector ORT has here?
 * (bench/equal-bits.ts shows MatMulNBits is where ORT's decode time goes; this isolates the kernel.)
 *
 * Each ONNX model is a chain of 82 one-row products, alternating 1024x2816 and 2816x1024 (the 271M
 * random llama's MLP shapes; 236M weights, as many as that model's matrices — the size matters: this
 * CPU's L3 is 480 MB, and a 92M-weight chain ran int4 ~1.5x faster than a 236M one), random weights:
 *
 *   MatMulNBits int8 / int4   block 32, accuracy_level 4 (what `steerkit convert --weights` writes)
 *   MatMulInteger s8          DynamicQuantizeLinear -> MatMulInteger (uint8 x int8) -> Cast -> Mul
 *                             by a per-column scale: plain int8 weights, 8 bits per weight (the
 *                             int8 GEMM MLAS also runs with AMX / VNNI kernels)
 *   MatMulInteger u8          the same with uint8 weights and a zero point (as transformers.js'
 *                             `model_quantized.onnx` exports lay them out)
 *
 * and llama.cpp's rows are whole decode steps of the matching GGUFs through the adapter, converted
 * to the same unit (matrix weights per second) by counting the GGUF's 2-D weights. Ratios are from
 * the same rounds; the single-op chains have no attention, norms or KV cache, so they bound ORT
 * from above.
 *
 *   bun bench/matmul-kernels.ts [--threads 1] [--rounds 6] [--gguf bench/models/random-d1024-l16-f16.gguf]
 */
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import { ort } from "../src/adapters/onnx/ort.ts";
import { generate } from "../src/core/generate.ts";
import { readGgufHeader } from "../src/formats/gguf.ts";
import { attr, graph, model, node, tensorFromBytes, tensorFromFloat32, valueInfo } from "../src/formats/onnx/build.ts";
import { encodeModel } from "../src/formats/onnx/encode.ts";
import { DataType } from "../src/formats/onnx/types.ts";

const { values: args } = parseArgs({
  options: {
    threads: { type: "string", default: "1" },
    rounds: { type: "string", default: "6" },
    gguf: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
  },
});
const threads = Number(args.threads);
const rounds = Number(args.rounds);
const LAYERS = 82;
const SHAPES: [number, number][] = [
  [1024, 2816],
  [2816, 1024],
];
const WEIGHTS = Array.from({ length: LAYERS }, (_, i) => SHAPES[i % 2]!).reduce((s, [k, n]) => s + k * n, 0);

/** Deterministic bytes (xorshift), so every run times the same model. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

function smallScales(n: number, seed: number): Float32Array {
  return Float32Array.from(randomBytes(n, seed), (b) => (b + 1) * 1e-4);
}

function nbitsChain(bits: 4 | 8): Uint8Array {
  const nodes = [];
  const inits = [];
  let x = "x";
  for (let i = 0; i < LAYERS; i++) {
    const [k, n] = SHAPES[i % 2]!;
    const blocks = k / 32;
    inits.push(tensorFromBytes(`B${i}`, DataType.UINT8, [n, blocks, (32 * bits) / 8], randomBytes((n * blocks * 32 * bits) / 8, i + 1)));
    inits.push(tensorFromFloat32(`S${i}`, [n * blocks], smallScales(n * blocks, i + 101)));
    const attrs = [attr.int("K", k), attr.int("N", n), attr.int("bits", bits), attr.int("block_size", 32), attr.int("accuracy_level", 4)];
    nodes.push(node("MatMulNBits", [x, `B${i}`, `S${i}`], [`y${i}`], attrs, { domain: "com.microsoft" }));
    x = `y${i}`;
  }
  return chainModel(nodes, inits, x, { "": 17, "com.microsoft": 1 });
}

function integerChain(weights: "s8" | "u8"): Uint8Array {
  const nodes = [];
  const inits = [];
  let x = "x";
  for (let i = 0; i < LAYERS; i++) {
    const [k, n] = SHAPES[i % 2]!;
    const type = weights === "s8" ? DataType.INT8 : DataType.UINT8;
    inits.push(tensorFromBytes(`W${i}`, type, [k, n], randomBytes(k * n, i + 1)));
    inits.push(tensorFromFloat32(`ws${i}`, [n], smallScales(n, i + 101)));
    if (weights === "u8") inits.push(tensorFromBytes(`wz${i}`, DataType.UINT8, [], Uint8Array.of(128)));
    nodes.push(node("DynamicQuantizeLinear", [x], [`q${i}`, `qs${i}`, `qz${i}`]));
    nodes.push(node("MatMulInteger", [`q${i}`, `W${i}`, `qz${i}`, ...(weights === "u8" ? [`wz${i}`] : [])], [`i${i}`]));
    nodes.push(node("Cast", [`i${i}`], [`f${i}`], [attr.int("to", DataType.FLOAT)]));
    nodes.push(node("Mul", [`qs${i}`, `ws${i}`], [`s${i}`]));
    nodes.push(node("Mul", [`f${i}`, `s${i}`], [`y${i}`]));
    x = `y${i}`;
  }
  return chainModel(nodes, inits, x, { "": 17 });
}

function chainModel(nodes: ReturnType<typeof node>[], initializers: ReturnType<typeof tensorFromBytes>[], out: string, opsets: Record<string, number>): Uint8Array {
  const g = graph({ nodes, initializers, inputs: [valueInfo("x", DataType.FLOAT, [1, 1024])], outputs: [valueInfo(out, DataType.FLOAT, [1, 1024])] });
  return encodeModel(model({ graph: g, opsets }));
}

/** Weights in the 2-D tensors a decode step multiplies (every matrix but the gathered embedding). */
function matrixWeights(gguf: string): number {
  return readGgufHeader(gguf)
    .tensors.filter((t) => t.dims.length === 2 && t.name !== "token_embd.weight")
    .reduce((s, t) => s + t.dims[0]! * t.dims[1]!, 0);
}

interface Runner {
  readonly name: string;
  readonly bits: string;
  /** Matrix weights per second, one timed batch. */
  run(): Promise<number>;
}

const runners: Runner[] = [];
const x = new ort.Tensor("float32", Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i)), [1, 1024]);
const onnxModels: [string, string, () => Uint8Array][] = [
  ["ORT MatMulNBits int8, block 32", "9 (fp32 scale per 32)", () => nbitsChain(8)],
  ["ORT MatMulNBits int4, block 32", "5 (fp32 scale per 32)", () => nbitsChain(4)],
  ["ORT DynamicQuantizeLinear + MatMulInteger, int8 weights", "8 (+ per-column scale)", () => integerChain("s8")],
  ["ORT DynamicQuantizeLinear + MatMulInteger, uint8 weights + zero point", "8 (+ per-column scale)", () => integerChain("u8")],
];
for (const [name, bits, build] of onnxModels) {
  const session = await ort.InferenceSession.create(build(), { intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: "all", logSeverityLevel: 3 });
  await session.run({ x });
  runners.push({
    name,
    bits,
    async run() {
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) await session.run({ x });
      return (10 * WEIGHTS * 1000) / (performance.now() - t0);
    },
  });
}
for (const [quant, bits] of <[string, string][]>[
  ["q8_0", "8.5 (f16 scale per 32)"],
  ["q4_0", "4.5 (f16 scale per 32)"],
]) {
  const gguf = args.gguf!.replace(/(-f16)?\.gguf$/, `-${quant}-pure.gguf`);
  if (!existsSync(gguf)) {
    console.error(`llama.cpp ${quant} row skipped: ${gguf} does not exist (bun bench/equal-bits.ts writes it)`);
    continue;
  }
  const m = await llamaCpp.load(gguf, { threads });
  const weights = matrixWeights(gguf);
  const prompt = Array.from({ length: 16 }, (_, i) => 300 + i);
  const rate = async () => (await generate(m, { tokens: prompt, maxTokens: 32, temperature: 0, ignoreEos: true })).timings.tokensPerSecond * weights;
  await rate();
  runners.push({ name: `llama.cpp ${quant.toUpperCase()} (pure) whole decode step, as shipped`, bits, run: rate });
}

const loadAtStart = loadavg().map((v) => v.toFixed(1)).join(" ");
const best = runners.map(() => 0);
for (let r = 0; r < rounds; r++) for (let i = 0; i < runners.length; i++) best[i] = Math.max(best[i]!, await runners[i]!.run());
const base = best[0]!;
console.log(`\nOne-row quantized matrix products, ${threads} thread(s), best of ${rounds} rounds; load average ${loadAtStart} at start\n`);
console.log("| kernel | bits per weight | G matrix weights / s | vs MatMulNBits int8 |");
console.log("|---|---|---:|---:|");
runners.forEach((r, i) => console.log(`| ${r.name} | ${r.bits} | ${(best[i]! / 1e9).toFixed(1)} | ${(best[i]! / base).toFixed(2)} |`));
process.exit(0);
