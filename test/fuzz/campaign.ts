// The fuzzing campaign: mutate a seed input of each format (the embedded GGUF, its ONNX conversion,
// an SAE, a direction file), load every mutant in a worker process with a time limit, and count what
// happened. Crashes (a worker killed by a signal or exiting without answering) and hangs (no answer
// within the limit) are copied to test/fuzz/regressions/ with a note of the mutation, and replayed by
// test/fuzz/fuzz.test.ts forever after.
//
//   bun run fuzz [--count 300] [--jobs 2] [--seed 1] [--format gguf,onnx,sae,direction,controlvector] [--timeout 20000]
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { ggufLayout, mutateBinary, mutateGguf, mutateJsonText, mutateSafetensors, rng, type Rng } from "./mutate.ts";
import { RESULT_MARK, type FuzzFormat } from "./worker.ts";

export const FORMATS: readonly FuzzFormat[] = ["gguf", "onnx", "sae", "direction", "controlvector"];
const ROOT = join(import.meta.dir, "../..");
export const REGRESSIONS = join(import.meta.dir, "regressions");
const WORKER = join(import.meta.dir, "worker.ts");

export type Outcome = "loaded" | "clean" | "unclean" | "misleading" | "abort" | "hang";

export interface FormatStats {
  mutations: number;
  loaded: number;
  clean: number;
  unclean: number;
  /** Loaded, but the first forward pass gave non-finite numbers (see worker.ts). */
  misleading: number;
  aborts: number;
  hangs: number;
  /** Distinct non-Steerkit error messages (first 20), to fix. */
  uncleanMessages: string[];
  /** Distinct misleading-success messages (first 20). */
  misleadingMessages: string[];
  /** Regression files written. */
  saved: string[];
}

/** A worker process that answers one input at a time. */
class Worker {
  private proc!: Subprocess<"pipe", "pipe", "inherit" | "ignore">;
  private buffer = "";
  private reader!: { read(): Promise<{ value?: Uint8Array; done: boolean }> };
  constructor(private readonly quiet: boolean) {
    this.start();
  }
  private start(): void {
    this.proc = Bun.spawn(["bun", WORKER], { stdin: "pipe", stdout: "pipe", stderr: this.quiet ? "ignore" : "inherit", cwd: ROOT });
    this.reader = this.proc.stdout.getReader();
    this.buffer = "";
  }
  /** Load one input; the outcome, with the message or signal. */
  async run(format: FuzzFormat, path: string, timeoutMs: number): Promise<{ outcome: Outcome; message?: string }> {
    this.proc.stdin.write(`${format}\t${path}\n`);
    this.proc.stdin.flush();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((res) => (timer = setTimeout(() => res("timeout"), timeoutMs)));
    const line = await Promise.race([this.readLine(), timeout]);
    clearTimeout(timer);
    if (line === "timeout") {
      this.proc.kill("SIGKILL");
      await this.proc.exited;
      this.start();
      return { outcome: "hang", message: `no answer within ${timeoutMs} ms` };
    }
    if (line === null) {
      const code = await this.proc.exited;
      const message = `worker died: ${this.proc.signalCode ?? `exit ${code}`}`;
      this.start();
      return { outcome: "abort", message };
    }
    const r = JSON.parse(line) as { outcome: Outcome; message?: string };
    return r;
  }
  private async readLine(): Promise<string | null> {
    for (;;) {
      const nl = this.buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (line.startsWith(RESULT_MARK)) return line.slice(RESULT_MARK.length);
        continue;
      }
      const { value, done } = await this.reader.read();
      if (done) return null;
      this.buffer += new TextDecoder().decode(value);
    }
  }
  async close(): Promise<void> {
    this.proc.stdin.end();
    await this.proc.exited;
  }
}

/** The seed inputs, prepared once per campaign in `work`. */
interface Seeds {
  gguf: { bytes: Uint8Array; layout: ReturnType<typeof ggufLayout> };
  controlVector: { bytes: Uint8Array; layout: ReturnType<typeof ggufLayout> };
  onnxDir: string;
  saeDirs: string[];
  directions: string[];
}

