/**
 * SAE steering benchmark (issue: SAE feature steering), two ratios, each against a baseline from
 * the same run:
 *
 * 1. Per-token cost of `sae-clamp` with one latent (the sparse path: one encoder row, one decoder
 *    row) vs a full dense encode/decode, at the paper's size (d_in 3072, d_sae 24,576, random
 *    weights). The plugin runs through core's chain exactly as a backend calls it. The dense
 *    baseline uses the same dot-product kernel (latents.ts's reader over every latent) plus a
 *    decode of the reconstruction over the active latents, so the ratio measures the algorithm,
 *    not a slow reference. TopK `exact` is shown too: it needs every pre-activation, so it costs a
 *    full encoder pass (that is the price of exactness; `approximate` is the sparse path).
 * 2. Decode tokens/s on the 271M random llama (bench/make-random-gguf.ts) with a one-latent clamp
 *    at resid_post.8 (a random ReLU SAE, d_sae 16,384) vs unsteered, interleaved rounds in a
 *    shuffled order, medians.
 *
 *   bun bench/sae.ts [--model bench/models/random-d1024-l16-f16.gguf] [--rounds 5] [--decode 64]
 *                    [--threads 2] [--tokens 200] [--skip-llama]
 *
 * Weights are random: the cost does not depend on their values. Encoder and decoder share one
 * random buffer to halve the memory (600 MB -> 300 MB at the paper's size).
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compileChain } from "../src/core/chain.ts";
import { createArtifacts } from "../src/core/artifacts.ts";
import type { ModelInfo, Sequence } from "../src/core/backend.ts";
import { preparePlugins } from "../src/core/chain.ts";
import { tensor } from "../src/core/tensor.ts";
import { saeClamp } from "../src/plugins/index.ts";
import { saeArtifact } from "../src/sae/artifact.ts";
import { latentPlan, latentReader } from "../src/sae/latents.ts";
import { newRowScale, type Sae, type SaeArchitecture } from "../src/sae/sae.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    rounds: { type: "string", default: "5" },
    decode: { type: "string", default: "64" },
    threads: { type: "string", default: "2" },
    tokens: { type: "string", default: "200" },
    "skip-llama": { type: "boolean", default: false },
  },
});
const rounds = Number(args.rounds), nDecode = Number(args.decode), threads = Number(args.threads), nTokens = Number(args.tokens);

/** Deterministic uniform(-a, a) floats (xorshift), fast enough for 75M values. */
function randomFloats(n: number, a: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = ((x >>> 0) / 4294967296 - 0.5) * 2 * a;
  }
  return out;
}

function randomSae(architecture: SaeArchitecture, dIn: number, dSae: number, weights: Float32Array, k = 32): Sae {
  return {
    info: { family: "saelens", architecture, dIn, dSae, k: architecture === "topk" ? k : null, hookName: null, point: null, dtype: "float32", applyBDecToInput: true, normalization: { kind: "none" } },
    encoder: weights,
    encoderBias: randomFloats(dSae, 0.01, 2),
    decoder: weights,
    decoderBias: randomFloats(dIn, 0.01, 3),
    threshold: null,
    gated: null,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

// ---- 1. per-token cost at the paper's size ----
async function perToken(): Promise<void> {
  const dIn = 3072, dSae = 24576;
  console.error(`building random SAE weights ${dSae} x ${dIn} ...`);
  const weights = randomFloats(dSae * dIn, 1 / Math.sqrt(dIn), 1);
  const info: ModelInfo = { backend: "bench", architecture: "llama", name: "bench", nLayers: 16, dModel: dIn, vocabSize: 32, contextLength: 4096, bosToken: null, eosTokens: [], chatTemplate: null };
  const chainModel = { info, capabilities: ["residual:read", "residual:write"] as const, detokenize: () => "" };
  const rows = randomFloats(nTokens * dIn, 1, 9);
  const x = new Float32Array(dIn);
  const point = { site: "resid_post" as const, layer: 8 };

  const pluginCost = async (architecture: SaeArchitecture, topk?: "exact" | "approximate") => {
    const artifacts = createArtifacts().register("s", saeArtifact, { value: randomSae(architecture, dIn, dSae, weights) });
    const plugins = await preparePlugins(chainModel, [saeClamp({ sae: "s", point: "resid_post.8", latents: [{ index: 123, mode: "clamp", value: 5 }], ...(topk ? { topk } : {}) })], { artifacts });
    const hooks = compileChain(plugins, chainModel, { fastPath: false }).residual;
    const t = tensor(x, [1, dIn]);
    const pos = new Int32Array(1), tok = new Int32Array(1);
    return (n: number) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        x.set(rows.subarray((i % nTokens) * dIn, (i % nTokens + 1) * dIn));
        pos[0] = i;
        hooks.run(point, t, pos, tok);
      }
      if (hooks.error) throw hooks.error;
      return (performance.now() - t0) / n;
    };
  };
  // Dense: every latent's activation (same kernel), set latent 123, reconstruct over the active latents and write h + (x̂' − x̂).
  const denseCost = () => {
    const sae = randomSae("relu", dIn, dSae, weights);
    const reader = latentReader(latentPlan(sae, Array.from({ length: dSae }, (_, i) => i)));
    const acts = new Float64Array(dSae);
    const recon = new Float64Array(dIn), recon2 = new Float64Array(dIn);
    const row = newRowScale();
    return (n: number) => {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) {
        x.set(rows.subarray((i % nTokens) * dIn, (i % nTokens + 1) * dIn));
        reader.read(x, 0, acts, row);
        recon.fill(0);
        for (let l = 0; l < dSae; l++) {
          const a = acts[l]!;
          if (a === 0) continue;
          for (let j = 0, o = l * dIn; j < dIn; j++) recon[j] = recon[j]! + a * weights[o + j]!;
        }
        recon2.set(recon);
        const delta = 5 - acts[123]!;
        for (let j = 0, o = 123 * dIn; j < dIn; j++) recon2[j] = recon2[j]! + delta * weights[o + j]!;
        for (let j = 0; j < dIn; j++) x[j] = x[j]! + (recon2[j]! - recon[j]!);
      }
      return (performance.now() - t0) / n;
    };
  };
  const configs: [string, (n: number) => number][] = [
    ["dense encode/decode (baseline)", denseCost()],
    ["sae-clamp, 1 latent, relu (sparse path)", await pluginCost("relu")],
    ["sae-clamp, 1 latent, topk k=32 approximate (sparse path)", await pluginCost("topk", "approximate")],
    ["sae-clamp, 1 latent, topk k=32 exact (full encoder pass)", await pluginCost("topk", "exact")],
  ];
  const times = configs.map(() => [] as number[]);
  for (let r = 0; r <= rounds; r++) {
    configs.forEach(([, run], i) => {
      // Dense-path configurations are ~1000x slower per token: fewer tokens keep rounds short.
      const n = i === 0 || i === 3 ? 20 : 2000;
      const ms = run(n);
      if (r > 0) times[i]!.push(ms);
    });
  }
  const base = median(times[0]!);
  console.log(`\nPer-token cost, d_in ${dIn}, d_sae ${dSae} (random weights), ${rounds} rounds, medians:\n`);
  console.log("| path | µs/token | vs dense (x cheaper) |");
  console.log("|---|---:|---:|");
  configs.forEach(([name], i) => {
    const t = median(times[i]!);
    console.log(`| ${name} | ${(t * 1000).toFixed(1)} | ${(base / t).toFixed(1)} |`);
  });
}

