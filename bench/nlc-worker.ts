/**
 * The node-llama-cpp side of bench/llama-cpp.ts, in its own process (see there why). Reads one JSON
 * request per stdin line, answers one JSON line on stdout.
 */
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const dir = process.env.NLC_DIR!;
const reply = (x: unknown) => process.stdout.write(JSON.stringify(x) + "\n");
let seq: any;
try {
  const nlc = await import(pathToFileURL(join(dir, "node_modules", "node-llama-cpp", "dist", "index.js")).href);
  const llama = await nlc.getLlama({ gpu: false, build: "never", logLevel: "error" });
  const model = await llama.loadModel({ modelPath: process.env.NLC_MODEL! });
  const ctx = await model.createContext({ contextSize: Number(process.env.NLC_CONTEXT), batchSize: 512, threads: Number(process.env.NLC_THREADS) });
  seq = ctx.getSequence();
} catch (e) {
  reply({ error: (e as Error).message });
  process.exit(0);
}

for await (const line of console) {
  const msg = JSON.parse(line) as { cmd: string; prompt?: number[]; decodeTokens?: number[] };
  if (msg.cmd === "ready") {
    reply({ prefill: 0, decode: 0 });
    continue;
  }
  const prompt = msg.prompt!, nDecode = msg.decodeTokens!.length;
  await seq.clearHistory();
  let t0 = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt);
  const prefill = prompt.length / ((performance.now() - t0) / 1000);
  // Its decode loop samples (greedy) inside the library: that is what a user of it gets.
  t0 = performance.now();
  let n = 0;
  for await (const _ of seq.evaluate([msg.decodeTokens![0]], { temperature: 0 })) if (++n >= nDecode) break;
  const decode = nDecode / ((performance.now() - t0) / 1000);
  reply({ prefill, decode });
}
