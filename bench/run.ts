/**
 * `bun run bench`: every benchmark, one after another, each printing a markdown table of ratios
 * against a baseline measured in the same run. Builds the random-weight benchmark model first
 * (bench/models/, gitignored). Pass --quick for fewer rounds.
 *
 * Run it on an otherwise idle machine: ratios hold up under noise, absolute speeds do not.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

const quick = process.argv.includes("--quick");
const here = import.meta.dir;
const run = (script: string, ...args: string[]) => {
  console.log(`\n$ bun bench/${script} ${args.join(" ")}`);
  const p = Bun.spawnSync(["bun", join(here, script), ...args], { stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) console.log(`(bench/${script} exited with ${p.exitCode})`);
};

if (!existsSync(join(here, "models", "random-d1024-l16-f16.gguf"))) run("make-random-gguf.ts");
run("llama-cpp.ts", "--rounds", quick ? "2" : "5");
run("same-model.ts", "--rounds", quick ? "1" : "3"); // converts the random GGUF to ONNX once
run("equal-bits.ts", "--rounds", quick ? "1" : "3", "--profile"); // quantizes and converts once (bench/models/)
run("onnx.ts", "--rounds", quick ? "3" : "7", "--wide", "--converted");
run("server.ts", "--model", join(here, "models", "random-d1024-l16-f16.gguf"), "--threads", "2", "--clients", "1,2", "--seconds", quick ? "4" : "8", "--rounds", quick ? "1" : "2", "--max-tokens", "32");
run("batched.ts", "--rounds", quick ? "1" : "2"); // llama.cpp column with STEERKIT_LLAMA_BATCHED_BENCH set
run("reference-llama.ts");
run("half.ts", "--rounds", quick ? "3" : "9");
run("sae.ts", "--rounds", quick ? "2" : "5");
run("directions.ts", "--rounds", quick ? "2" : "5");
run("weights-scan.ts", "--rounds", quick ? "2" : "5");