// ---- 2. decode tokens/s on the random llama ----
async function decodeSpeed(): Promise<void> {
  const modelPath = args.model!;
  if (!existsSync(modelPath)) {
    console.error(`${modelPath} does not exist: run \`bun bench/make-random-gguf.ts\` (or pass --model); decode benchmark skipped`);
    return;
  }
  const { loadModel } = await import("../src/adapters/llama-cpp/index.ts");
  const model = loadModel(modelPath, { threads, contextLength: 32 + nDecode + 8 });
  const { nLayers, dModel } = model.info;
  const mid = Math.floor(nLayers / 2);
  const dSae = 16 * dModel;
  const weights = randomFloats(dSae * dModel, 1 / Math.sqrt(dModel), 4);
  const artifacts = createArtifacts().register("s", saeArtifact, { value: randomSae("relu", dModel, dSae, weights) });
  const plugins = await preparePlugins(model, [saeClamp({ sae: "s", point: `resid_post.${mid}`, latents: [{ index: 7, mode: "clamp", value: 5 }] })], { artifacts });
  const prompt = Array.from({ length: 32 }, (_, i) => 3 + ((i * 37) % 500));
  const tokens = Array.from({ length: nDecode }, (_, i) => 3 + ((i * 53) % 500));
  const configs: { name: string; seq: Sequence }[] = [
    { name: "unsteered", seq: model.createSequence({}) },
    { name: `sae-clamp, 1 latent (relu, d_sae ${dSae}) at resid_post.${mid}`, seq: model.createSequence({ hooks: compileChain(plugins, model, { promptTokens: prompt }).residual }) },
  ];
  const speeds = configs.map(() => [] as number[]);
  for (let r = 0; r <= rounds; r++) {
    const order = r % 2 ? [1, 0] : [0, 1];
    for (const i of order) {
      await Bun.sleep(250);
      const { seq } = configs[i]!;
      seq.reset();
      await seq.prefill(prompt);
      const t0 = performance.now();
      for (const t of tokens) await seq.decode(t);
      if (r > 0) speeds[i]!.push(nDecode / ((performance.now() - t0) / 1000));
    }
    console.error(`round ${r}${r === 0 ? " (warm-up)" : ""} done`);
  }
  const base = median(speeds[0]!);
  console.log(`\nDecode on ${model.info.name} (${nLayers} layers, d=${dModel}), llama.cpp, ${threads} threads, ${nDecode} tokens after a 32-token prompt, ${rounds} rounds, medians:\n`);
  console.log("| configuration | decode t/s | ratio |");
  console.log("|---|---:|---:|");
  configs.forEach((c, i) => console.log(`| ${c.name} | ${median(speeds[i]!).toFixed(1)} | ${(median(speeds[i]!) / base).toFixed(2)} |`));
  for (const c of configs) c.seq.free();
  model.dispose();
}

await perToken();
if (!args["skip-llama"]) await decodeSpeed();
process.exit(0);