function prepareSeeds(work: string): Seeds {
  const bytes = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));
  const onnxDir = join(work, "seed-onnx");
  const conv = Bun.spawnSync(["bun", join(ROOT, "src/cli/main.ts"), "convert", DEFAULT_MODEL_PATH, onnxDir], { cwd: ROOT });
  if (conv.exitCode !== 0) throw new Error(`steerkit convert failed: ${conv.stderr}`);
  const sae = join(ROOT, "test/fixtures/sae");
  const saeDirs = ["saelens-v6-relu-f32-cnr", "sparsify-f32", "gemma-scope-2b-pt-res/layer_3/width_1k/average_l0_9"].map((d) => join(sae, d));
  const v = Array.from({ length: 64 }, (_, i) => Math.round(Math.sin(i) * 1e4) / 1e4);
  const directions = [JSON.stringify(v), JSON.stringify({ "resid_post.1": v, "resid_post.3": v.map((x) => -x) })];
  // The shipped control vector (llama.cpp / repeng layout: direction.1..4, F32).
  const cv = new Uint8Array(readFileSync(join(ROOT, "models/directions/stories260K-dog/dog.gguf")));
  return { gguf: { bytes, layout: ggufLayout(bytes) }, controlVector: { bytes: cv, layout: ggufLayout(cv) }, onnxDir, saeDirs, directions };
}

/** Write mutant `i` of `format` under `work`; returns its path and what was done. */
function makeInput(format: FuzzFormat, seeds: Seeds, work: string, i: number, r: Rng): { path: string; what: string } {
  switch (format) {
    case "gguf": {
      const m = mutateGguf(seeds.gguf.bytes, seeds.gguf.layout, r);
      const path = join(work, `in-${i}.gguf`);
      writeFileSync(path, m.bytes);
      return { path, what: m.what };
    }
    case "onnx": {
      const dir = join(work, `in-${i}`);
      cpSync(seeds.onnxDir, dir, { recursive: true });
      const x = r();
      const file = x < 0.75 ? "model.onnx" : x < 0.87 ? "tokenizer.json" : x < 0.95 ? "config.json" : "tokenizer_config.json";
      const p = join(dir, file);
      if (file === "model.onnx") {
        const m = mutateBinary(new Uint8Array(readFileSync(p)), r, 4096);
        writeFileSync(p, m.bytes);
        return { path: dir, what: `${file}: ${m.what}` };
      }
      const m = mutateJsonText(readFileSync(p, "utf8"), r);
      writeFileSync(p, m.text);
      return { path: dir, what: `${file}: ${m.what}` };
    }
    case "sae": {
      const src = seeds.saeDirs[Math.floor(r() * seeds.saeDirs.length)]!;
      const dir = join(work, `in-${i}`);
      cpSync(src, dir, { recursive: true });
      const files = [...new Bun.Glob("**/*").scanSync({ cwd: dir, onlyFiles: true })].sort();
      const file = files[Math.floor(r() * files.length)]!;
      const p = join(dir, file);
      const bytes = new Uint8Array(readFileSync(p));
      let m: { bytes?: Uint8Array; text?: string; what: string };
      if (file.endsWith(".json")) m = mutateJsonText(new TextDecoder().decode(bytes), r);
      else if (file.endsWith(".safetensors")) m = mutateSafetensors(bytes, r);
      else m = mutateBinary(bytes, r);
      writeFileSync(p, m.bytes ?? m.text!);
      return { path: dir, what: `${basename(src)}/${file}: ${m.what}` };
    }
    case "controlvector": {
      const m = mutateGguf(seeds.controlVector.bytes, seeds.controlVector.layout, r);
      const path = join(work, `in-${i}.gguf`);
      writeFileSync(path, m.bytes);
      return { path, what: m.what };
    }
    case "direction": {
      const seed = seeds.directions[Math.floor(r() * seeds.directions.length)]!;
      const m = mutateJsonText(seed, r);
      const path = join(work, `in-${i}.json`);
      writeFileSync(path, m.text);
      return { path, what: m.what };
    }
  }
}

