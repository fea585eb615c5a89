/**
 * llama.cpp adapter benchmark: prefill and decode tokens/s, same model, same run, for Steerkit
 * unsteered, with JS hooks, with the native fast paths, and node-llama-cpp's own high-level API
 * (the baseline a user would otherwise pick). Prints a markdown table of ratios vs Steerkit
 * unsteered. Memory bandwidth on shared VMs drifts minute to minute, so every configuration runs in
 * each round (in a fresh shuffled order, with a pause between runs) and the table reports medians;
 * only ratios from one run mean anything.
 *
 *   bun bench/make-random-gguf.ts            # once: writes bench/models/random-d1024-l16-f16.gguf
 *   bun bench/llama-cpp.ts [--model path] [--threads 2] [--prefill 256] [--decode 64] [--rounds 5]
 *       [--nlc /tmp/nlc-bench]              # a directory where node-llama-cpp@3.21.1 is installed
 *       [--verbose]                         # print every measurement
 *
 * node-llama-cpp is not a Steerkit dependency (it pulls ~700 MB of GPU builds); install it into a
 * throwaway prefix: `mkdir /tmp/nlc-bench && cd /tmp/nlc-bench && npm i node-llama-cpp@3.21.1`.
 * Its row is skipped with a message when it cannot be loaded.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import * as v from "valibot";
import type { Sequence } from "../src/core/backend.ts";
import { compileChain } from "../src/core/chain.ts";
import { definePlugin } from "../src/core/plugin.ts";
import type { HookPoint } from "../src/core/sites.ts";
import { loadModel, type LlamaSequenceOptions } from "../src/adapters/llama-cpp/index.ts";
import { stdoutLines } from "./lib/shared.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    threads: { type: "string", default: "2" },
    prefill: { type: "string", default: "256" },
    decode: { type: "string", default: "64" },
    rounds: { type: "string", default: "5" },
    nlc: { type: "string", default: "/tmp/nlc-bench" },
    verbose: { type: "boolean", default: false },
  },
});
const modelPath = args.model!;
if (!existsSync(modelPath)) {
  console.error(`${modelPath} does not exist: run \`bun bench/make-random-gguf.ts\` first`);
  process.exit(1);
}
const threads = Number(args.threads), nPrefill = Number(args.prefill), nDecode = Number(args.decode), rounds = Number(args.rounds);
const contextLength = nPrefill + nDecode + 8;

const model = loadModel(modelPath, { threads, contextLength });
const { nLayers, dModel } = model.info;
const mid = Math.floor(nLayers / 2);
const vector = Float32Array.from({ length: dModel }, (_, i) => Math.sin(i) * 0.05);
const unit = (() => {
  const u = Float32Array.from({ length: dModel }, (_, i) => Math.cos(i * 0.37));
  const n = Math.hypot(...u);
  return u.map((x) => x / n);
})();

/**
 * Adds `vector` at the given points (additive: may become a control vector), at every row or only
 * at rows from position `from` on (then natively in the callback: control vectors take no range).
 */
const add = definePlugin({
  name: "bench-add",
  options: v.object({ layers: v.array(v.number()), from: v.optional(v.number()) }),
  needs: ["residual:write"],
  create: (o) => ({
    points: o.layers.map((layer): HookPoint => ({ site: "resid_post", layer })),
    onResidual(x, ctx) {
      const d = dModel;
      for (let off = 0, r = 0; off < x.data.length; off += d, r++) {
        if (o.from !== undefined && ctx.positions[r]! < o.from) continue;
        for (let i = 0; i < d; i++) x.data[off + i]! += vector[i]!;
      }
    },
    affine: () => ({ rank: 0, U: null, V: null, c: vector, positions: o.from === undefined ? "all" : { from: o.from } }),
  }),
});
/** Projects `unit` out of the residual: h - (h·u)u, a rank-1 edit. */
const ablate = definePlugin({
  name: "bench-ablate",
  options: v.object({ layer: v.number() }),
  needs: ["residual:write"],
  create: (o) => ({
    points: [{ site: "resid_post", layer: o.layer }],
    onResidual(x) {
      const d = dModel;
      for (let off = 0; off < x.data.length; off += d) {
        let s = 0;
        for (let i = 0; i < d; i++) s += x.data[off + i]! * unit[i]!;
        for (let i = 0; i < d; i++) x.data[off + i]! -= s * unit[i]!;
      }
    },
    affine: () => ({ rank: 1, U: unit, V: unit.map((x) => -x), c: null }),
  }),
});

interface Config {
  readonly name: string;
  readonly options: () => LlamaSequenceOptions;
}
const hooks = (plugins: Parameters<typeof compileChain>[0], fastPath: boolean) => compileChain(plugins, model, { fastPath }).residual;
const allLayers = Array.from({ length: nLayers }, (_, l) => l);
const configs: Config[] = [
  { name: "Steerkit, unsteered", options: () => ({}) },
  { name: `Steerkit, one JS hook (add, resid_post.${mid})`, options: () => ({ hooks: hooks([add({ layers: [mid] })], false) }) },
  { name: `Steerkit, JS hooks at every layer (add, resid_post.0-${nLayers - 1})`, options: () => ({ hooks: hooks([add({ layers: allLayers })], false) }) },
  { name: `Steerkit, fast path: control vector (add, resid_post.${mid})`, options: () => ({ hooks: hooks([add({ layers: [mid] })], true) }) },
  { name: `Steerkit, fast path: control vectors at every layer 1-${nLayers - 1}`, options: () => ({ hooks: hooks([add({ layers: allLayers.slice(1) })], true) }) },
  { name: `Steerkit, fast path: native add at generated rows only (resid_post.${mid})`, options: () => ({ hooks: hooks([add({ layers: [mid], from: nPrefill })], true) }) },
  { name: `Steerkit, fast path: native rank-1 ablation (resid_post.${mid})`, options: () => ({ hooks: hooks([ablate({ layer: mid })], true) }) },
  { name: `Steerkit, JS rank-1 ablation (resid_post.${mid})`, options: () => ({ hooks: hooks([ablate({ layer: mid })], false) }) },
];

