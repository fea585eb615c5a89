/**
 * Load test of the chat server: what serving over HTTP costs against the same generation loop
 * called in-process. The server (`examples/chat.ts`) runs in a child process on 127.0.0.1; this
 * process is the client: N concurrent streaming clients, each sending requests one after another
 * until the phase's time is up. The in-process baseline runs N concurrent `stream()` loops on the
 * same model file with the same settings. Reported: aggregate generated tokens/s and time to first
 * token p50/p95, unsteered and steered, and the ratios server / in-process. Loopback only, bounded
 * in time; the server's RSS is reported at its start and end.
 *
 *   bun bench/server.ts [--model <gguf>] [--threads 1] [--clients 1,4] [--seconds 4] [--rounds 2] [--max-tokens 64]
 */
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import { preparePlugins, stream, type ChainPlugin } from "../src/index.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { createRegistry } from "../src/plugins/index.ts";

const { values: flags } = parseArgs({
  options: {
    model: { type: "string" }, threads: { type: "string" }, clients: { type: "string" }, seconds: { type: "string" },
    rounds: { type: "string" }, "max-tokens": { type: "string" }, context: { type: "string" },
  },
});
const modelPath = flags.model ?? DEFAULT_MODEL_PATH;
const threads = Number(flags.threads ?? 1);
const clientCounts = (flags.clients ?? "1,4").split(",").map(Number);
const seconds = Number(flags.seconds ?? 4);
const rounds = Number(flags.rounds ?? 2);
const maxTokens = Number(flags["max-tokens"] ?? 64);
const context = Number(flags.context ?? 512);
const parallel = Math.max(...clientCounts);
const PROMPT = "Once upon a time";

interface Sample {
  readonly tokens: number;
  readonly ttftMs: number;
}
interface Phase {
  readonly tokensPerSecond: number;
  readonly ttft: number[];
}

/** N workers repeating `once` until the deadline; aggregate tokens over the wall time. */
async function phase(n: number, once: (seed: number) => Promise<Sample>): Promise<Phase> {
  const deadline = performance.now() + seconds * 1000;
  const ttft: number[] = [];
  let tokens = 0;
  let seed = 1;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (performance.now() < deadline) {
        const s = await once(seed++);
        tokens += s.tokens;
        ttft.push(s.ttftMs);
      }
    }),
  );
  return { tokensPerSecond: (tokens * 1000) / (performance.now() - t0), ttft };
}

// The server, in a child process.
const server = Bun.spawn(
  ["bun", join(import.meta.dir, "../examples/chat.ts"), "--model", modelPath, "--backend", "llama-cpp", "--port", "0", "--threads", String(threads), "--context", String(context), "--parallel", String(parallel), "--queue", "64"],
  { stdout: "pipe", stderr: "inherit" },
);
let url = "";
const out = server.stdout.pipeThrough(new TextDecoderStream()).getReader();
for (let text = ""; !url; ) {
  const { value, done } = await out.read();
  if (done) throw new Error(`the server exited: ${text}`);
  text += value;
  url = /http:\/\/\S+/.exec(text)?.[0].replace(/\/$/, "") ?? "";
}
const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
const rssStart = rss();

// The same model in this process, for the in-process baseline.
const model = await llamaCpp.load(modelPath, { threads, contextLength: context });
const mid = Math.floor(model.info.nLayers / 2);
const recipe = [{ plugin: "add-vector", options: { points: [`resid_post.${mid}`], vector: Array.from({ length: model.info.dModel }, (_, i) => Math.sin(i + 1)), scale: 2 } }];
const steeredPlugins = await preparePlugins(model, await createRegistry().resolve(recipe), {});

async function overHttp(steering: unknown, seed: number): Promise<Sample> {
  const t0 = performance.now();
  const res = await fetch(url + "/v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ prompt: PROMPT, max_tokens: maxTokens, ignore_eos: true, temperature: 0.8, seed, stream: true, stream_options: { include_usage: true }, steering }),
  });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttftMs = -1;
  let tokens = 0;
  let buf = "";
  for await (const piece of res.body!.pipeThrough(new TextDecoderStream())) {
    buf += piece;
    for (let i; (i = buf.indexOf("\n\n")) >= 0; buf = buf.slice(i + 2)) {
      const event = buf.slice(0, i);
      if (!event.startsWith("data: {")) continue;
      const chunk = JSON.parse(event.slice(6));
      if (ttftMs < 0 && chunk.choices?.[0]?.text) ttftMs = performance.now() - t0;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return { tokens, ttftMs };
}

async function inProcess(plugins: readonly ChainPlugin[], seed: number): Promise<Sample> {
  const t0 = performance.now();
  let ttftMs = -1;
  let tokens = 0;
  for await (const ev of stream(model, { prompt: PROMPT, maxTokens, ignoreEos: true, temperature: 0.8, seed, plugins })) {
    if (ev.type === "token" && ttftMs < 0 && ev.text) ttftMs = performance.now() - t0;
    if (ev.type === "done") tokens = ev.result.tokens.length;
  }
  return { tokens, ttftMs };
}

const configs = clientCounts.flatMap((n) =>
  [false, true].map((steered) => ({
    n,
    steered,
    http: (seed: number) => overHttp(steered ? recipe : null, seed),
    local: (seed: number) => inProcess(steered ? steeredPlugins : [], seed),
  })),
);
const results = new Map<string, { http: Phase[]; local: Phase[] }>();
await phase(1, (s) => overHttp(null, s)); // warm-up
for (let r = 0; r < rounds; r++) {
  for (const c of configs) {
    const key = `${c.n}|${c.steered}`;
    const entry = results.get(key) ?? { http: [], local: [] };
    entry.http.push(await phase(c.n, c.http));
    entry.local.push(await phase(c.n, c.local));
    results.set(key, entry);
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))] ?? NaN;
console.log(`\n${model.info.name} (${model.info.nLayers} layers, d=${model.info.dModel}), ${threads} threads, ${maxTokens} tokens per request, ${seconds} s per phase, ${rounds} rounds (median), server --parallel ${parallel}\n`);
console.log("| clients | steering | server tok/s | in-process tok/s | ratio | server TTFT p50 / p95 ms | in-process TTFT p50 / p95 ms |");
console.log("|---:|---|---:|---:|---:|---:|---:|");
for (const c of configs) {
  const e = results.get(`${c.n}|${c.steered}`)!;
  const h = median(e.http.map((p) => p.tokensPerSecond));
  const l = median(e.local.map((p) => p.tokensPerSecond));
  const ht = e.http.flatMap((p) => p.ttft);
  const lt = e.local.flatMap((p) => p.ttft);
  const f = (x: number) => x.toFixed(1);
  console.log(`| ${c.n} | ${c.steered ? "add-vector" : "none"} | ${f(h)} | ${f(l)} | ${(h / l).toFixed(2)} | ${f(pct(ht, 0.5))} / ${f(pct(ht, 0.95))} | ${f(pct(lt, 0.5))} / ${f(pct(lt, 0.95))} |`);
}
console.log(`\nserver RSS: ${rssStart.toFixed(0)} MB at start, ${rss().toFixed(0)} MB at the end`);
server.kill();
model.dispose();