export interface CampaignOptions {
  readonly formats?: readonly FuzzFormat[];
  readonly count: number;
  readonly jobs?: number;
  readonly seed?: number;
  readonly timeoutMs?: number;
  /** Copy crashing inputs to test/fuzz/regressions (default true). */
  readonly save?: boolean;
  readonly quiet?: boolean;
  readonly onProgress?: (format: FuzzFormat, done: number, stats: FormatStats) => void;
}

export async function runCampaign(o: CampaignOptions): Promise<Record<string, FormatStats>> {
  const work = mkdtempSync(join(tmpdir(), "steerkit-fuzz-"));
  const seed = o.seed ?? 1;
  const results: Record<string, FormatStats> = {};
  try {
    const seeds = prepareSeeds(work);
    const jobs = o.jobs ?? 2;
    const workers = Array.from({ length: jobs }, () => new Worker(o.quiet ?? true));
    try {
      for (const format of o.formats ?? FORMATS) {
        const stats: FormatStats = { mutations: 0, loaded: 0, clean: 0, unclean: 0, misleading: 0, aborts: 0, hangs: 0, uncleanMessages: [], misleadingMessages: [], saved: [] };
        results[format] = stats;
        const r = rng(seed * 7919 + FORMATS.indexOf(format));
        let next = 0;
        await Promise.all(
          workers.map(async (w) => {
            while (next < o.count) {
              const i = next++;
              const input = makeInput(format, seeds, work, i, r);
              const res = await w.run(format, input.path, o.timeoutMs ?? 20_000);
              stats.mutations++;
              if (res.outcome === "loaded") stats.loaded++;
              else if (res.outcome === "clean") stats.clean++;
              else if (res.outcome === "unclean" || res.outcome === "misleading") {
                const list = res.outcome === "unclean" ? stats.uncleanMessages : stats.misleadingMessages;
                if (res.outcome === "unclean") stats.unclean++;
                else stats.misleading++;
                const key = (res.message ?? "").replace(/\d+/g, "N").slice(0, 200);
                if (list.length < 20 && !list.some((m) => m.replace(/\d+/g, "N").slice(0, 200) === key)) list.push(`${res.message} [${input.what}]`);
              } else {
                if (res.outcome === "abort") stats.aborts++;
                else stats.hangs++;
                if (o.save ?? true) stats.saved.push(saveRegression(format, input, seed, i, res));
              }
              rmSync(input.path, { recursive: true, force: true });
              o.onProgress?.(format, stats.mutations, stats);
            }
          }),
        );
      }
    } finally {
      await Promise.all(workers.map((w) => w.close()));
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return results;
}

/**
 * Keep a crashing input. A GGUF mutant of the same length as the embedded model (or a prefix of it)
 * is kept as the bytes that differ (`<name>.gguf.patch.json`, a few bytes instead of a megabyte);
 * anything else is copied whole.
 */
function saveRegression(format: FuzzFormat, input: { path: string; what: string }, seed: number, i: number, res: { outcome: Outcome; message?: string }): string {
  mkdirSync(REGRESSIONS, { recursive: true });
  const ext = format === "gguf" || format === "controlvector" ? ".gguf" : format === "direction" ? ".json" : "";
  const name = `${format}-s${seed}-${i}${ext}`;
  const patch = format === "gguf" ? ggufPatch(new Uint8Array(readFileSync(input.path))) : null;
  if (patch) writeFileSync(join(REGRESSIONS, `${name}.patch.json`), JSON.stringify(patch));
  else cpSync(input.path, join(REGRESSIONS, name), { recursive: true });
  writeFileSync(join(REGRESSIONS, `${name}.txt`), `${format}\n${res.outcome}: ${res.message ?? ""}\nmutation: ${input.what}\n`);
  return name;
}

interface GgufPatch {
  readonly seed: "stories260K.gguf";
  readonly length: number;
  /** [offset, hex bytes] runs that differ from the seed. */
  readonly runs: [number, string][];
}

function ggufPatch(bytes: Uint8Array): GgufPatch | null {
  const seed = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH));
  if (bytes.length > seed.length) return null;
  const runs: [number, string][] = [];
  for (let p = 0; p < bytes.length; p++) {
    if (bytes[p] === seed[p]) continue;
    let end = p;
    while (end < bytes.length && bytes[end] !== seed[end]) end++;
    runs.push([p, Buffer.from(bytes.subarray(p, end)).toString("hex")]);
    p = end;
  }
  return runs.length > 64 ? null : { seed: "stories260K.gguf", length: bytes.length, runs };
}

