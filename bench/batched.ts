/**
 * Batched decoding benchmark: aggregate decode tokens/s and time to first token with N concurrent
 * sequences, same model, same libraries, same run, for
 *   - Steerkit batched (`model.batched`: one context, one forward pass per step for all N),
 *   - Steerkit batched and steered: half the sequences with a JS hook at every layer, half with an
 *     affine edit (native, per row group) at every layer,
 *   - Steerkit one context per sequence (N forward passes per step, on the JS thread; run in a
 *     child process, see below),
 *   - llama.cpp's own `llama-batched-bench` (unified KV cache, the same prompt/decode lengths).
 * Then the chat server's /health latency while 8 streams generate, batched and unbatched.
 *
 *   bun bench/make-random-gguf.ts         # once: bench/models/random-d1024-l16-f16.gguf
 *   STEERKIT_LLAMA_BATCHED_BENCH=/tmp/lcpp-build/bin/llama-batched-bench \
 *     bun bench/batched.ts [--threads 2] [--prompt 32] [--decode 16] [--n 1,2,4,8,16] [--rounds 2]
 *   STEERKIT_BENCH_ONNX=<export dir> adds the ONNX Runtime table (bench/batched-onnx.ts) after this one.
 *
 * With the tool set, Steerkit loads the libraries next to it (STEERKIT_LLAMA_LIB_DIR, unless set),
 * so both sides run the same build. Without it, the llama.cpp column is skipped with a message.
 * Prefill and decode are separate phases, as in llama-batched-bench: every sequence's prompt goes
 * in first (time to first token = when its prefill resolved), then each decodes `--decode` tokens
 * greedily; aggregate = N × decode / the decode phase's wall time. At each N the four runs sit
 * side by side (order reversed every other round) and the table shows medians over rounds; on a
 * shared machine only ratios from one run mean anything. With 2 threads on a loaded machine ggml's
 * per-op spin barriers dominate (a descheduled thread stalls every op); `--threads 1` then gives
 * the cleaner comparison.
 *
 * Why the one-context runs live in a child process: a llama.cpp built with OpenMP (the default on
 * Linux, as the pinned build) keeps one worker team per thread that calls llama_decode, and libgomp
 * cuts its barrier spinning to almost nothing once a process holds more OpenMP threads than cores.
 * One-context sequences decode on the JS thread, a batch on its decode thread: in one process, two
 * teams of 2 threads on 2 cores, and every barrier of both paths sleeps in the kernel (~1.4x slower
 * per pass when the machine is quiet). Each path alone, as a server runs it, gets llama.cpp's own
 * behaviour; so does each column here. The adapter README ("Threads") says the same for users.
 */
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import type { Model, Sequence } from "../src/core/backend.ts";
import { compileChain } from "../src/core/chain.ts";
import { argmax } from "../src/core/tensor.ts";
import { progressBar } from "../src/cli/progress.ts";
import { createChatServer } from "../src/server/index.ts";
import { everyLayerSteering } from "./lib/shared.ts";

const { values: args } = parseArgs({
  options: {
    model: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    threads: { type: "string", default: "2" },
    prompt: { type: "string", default: "32" },
    decode: { type: "string", default: "16" },
    n: { type: "string", default: "1,2,4,8,16" },
    rounds: { type: "string", default: "2" },
    /** Internal: run the one-context measurement at this N and print it as JSON (the child process). */
    "one-context": { type: "string" },
  },
});
const modelPath = args.model!;
if (!existsSync(modelPath)) {
  console.error(`${modelPath} does not exist: run \`bun bench/make-random-gguf.ts\` first`);
  process.exit(1);
}
const tool = process.env.STEERKIT_LLAMA_BATCHED_BENCH;
if (tool && !existsSync(tool)) {
  console.error(`STEERKIT_LLAMA_BATCHED_BENCH=${tool} does not exist`);
  process.exit(1);
}
if (tool) process.env.STEERKIT_LLAMA_LIB_DIR ??= dirname(tool);
const { loadModel } = await import("../src/adapters/llama-cpp/index.ts");

const threads = Number(args.threads), nPrompt = Number(args.prompt), nDecode = Number(args.decode), rounds = Number(args.rounds);
const Ns = args.n!.split(",").map(Number);
const contextLength = nPrompt + nDecode + 8;
const model = loadModel(modelPath, { threads, contextLength });
const childN = args["one-context"];
const { nLayers, dModel, vocabSize } = model.info;
const recipeOf = everyLayerSteering(nLayers, dModel);

