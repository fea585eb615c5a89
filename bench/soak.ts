/**
 * Memory soak of the chat server: does it hold its memory flat under hours of mixed traffic? The
 * server (`examples/chat.ts` on the embedded model, its shipped SAE and direction registered) runs
 * in a child process on 127.0.0.1; this process is the client: `--clients` loops sending, for
 * `--minutes`, a seeded mix of streamed and JSON completions, steered (add-vector, sae-clamp,
 * ablate-direction) or not, with per-token traces, chat and text, cancels mid-stream and while
 * queued, bad requests (400), an oversized body (413) and, with more clients than sequences plus
 * queue, 429s. Every `--sample` seconds it reads the server's RSS and JS heap from `/metrics`.
 *
 * Verdict: after `--warmup` minutes, the median RSS of the last window (one minute, or a fifth of
 * the run if shorter) may exceed the median of the first window after warm-up by at most
 * `--bound-mb` (default 64 MB); otherwise exit 1. The server must also end idle (no sequence
 * held, nobody queued). Writes a Markdown summary, and with `--svg <file>` a plot of RSS and heap
 * over time. Loopback only; every loop stops at the deadline.
 *
 *   nice -n 19 bun bench/soak.ts [--minutes 10] [--clients 8] [--parallel 4] [--queue 4] [--warmup 1]
 *     [--bound-mb 64] [--sample 5] [--seed 1] [--svg bench/soak.svg]      (bun run soak)
 */
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { progressBar } from "../src/cli/progress.ts";
import { createRng, type Rng } from "../src/core/sampling.ts";

const { values: flags } = parseArgs({
  options: {
    minutes: { type: "string" }, clients: { type: "string" }, parallel: { type: "string" }, queue: { type: "string" },
    warmup: { type: "string" }, "bound-mb": { type: "string" }, sample: { type: "string" }, seed: { type: "string" }, svg: { type: "string" },
  },
});
const num = (name: string, fallback: number) => {
  const v = flags[name as keyof typeof flags];
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a non-negative number, got "${v}"`);
  return n;
};
const minutes = num("minutes", 10);
const clients = num("clients", 8);
const parallel = num("parallel", 4);
const queue = num("queue", 4);
const warmupMinutes = num("warmup", Math.min(1, minutes / 5));
const boundMb = num("bound-mb", 64);
const sampleSeconds = num("sample", 5);
const seed = num("seed", 1);

// ---- the server --------------------------------------------------------------------------------

const server = Bun.spawn(["bun", "examples/chat.ts", "--port", "0", "--parallel", String(parallel), "--queue", String(queue), "--threads", "1"], {
  cwd: new URL("..", import.meta.url).pathname,
  stdin: "ignore",
  stdout: "pipe",
  stderr: "inherit",
});
const url = await (async () => {
  const reader = server.stdout.getReader();
  let out = "";
  while (!/http:\/\/\S+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`examples/chat.ts exited before printing its URL: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  return /(http:\/\/\S+?)\/?(\s|$)/.exec(out)![1]!;
})();

interface Sample {
  readonly t: number; // seconds since the load started
  readonly rss: number; // bytes
  readonly heap: number;
}

async function memory(): Promise<{ rss: number; heap: number }> {
  const text = await (await fetch(url + "/metrics")).text();
  const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
  return { rss: read("process_resident_memory_bytes"), heap: read("steerkit_js_heap_used_bytes") };
}

// ---- the traffic -------------------------------------------------------------------------------

const PROMPTS = ["Once upon a time", "The little dog", "Lily and Ben went to the park", "One day, a girl named Sue"];
const STEERINGS: unknown[] = [
  [{ plugin: "add-vector", options: { vector: "dog", scale: 1 } }],
  [{ plugin: "sae-clamp", options: { sae: "sae", latents: [{ index: 88, mode: "clamp", value: 4 }] } }],
  [{ plugin: "ablate-direction", options: { direction: "dog", points: ["resid_post.1", "resid_post.2", "resid_post.3"] } }],
  [{ plugin: "add-vector", options: { points: ["resid_post.2"], vector: "dog", scale: 2, positions: "generated" } }, { plugin: "sae-clamp", options: { sae: "sae", latents: [{ index: 12, mode: "zero" }] } }],
];
const TRACES = [{ sae: "sae", latent: 88 }, { direction: "dog", point: "resid_post.2" }];
const BAD: unknown[] = [
  { steering: [{ plugin: "no-such-plugin" }] },
  { steering: [{ plugin: "logger", options: { file: "/tmp/x" } }] },
  { steering: [{ plugin: "sae-clamp", options: { sae: "sae", latents: [{ index: 99999, mode: "zero" }] } }] },
  { trace: { direction: "nope", point: "resid_post.2" } },
  { max_tokens: 100000 },
  { temperature: -1 },
];

type Outcome = "ok" | "cancelled" | "bad request" | "too large" | "queue full" | "failed";
const outcomes: Record<Outcome, number> = { ok: 0, cancelled: 0, "bad request": 0, "too large": 0, "queue full": 0, failed: 0 };
let tokens = 0;
const failures: string[] = [];

