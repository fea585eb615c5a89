/**
 * The per-architecture cases that test/llama-cpp/architectures.test.ts checks and
 * test/fixtures/architectures/make-golden.ts records from llama.cpp's own tool: one tiny seeded
 * random model per architecture (src/testing/random-gguf.ts), a prompt, and a control vector whose
 * `direction.N` is added at `resid_post.N`.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeControlVector } from "../../src/directions/control-vector.ts";
import { MORE_RANDOM_GGUF_ARCHITECTURES, RANDOM_GGUF_ARCHITECTURES, writeRandomGguf, type RandomGgufArchitecture } from "../../src/testing/random-gguf.ts";
import { randomVector } from "./hooks-helpers.ts";

export const ARCHS: readonly RandomGgufArchitecture[] = [...RANDOM_GGUF_ARCHITECTURES, ...MORE_RANDOM_GGUF_ARCHITECTURES];
export const SEED = 1;
export const PROMPT = "Once upon a time";
export const N_PREDICT = 32;

/** Layers the control vector steers (llama.cpp refuses direction.0): the second block and the last. */
export function steeredLayers(nLayers: number): number[] {
  return [...new Set([1, nLayers - 1])];
}

/** The steering vector at a layer: deterministic, entries in [-0.6, 0.6] (norm ~2.8 at d 64, like a block's output). */
export function steeringVector(d: number, layer: number): Float32Array {
  return randomVector(d, 1000 + layer, 0.6);
}

export interface CaseFiles {
  readonly gguf: string;
  readonly controlVector: string;
  readonly nLayers: number;
  readonly dModel: number;
}

/** Write the case's model and control vector into `dir`. */
export function writeCase(dir: string, arch: RandomGgufArchitecture): CaseFiles {
  const gguf = join(dir, `${arch}.gguf`);
  const m = writeRandomGguf(gguf, { arch, seed: SEED });
  const { nLayers, nEmbd } = m.config;
  const vectors = new Map(steeredLayers(nLayers).map((l) => [`resid_post.${l}`, steeringVector(nEmbd, l)] as const));
  const controlVector = join(dir, `${arch}.cv.gguf`);
  writeFileSync(controlVector, encodeControlVector(vectors, { modelHint: arch, nLayers }));
  return { gguf, controlVector, nLayers, dModel: nEmbd };
}

/** Runs of a tool before giving up on a complete output (about half of llama-eval-callback's runs on a busy machine lose the tail). */
const ATTEMPTS = 40;

export interface ToolRun {
  /** stdout: the prompt's and the generated tokens' pieces, then "\n\n". */
  readonly stdout: Uint8Array;
  /** The prompt's token ids as llama-completion logs them (-v); empty when the log lost the line. */
  readonly promptTokens: number[];
}

/**
 * llama-completion, greedy, EOS ignored, one thread; with the control vector when given.
 *
 * Its text goes to stdout through common/log.cpp's logging thread, which on a busy machine sometimes
 * exits before flushing the tail (seen here: the same run printing 37 bytes once and 70 bytes three
 * times). A complete run ends with the "\n\n" the tool prints last; runs repeat until two complete
 * ones agree.
 */
export function runLlamaCompletion(binary: string, gguf: string, controlVector?: string): ToolRun {
  let previous: ToolRun | null = null;
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const run = runOnce(binary, gguf, controlVector);
    const n = run.stdout.length;
    if (run.promptTokens.length === 0) continue; // the log line was lost too
    if (!(n >= 2 && run.stdout[n - 1] === 10 && run.stdout[n - 2] === 10)) continue;
    // Two complete runs that agree: a truncated tail cannot pass for the whole output.
    if (previous && Buffer.from(previous.stdout).equals(Buffer.from(run.stdout))) return run;
    previous = run;
  }
  throw new Error(`llama-completion on ${gguf} did not print the same complete output twice in ${ATTEMPTS} runs`);
}

function runOnce(binary: string, gguf: string, controlVector?: string): ToolRun {
  // -fa off: the adapter's prebuilt CPU libraries (@node-llama-cpp/linux-x64) give the same logits
  // whatever flash_attn_type says, equal to a local build's with flash attention off; a local build
  // resolves "auto" to its flash-attention kernel, whose f16 accumulation moves logits by ~1e-4:
  // enough to flip a near-tie (seen on the llama case, a 7e-4 gap at step 12).
  const args = [binary, "-m", gguf, "-p", PROMPT, "-n", String(N_PREDICT), "--temp", "0", "--ignore-eos", "-fa", "off", "-t", "1", "--no-warmup", "-no-cnv", "-v"];
  if (controlVector) args.push("--control-vector", controlVector);
  const p = Bun.spawnSync(args, { stdin: "ignore" });
  const err = p.stderr.toString();
  if (p.exitCode !== 0) throw new Error(`${args.join(" ")} exited ${p.exitCode}: ${err.slice(-800)}`);
  const line = /tokens: \[(.*)\]/.exec(err);
  const promptTokens = line ? [...line[1]!.matchAll(/':(\d+)/g)].map((m) => Number(m[1])) : [];
  return { stdout: new Uint8Array(p.stdout), promptTokens };
}

/** One tensor as llama-eval-callback prints it: per row the first and last three values, and the sum. */
export interface DumpedTensor {
  /** The ggml op ("ADD", "GET_ROWS", ...) and its inputs' names, as the dump's header line gives them. */
  readonly op: string;
  readonly srcs: readonly string[];
  readonly rows: { readonly head: number[]; readonly tail: number[] }[];
  readonly sum: number;
}

/**
 * llama-eval-callback over the prompt (one forward pass, -fa off as above): every f32 tensor of the
 * graph by name (the first of a repeated name; unnamed ones as ggml's `node_N`). Retried until the dump reaches `lastName`
 * (the tool's log thread may drop the tail, see runLlamaCompletion).
 */
export function runEvalCallback(binary: string, gguf: string, lastName: string): Map<string, DumpedTensor> {
  const args = [binary, "-m", gguf, "-p", PROMPT, "-n", "1", "-t", "1", "-fa", "off"];
  for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
    const p = Bun.spawnSync(args, { stdin: "ignore" });
    const text = p.stdout.toString() + p.stderr.toString();
    const out = new Map<string, DumpedTensor>();
    let current: { name: string; op: string; srcs: string[]; rows: { head: number[]; tail: number[] }[] } | null = null;
    for (const line of text.split("\n")) {
      const head = /common_debug_cb_eval:\s+(.+?) = \(f32\)\s+([A-Z_0-9]+)\((.*)\) = \{/.exec(line);
      if (head) {
        const srcs = [...head[3]!.matchAll(/(?:^|, )([^{},]+)\{/g)].map((m) => m[1]!);
        current = { name: head[1]!, op: head[2]!, srcs, rows: [] };
        continue;
      }
      if (!current) continue;
      const row = /^\s*\[\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+),\s*\.\.\.,\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+)\s*\],?\s*$/.exec(line);
      if (row) current.rows.push({ head: [1, 2, 3].map((i) => Number(row[i])), tail: [4, 5, 6].map((i) => Number(row[i])) });
      const sum = /^\s*sum = (\S+)/.exec(line);
      if (sum) {
        if (!out.has(current.name)) out.set(current.name, { op: current.op, srcs: current.srcs, rows: current.rows, sum: Number(sum[1]) });
        current = null;
      }
    }
    if (out.has(lastName)) return out;
  }
  throw new Error(`llama-eval-callback on ${gguf} never dumped ${lastName} in ${ATTEMPTS} runs`);
}