/** The input a regression entry names: the file itself, or the GGUF its patch rebuilds (written to `dir`). */
export function regressionInput(name: string, dir: string): string {
  const patchFile = join(REGRESSIONS, `${name}.patch.json`);
  if (!existsSync(patchFile)) return join(REGRESSIONS, name);
  const patch = JSON.parse(readFileSync(patchFile, "utf8")) as GgufPatch;
  const bytes = new Uint8Array(readFileSync(DEFAULT_MODEL_PATH)).slice(0, patch.length);
  for (const [at, hex] of patch.runs) bytes.set(Buffer.from(hex, "hex"), at);
  const out = join(dir, name);
  writeFileSync(out, bytes);
  return out;
}

/** Replay every saved regression input once; returns the ones that still crash or hang. */
export async function replayRegressions(list: { name: string; format: FuzzFormat }[], timeoutMs = 20_000): Promise<{ name: string; outcome: Outcome; message?: string }[]> {
  const w = new Worker(true);
  const dir = mkdtempSync(join(tmpdir(), "steerkit-fuzz-replay-"));
  const bad: { name: string; outcome: Outcome; message?: string }[] = [];
  try {
    for (const { name, format } of list) {
      const res = await w.run(format, regressionInput(name, dir), timeoutMs);
      if (res.outcome === "abort" || res.outcome === "hang") bad.push({ name, ...res });
    }
  } finally {
    await w.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return bad;
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: {
      count: { type: "string", default: "300" },
      jobs: { type: "string", default: "2" },
      seed: { type: "string", default: "1" },
      format: { type: "string", default: FORMATS.join(",") },
      timeout: { type: "string", default: "20000" },
      json: { type: "boolean", default: false },
    },
  });
  const formats = values.format!.split(",") as FuzzFormat[];
  for (const f of formats) if (!FORMATS.includes(f)) throw new Error(`unknown format ${f}; expected ${FORMATS.join(", ")}`);
  const started = Date.now();
  const results = await runCampaign({
    formats,
    count: Number(values.count),
    jobs: Number(values.jobs),
    seed: Number(values.seed),
    timeoutMs: Number(values.timeout),
    onProgress: (format, done, s) => {
      if (done % 500 === 0) console.error(`${format}: ${done} (loaded ${s.loaded}, clean ${s.clean}, unclean ${s.unclean}, misleading ${s.misleading}, aborts ${s.aborts}, hangs ${s.hangs})`);
    },
  });
  if (values.json) console.log(JSON.stringify(results, null, 2));
  else {
    console.log(`seed ${values.seed}, ${values.jobs} jobs, ${((Date.now() - started) / 1000).toFixed(0)} s`);
    console.log("| format | mutations | loaded | clean errors | unclean errors | misleading | aborts | hangs |");
    console.log("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (const [f, s] of Object.entries(results)) {
      console.log(`| ${f} | ${s.mutations} | ${s.loaded} | ${s.clean} | ${s.unclean} | ${s.misleading} | ${s.aborts} | ${s.hangs} |`);
    }
    for (const [f, s] of Object.entries(results)) {
      for (const m of s.uncleanMessages) console.log(`  ${f} unclean: ${m}`);
      for (const m of s.misleadingMessages) console.log(`  ${f} misleading: ${m}`);
      for (const n of s.saved) console.log(`  saved regression: ${n}`);
    }
  }
  const crashed = Object.values(results).some((s) => s.aborts > 0 || s.hangs > 0);
  process.exit(crashed ? 1 : 0);
}