const pick = <T,>(rng: Rng, xs: readonly T[]): T => xs[Math.floor(rng() * xs.length)]!;

async function once(rng: Rng): Promise<void> {
  const chat = rng() < 0.3;
  const body: Record<string, unknown> = {
    max_tokens: 16 + Math.floor(rng() * 112),
    temperature: 0.8,
    seed: Math.floor(rng() * 2 ** 32),
    ...(chat ? { messages: [{ role: "user", content: pick(rng, PROMPTS) }] } : { prompt: pick(rng, PROMPTS) }),
  };
  const r = rng();
  let cancelAfter = -1; // chunks read before leaving; 0: leave before the answer starts (maybe while queued)
  if (r < 0.35) body.stream = true;
  else if (r < 0.55) Object.assign(body, { stream: true, steering: pick(rng, STEERINGS), trace: pick(rng, TRACES) });
  else if (r < 0.65) Object.assign(body, { steering: pick(rng, STEERINGS) });
  else if (r < 0.85) {
    Object.assign(body, { stream: true, max_tokens: 400, ignore_eos: true, ...(rng() < 0.5 && { steering: pick(rng, STEERINGS), trace: pick(rng, TRACES) }) });
    cancelAfter = Math.floor(rng() * 6);
  } else if (r < 0.98) Object.assign(body, pick(rng, BAD));
  else body.padding = "x".repeat(5 * 1024 * 1024); // over the 4 MiB body limit: refused before it is parsed

  const client = new AbortController();
  if (cancelAfter === 0) setTimeout(() => client.abort(), Math.floor(rng() * 30));
  let res: Response;
  try {
    res = await fetch(url + (chat ? "/v1/chat/completions" : "/v1/completions"), {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: client.signal,
    });
  } catch (e) {
    if (client.signal.aborted) return void outcomes.cancelled++;
    throw e;
  }
  if (res.status === 400 || res.status === 403) return void (outcomes["bad request"]++, await res.arrayBuffer());
  if (res.status === 413) return void (outcomes["too large"]++, await res.arrayBuffer());
  if (res.status === 429) return void (outcomes["queue full"]++, await res.arrayBuffer());
  if (res.status !== 200) {
    outcomes.failed++;
    failures.push(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
    return;
  }
  if (!body.stream) {
    const json = (await res.json()) as { usage: { completion_tokens: number } };
    tokens += json.usage.completion_tokens;
    return void outcomes.ok++;
  }
  const reader = res.body!.getReader();
  let chunks = 0;
  let text = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
      if (cancelAfter > 0 && ++chunks >= cancelAfter) {
        await reader.cancel();
        return void outcomes.cancelled++;
      }
    }
  } catch (e) {
    if (client.signal.aborted) return void outcomes.cancelled++;
    throw e;
  }
  if (!text.trimEnd().endsWith("data: [DONE]") || text.includes('"error"')) {
    outcomes.failed++;
    failures.push(`stream: ${text.slice(-300)}`);
    return;
  }
  tokens += (text.match(/"(content|text)":"[^"]/g) ?? []).length;
  outcomes.ok++;
}

// ---- the run -----------------------------------------------------------------------------------

const totalSeconds = minutes * 60;
const samples: Sample[] = [];
const t0 = performance.now();
const elapsed = () => (performance.now() - t0) / 1000;
const deadline = t0 + totalSeconds * 1000;
const bar = progressBar(Math.round(totalSeconds), "soak");
const mb = (b: number) => (b / 1024 / 1024).toFixed(1);

const sampler = (async () => {
  let lastLog = -Infinity;
  while (performance.now() < deadline) {
    const m = await memory();
    samples.push({ t: elapsed(), ...m });
    const done = Object.values(outcomes).reduce((a, b) => a + b, 0);
    bar.update(Math.min(Math.round(elapsed()), Math.round(totalSeconds)), `rss ${mb(m.rss)} MB heap ${mb(m.heap)} MB, ${done} requests`);
    // A line now and then for logs (the bar draws only on a terminal).
    if (elapsed() - lastLog >= 60) {
      lastLog = elapsed();
      console.log(`${elapsed().toFixed(0)} s: rss ${mb(m.rss)} MB, heap ${mb(m.heap)} MB, ${done} requests (${JSON.stringify(outcomes)})`);
    }
    await Bun.sleep(Math.min(sampleSeconds * 1000, Math.max(0, deadline - performance.now())));
  }
})();

await Promise.all(
  Array.from({ length: clients }, async (_, i) => {
    const rng = createRng(seed * 1000 + i);
    while (performance.now() < deadline) {
      try {
        await once(rng);
      } catch (e) {
        outcomes.failed++;
        failures.push(String(e));
      }
    }
  }),
);
await sampler;
bar.done();

