/**
 * The llama.cpp side of bench/llama-cpu-path.ts, in its own process: the adapter loads libllama
 * once per process, so each ggml CPU path (variant library, extra buffer types on or off) needs a
 * process of its own. Loads SK_GGUF through the adapter (STEERKIT_LLAMA_LIB_DIR and LD_PRELOAD set
 * by the parent), answers one JSON line per stdin line: first `{ systemInfo, refusals }` (refusals:
 * how often the bench/no-extra-bufts.c shim, when preloaded, withheld the extra buffer types), then one decode
 * rate per `run` request, measured exactly as bench/equal-bits.ts measures the in-process one.
 */
import { dlopen } from "bun:ffi";
import { llamaCpp } from "../src/adapters/llama-cpp/index.ts";
import { loadLlamaLibrary } from "../src/adapters/llama-cpp/ffi.ts";
import { generate } from "../src/core/generate.ts";

const reply = (x: unknown) => process.stdout.write(`${JSON.stringify(x)}\n`);
const tokens = Number(process.env.SK_TOKENS);
const prompt = JSON.parse(process.env.SK_PROMPT!) as number[];
let model: Awaited<ReturnType<typeof llamaCpp.load>>;
try {
  model = await llamaCpp.load(process.env.SK_GGUF!, { threads: Number(process.env.SK_THREADS) });
  // dlopen of the preloaded shim returns the loaded copy: its counter is the one libllama hit.
  const shim = process.env.LD_PRELOAD ? dlopen(process.env.LD_PRELOAD, { sk_no_extra_bufts_refusals: { args: [], returns: "i32" } }) : null;
  reply({ systemInfo: loadLlamaLibrary().systemInfo, refusals: shim ? shim.symbols.sk_no_extra_bufts_refusals() : 0 });
} catch (e) {
  reply({ error: (e as Error).message });
  process.exit(0);
}
for await (const line of console) {
  if (line.trim() !== "run") continue;
  const r = await generate(model, { tokens: prompt, maxTokens: tokens, temperature: 0, ignoreEos: true });
  reply({ tokensPerSecond: r.timings.tokensPerSecond });
}