/** Distinct prompts of `nPrompt` tokens, within the real vocabulary part. */
const prompt = (i: number) => Array.from({ length: nPrompt }, (_, k) => 1 + ((i * 31 + k * 7) % Math.min(500, vocabSize - 1)));

interface Measure {
  readonly aggregate: number;
  readonly ttftMs: number;
}

/** N sequences of `m`, prefilled together, then decoded together; `sequential` awaits each call before the next sequence's. */
async function drive(m: Model, n: number, steered: boolean, sequential: boolean): Promise<Measure> {
  const seqs: Sequence[] = [];
  const last: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const chain = compileChain(recipeOf(steered, i), m, { fastPath: true, promptTokens: prompt(i) });
      seqs.push(m.createSequence({ hooks: chain.residual }));
    }
    const t0 = performance.now();
    const ttft: number[] = [];
    const prefillOne = async (i: number) => {
      last[i] = argmax(await seqs[i]!.prefill(prompt(i)));
      ttft[i] = performance.now() - t0;
    };
    if (sequential) for (let i = 0; i < n; i++) await prefillOne(i);
    else await Promise.all(seqs.map((_, i) => prefillOne(i)));
    const t1 = performance.now();
    const decodeOne = async (i: number) => {
      last[i] = argmax(await seqs[i]!.decode(last[i]!));
    };
    for (let k = 0; k < nDecode; k++) {
      if (sequential) for (let i = 0; i < n; i++) await decodeOne(i);
      else await Promise.all(seqs.map((_, i) => decodeOne(i)));
    }
    const t2 = performance.now();
    return { aggregate: (n * nDecode * 1000) / (t2 - t1), ttftMs: ttft.reduce((a, b) => a + b, 0) / n };
  } finally {
    for (const s of seqs) s.free();
  }
}

/** The one-context measurement at N, in a child process (why: the file header). */
async function oneContextRun(n: number): Promise<Measure> {
  const cmd = [process.execPath, import.meta.path, "--one-context", String(n), "--model", modelPath, "--threads", String(threads), "--prompt", String(nPrompt), "--decode", String(nDecode)];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe", env: process.env });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited with ${code}: ${err.slice(-500)}`);
  return JSON.parse(out.trim().split("\n").at(-1)!) as Measure;
}

/**
 * llama-batched-bench at N sequences: its aggregate decode t/s and prefill time (its first token
 * comes after all N prompts, in one batch). Run per N, between Steerkit's runs at that N, so drift
 * in the machine's speed hits both sides alike.
 */