// Idle at the end: every sequence released, nobody queued (a leak of slots shows here first).
let health = (await (await fetch(url + "/health")).json()) as { active: number; queued: number };
for (let i = 0; i < 50 && (health.active > 0 || health.queued > 0); i++) {
  await Bun.sleep(100);
  health = (await (await fetch(url + "/health")).json()) as typeof health;
}
const final = await memory();
samples.push({ t: elapsed(), ...final });
server.kill();

// ---- the verdict -------------------------------------------------------------------------------

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor(s.length / 2)]! : NaN;
};
const warm = warmupMinutes * 60;
const window = Math.min(60, (totalSeconds - warm) / 5);
const inWindow = (from: number, to: number) => samples.filter((s) => s.t >= from && s.t < to);
const first = inWindow(warm, warm + window);
const last = inWindow(totalSeconds - window, Infinity);
const base = { rss: median(first.map((s) => s.rss)), heap: median(first.map((s) => s.heap)) };
const end = { rss: median(last.map((s) => s.rss)), heap: median(last.map((s) => s.heap)) };
const maxRss = Math.max(...samples.map((s) => s.rss));
const growthMb = (end.rss - base.rss) / 1024 / 1024;
const requests = Object.values(outcomes).reduce((a, b) => a + b, 0);
const idle = health.active === 0 && health.queued === 0;
const pass = growthMb <= boundMb && idle && outcomes.failed === 0;

const summary = `## Soak: ${minutes} min, ${clients} clients, ${parallel} sequences, queue ${queue} (seed ${seed})

| | RSS MB | JS heap MB |
|---|---:|---:|
| first sample (${samples[0]!.t.toFixed(0)} s) | ${mb(samples[0]!.rss)} | ${mb(samples[0]!.heap)} |
| after warm-up (median, ${warm.toFixed(0)}-${(warm + window).toFixed(0)} s) | ${mb(base.rss)} | ${mb(base.heap)} |
| end (median of the last ${window.toFixed(0)} s) | ${mb(end.rss)} | ${mb(end.heap)} |
| max | ${mb(maxRss)} | ${mb(Math.max(...samples.map((s) => s.heap)))} |

RSS growth after warm-up: ${growthMb.toFixed(1)} MB (bound ${boundMb} MB); idle at the end: ${idle ? "yes" : `no (${JSON.stringify(health)})`}.
Requests: ${requests} (${Object.entries(outcomes).map(([k, n]) => `${k} ${n}`).join(", ")}); about ${tokens} tokens streamed or returned; ${samples.length} memory samples.
Verdict: **${pass ? "PASS" : "FAIL"}**
`;
console.log(summary);
for (const f of failures.slice(0, 10)) console.error("failure:", f);
if (flags.svg) {
  writeFileSync(flags.svg, plot(samples, warm, base.rss + boundMb * 1024 * 1024));
  console.log(`plot: ${flags.svg}`);
}
process.exit(pass ? 0 : 1);

/** RSS and heap over time, with the warm-up shaded and the bound drawn. */
function plot(points: readonly Sample[], warmupSeconds: number, bound: number): string {
  const W = 720, H = 300, L = 60, R = 20, T = 30, B = 40;
  const tMax = Math.max(...points.map((p) => p.t), 1);
  const yMax = Math.max(bound, ...points.map((p) => p.rss)) * 1.08;
  const x = (t: number) => L + ((W - L - R) * t) / tMax;
  const y = (b: number) => H - B - ((H - T - B) * b) / yMax;
  const line = (key: "rss" | "heap") => points.map((p, i) => `${i ? "L" : "M"}${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  const ticks = Array.from({ length: 5 }, (_, i) => (yMax / 4) * i);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="11">
<rect width="${W}" height="${H}" fill="#fff"/>
<rect x="${L}" y="${T}" width="${x(warmupSeconds) - L}" height="${H - T - B}" fill="#f0f0f0"/>
<text x="${L + 4}" y="${T + 12}" fill="#888">warm-up</text>
${ticks.map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eee"/><text x="${L - 6}" y="${y(v) + 4}" text-anchor="end">${(v / 1024 / 1024).toFixed(0)}</text>`).join("\n")}
<line x1="${L}" x2="${W - R}" y1="${y(bound)}" y2="${y(bound)}" stroke="#c33" stroke-dasharray="4 3"/><text x="${W - R}" y="${y(bound) - 4}" text-anchor="end" fill="#c33">bound</text>
<path d="${line("rss")}" fill="none" stroke="#2f6fb0" stroke-width="1.5"/>
<path d="${line("heap")}" fill="none" stroke="#e08a1e" stroke-width="1.5"/>
<text x="${L}" y="18" font-size="13">chat server memory under mixed load (MB) — <tspan fill="#2f6fb0">RSS</tspan>, <tspan fill="#e08a1e">JS heap</tspan></text>
<text x="${(L + W - R) / 2}" y="${H - 8}" text-anchor="middle">minutes: 0 … ${(tMax / 60).toFixed(1)}</text>
<line x1="${L}" x2="${L}" y1="${T}" y2="${H - B}" stroke="#999"/><line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#999"/>
</svg>
`;
}