const prompt = Array.from({ length: nPrefill }, (_, i) => 3 + ((i * 37) % 500));
const decodeTokens = Array.from({ length: nDecode }, (_, i) => 3 + ((i * 53) % 500));

interface Runner {
  readonly name: string;
  run(): Promise<{ prefill: number; decode: number }>;
}

function steerkitRunner(c: Config): Runner {
  let seq: Sequence | null = null;
  return {
    name: c.name,
    async run() {
      seq ??= model.createSequence(c.options());
      seq.reset();
      let t0 = performance.now();
      await seq.prefill(prompt);
      const prefill = nPrefill / ((performance.now() - t0) / 1000);
      t0 = performance.now();
      for (const t of decodeTokens) await seq.decode(t);
      const decode = nDecode / ((performance.now() - t0) / 1000);
      return { prefill, decode };
    },
  };
}

/**
 * node-llama-cpp runs in a child process (nlc-worker.ts): in this process it would load a second
 * set of ggml backends next to ours and the two libraries' thread pools would fight over the cores.
 * The child measures one round per request on stdin, while this process sits idle.
 */
async function nodeLlamaCppRunner(): Promise<Runner | string> {
  const pkg = join(args.nlc!, "node_modules", "node-llama-cpp", "package.json");
  // Checked by path on purpose: resolving a bare name from a directory without node_modules lets
  // Bun auto-install whatever version is latest.
  if (!existsSync(pkg)) {
    return `node-llama-cpp row skipped: not installed in ${args.nlc} (mkdir -p ${args.nlc} && cd ${args.nlc} && npm i node-llama-cpp@3.21.1)`;
  }
  const version = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
  if (version !== "3.21.1") return `node-llama-cpp row skipped: ${args.nlc} has version ${version}, the baseline is 3.21.1`;
  const child = Bun.spawn(["bun", join(import.meta.dir, "nlc-worker.ts")], {
    stdin: "pipe",
    stdout: "pipe",
    stderr: "inherit",
    env: { ...process.env, NLC_DIR: args.nlc!, NLC_MODEL: modelPath, NLC_THREADS: String(threads), NLC_CONTEXT: String(contextLength) },
  });
  const lines = stdoutLines(child.stdout);
  const request = async (msg: unknown) => {
    child.stdin.write(JSON.stringify(msg) + "\n");
    child.stdin.flush();
    const { value, done } = await lines.next();
    if (done) throw new Error("the node-llama-cpp worker exited");
    const reply = JSON.parse(value) as { error?: string; prefill: number; decode: number };
    if (reply.error) throw new Error(reply.error);
    return reply;
  };
  try {
    await request({ cmd: "ready" });
  } catch (e) {
    child.kill();
    return `node-llama-cpp row skipped: ${(e as Error).message}`;
  }
  process.on("exit", () => child.kill());
  return {
    name: "node-llama-cpp 3.21.1 high-level API, unsteered",
    run: () => request({ cmd: "run", prompt, decodeTokens }),
  };
}

const runners: Runner[] = configs.map(steerkitRunner);
const nlc = await nodeLlamaCppRunner();
if (typeof nlc === "string") console.error(nlc);
else runners.push(nlc);

console.error(`model ${model.info.name}: ${nLayers} layers, d=${dModel}, vocab ${model.info.vocabSize}; threads ${threads}; prefill ${nPrefill}, decode ${nDecode}, ${rounds} rounds (+1 warm-up)`);
const results = runners.map(() => ({ prefill: [] as number[], decode: [] as number[] }));
// A fresh seeded order every round, and a pause between runs: a runner must not always follow the
// same other one, whose thread pool (ggml's, OpenMP's, or node-llama-cpp's in its child process)
// may still be spinning on the cores when the next one starts.
let shuffleState = 12345;
const order = () => {
  const idx = runners.map((_, i) => i);
  for (let i = idx.length - 1; i > 0; i--) {
    shuffleState = (Math.imul(shuffleState, 1103515245) + 12345) >>> 0;
    const j = shuffleState % (i + 1);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx;
};
for (let r = 0; r <= rounds; r++) {
  for (const i of order()) {
    await Bun.sleep(250);
    const res = await runners[i]!.run();
    if (args.verbose) console.error(`  ${runners[i]!.name}: prefill ${res.prefill.toFixed(1)}, decode ${res.decode.toFixed(1)}`);
    if (r > 0) {
      results[i]!.prefill.push(res.prefill);
      results[i]!.decode.push(res.decode);
    }
  }
  console.error(`round ${r}${r === 0 ? " (warm-up)" : ""} done`);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const base = { prefill: median(results[0]!.prefill), decode: median(results[0]!.decode) };
console.log(`| configuration | prefill t/s | ratio | decode t/s | ratio |`);
console.log(`|---|---:|---:|---:|---:|`);
runners.forEach((r, i) => {
  const p = median(results[i]!.prefill), d = median(results[i]!.decode);
  console.log(`| ${r.name} | ${p.toFixed(1)} | ${(p / base.prefill).toFixed(2)} | ${d.toFixed(1)} | ${(d / base.decode).toFixed(2)} |`);
});
model.dispose();
process.exit(0);