async function llamaCppRun(n: number): Promise<Measure> {
  const cmd = [tool!, "-m", modelPath, "-c", String(n * contextLength), "-b", "512", "-ub", "512", "-npp", String(nPrompt), "-ntg", String(nDecode), "-npl", String(n), "-t", String(threads), "-kvu", "--output-format", "jsonl"];
  const proc = Bun.spawn(cmd, { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`${cmd.join(" ")} exited with ${code}: ${err.slice(-500)}`);
  const row = out.split("\n").find((l) => l.startsWith("{"));
  if (!row) throw new Error(`${cmd.join(" ")} printed no result: ${out.slice(-500)}`);
  const r = JSON.parse(row) as { t_pp: number; speed_tg: number };
  return { aggregate: r.speed_tg, ttftMs: r.t_pp * 1000 };
}

/** /health round trips (ms) while 8 streams of the chat server generate. */
async function healthUnderLoad(batched: boolean): Promise<number[]> {
  const server = await createChatServer({ model, parallel: 8, batched, maxTokens: nDecode * 4 });
  const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: server.fetch, idleTimeout: 0 });
  const url = http.url.href.replace(/\/$/, "");
  try {
    let open = 8;
    const streams = Array.from({ length: 8 }, (_, i) =>
      fetch(url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: `Once upon a time ${i}`, max_tokens: nDecode * 4, ignore_eos: true, stream: true, temperature: 0 }) }).then(async (r) => {
        const reader = r.body!.getReader();
        while (!(await reader.read()).done);
        open--;
      }),
    );
    while (server.stats().active < 8) await Bun.sleep(5);
    const latencies: number[] = [];
    while (open === 8) {
      const t0 = performance.now();
      await (await fetch(url + "/health")).json();
      latencies.push(performance.now() - t0);
      await Bun.sleep(20);
    }
    await Promise.all(streams);
    return latencies;
  } finally {
    await server.close();
    http.stop(true);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

type Config = "batched" | "steered" | "single";
const results = new Map<string, Measure[]>();
const key = (c: Config | "llama.cpp", n: number) => `${c}:${n}`;
const push = (k: string, m: Measure) => results.set(k, [...(results.get(k) ?? []), m]);

if (childN !== undefined) {
  // The child: warm up (the first passes fault the mmap'd weights in), measure, print, exit.
  await drive(model, 1, false, true);
  console.log(JSON.stringify(await drive(model, Number(childN), false, true)));
  model.dispose();
  process.exit(0);
}

// Warm-up, not recorded: the first passes after loading fault the mmap'd weights in. Through a
// batch, so this process never decodes on the JS thread before the /health runs (file header).
{
  const warm = model.batched({ sequences: 1 });
  await drive(warm, 1, false, false);
  warm.dispose();
}
const configs: (Config | "llama.cpp")[] = tool ? ["batched", "llama.cpp", "steered", "single"] : ["batched", "steered", "single"];
const bar = progressBar(rounds * Ns.length * configs.length + 2, "batched bench");
for (let r = 0; r < rounds; r++) {
  for (const n of Ns) {
    const batch = model.batched({ sequences: n });
    for (const c of r % 2 ? [...configs].reverse() : configs) {
      const m = c === "llama.cpp" ? await llamaCppRun(n) : c === "single" ? await oneContextRun(n) : await drive(batch, n, c === "steered", false);
      push(key(c, n), m);
      bar.tick(1, `N=${n} ${c}`);
    }
    batch.dispose();
  }
}
const healthBatched = await healthUnderLoad(true);
bar.tick(1, "health (batched)");
const healthSingle = await healthUnderLoad(false);
bar.done("health (one context each)");

const med = (k: string, f: (m: Measure) => number) => {
  const ms = results.get(k);
  return ms ? median(ms.map(f)) : NaN;
};
const fmt = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "–");
console.log(`\n${model.info.name}, threads ${threads}, prompt ${nPrompt}, decode ${nDecode}, rounds ${rounds}, libraries ${process.env.STEERKIT_LLAMA_LIB_DIR ?? "(prebuilt)"}\n`);
console.log("| N | llama.cpp t/s | batched t/s | vs llama.cpp | steered t/s | vs batched | one context each t/s | batched vs one-context | TTFT ms llama.cpp / batched / one-context |");
console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---|");
for (const n of Ns) {
  const agg = (c: Config | "llama.cpp") => med(key(c, n), (m) => m.aggregate);
  const ttft = (c: Config | "llama.cpp") => med(key(c, n), (m) => m.ttftMs);
  const b = agg("batched"), lc = agg("llama.cpp"), s = agg("steered"), one = agg("single");
  console.log(`| ${n} | ${fmt(lc)} | ${fmt(b)} | ${fmt(b / lc, 2)} | ${fmt(s)} | ${fmt(s / b, 2)} | ${fmt(one)} | ${fmt(b / one, 2)} | ${fmt(ttft("llama.cpp"), 0)} / ${fmt(ttft("batched"), 0)} / ${fmt(ttft("single"), 0)} |`);
}
const scale = med(key("batched", 8), (m) => m.aggregate) / med(key("batched", 1), (m) => m.aggregate);
console.log(`\nbatched N=8 / N=1 aggregate: ${fmt(scale, 2)}x`);
for (const [name, xs] of [["batched", healthBatched], ["one context each", healthSingle]] as const) {
  console.log(`/health while 8 streams generate (${name} server): median ${fmt(median(xs))} ms, p95 ${fmt(quantile(xs, 0.95))} ms, max ${fmt(Math.max(...xs))} ms over ${xs.length} requests`);
}
if (!tool) console.log("\n(llama.cpp column skipped: set STEERKIT_LLAMA_BATCHED_BENCH to llama-batched-bench of the pinned release)");
model.dispose();

// ---- ONNX Runtime (bench/batched-onnx.ts): batched view vs one session.run per sequence ----
const onnxDir = process.env.STEERKIT_BENCH_ONNX;
if (onnxDir) {
  const { runOnnxBatchedBench } = await import("./batched-onnx.ts");
  console.log(`\n${(await runOnnxBatchedBench({ dir: onnxDir, threads, nPrompt, nDecode, Ns, rounds })).join("\n")}`);
}
