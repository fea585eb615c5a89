/**
 * llama.cpp on a chosen ggml CPU path, for bench/equal-bits.ts's "where does the gap come from".
 *
 * The prebuilt llama.cpp the adapter loads (@node-llama-cpp/linux-x64) ships one CPU backend
 * library per x86 level (libggml-cpu-haswell.so: AVX2; -icelake: AVX-512 + VNNI; -sapphirerapids:
 * + AMX; ...), and ggml loads the best one the CPU supports. On top of that, ggml moves quantized
 * matrices into "extra buffer types" at load: AMX's tile/VNNI layout (sapphirerapids build) or the
 * repacked interleaved Q4_0 layouts (repack.cpp), each with its own matrix kernels. A path is
 *
 *   auto           the adapter as a user gets it, in this process (best variant, extra buffers on)
 *   <variant>      one variant only, e.g. icelake or haswell (a child process whose library
 *                  directory holds links to the prebuilt libraries with just that CPU backend)
 *   <path>+plain   the same without extra buffer types (use_extra_bufts = false, through the
 *                  LD_PRELOAD shim bench/no-extra-bufts.c, compiled with the system `cc`)
 *
 * No rebuild of llama.cpp is needed: these are the exact binaries the adapter runs, minus choices.
 * Children are bench/llama-cpu-path-worker.ts, one per path, asked for one decode round at a time
 * so their rounds interleave with the in-process ones.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LIB_GGML, LIB_GGML_BASE, LIB_LLAMA } from "../src/adapters/llama-cpp/abi.ts";
import { resolveBinsDir } from "../src/adapters/llama-cpp/ffi.ts";
import { stdoutLines } from "./lib/shared.ts";

export interface LlamaCpuPath {
  /** The spec as given: `auto`, `icelake`, `auto+plain`... */
  readonly name: string;
  /** The loaded CPU backend's features, from llama_print_system_info (the `CPU :` part). */
  readonly features: string;
  /** One decode round: tokens per second. */
  rate(): Promise<number>;
  close(): void;
}

/** Temporary library directories and the compiled shim, removed when this process exits. */
const temporary = new Set<string>();
process.on("exit", () => {
  for (const t of temporary) rmSync(t, { recursive: true, force: true });
});

/** The CPU backend variants the prebuilt package ships (libggml-cpu-<name>.so). */
export function cpuVariants(): string[] {
  return readdirSync(resolveBinsDir())
    .map((f) => /^libggml-cpu-(.+)\.so$/.exec(f)?.[1])
    .filter((v): v is string => v !== undefined)
    .sort();
}

/** A directory of links to the prebuilt libraries with only the chosen CPU variants (all for `auto`). */
function libraryDir(variant: string): string {
  const bins = resolveBinsDir();
  const variants = variant === "auto" ? cpuVariants() : [variant];
  if (!variants.every((v) => existsSync(join(bins, `libggml-cpu-${v}.so`)))) {
    throw new Error(`llama.cpp CPU path ${variant}: no libggml-cpu-${variant}.so in ${bins} (variants: auto, ${cpuVariants().join(", ")})`);
  }
  const dir = join(tmpdir(), `steerkit-ggml-${variant}-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  temporary.add(dir);
  // The names the adapter opens for an own build (STEERKIT_LLAMA_LIB_DIR) and the sonames the
  // libraries need from each other ($ORIGIN), all pointing at the package's files.
  const links: [string, string][] = [
    ["libggml-base.so", LIB_GGML_BASE],
    ["libggml.so", LIB_GGML],
    [LIB_GGML, LIB_GGML],
    ["libllama.so", LIB_LLAMA],
    [LIB_LLAMA, LIB_LLAMA],
    ...variants.map((v): [string, string] => [`libggml-cpu-${v}.so`, `libggml-cpu-${v}.so`]),
  ];
  for (const [name, target] of links) if (!existsSync(join(dir, name))) symlinkSync(join(bins, target), join(dir, name));
  return dir;
}

/** bench/no-extra-bufts.c compiled once per run. */
function noExtraBuftsShim(): string {
  const out = join(tmpdir(), `steerkit-no-extra-bufts-${process.pid}.so`);
  if (existsSync(out)) return out;
  let error = "";
  try {
    const cc = Bun.spawnSync(["cc", "-O2", "-shared", "-fPIC", "-o", out, join(import.meta.dir, "no-extra-bufts.c"), "-ldl"], { stderr: "pipe" });
    if (!cc.success) error = cc.stderr.toString().trim();
  } catch (e) {
    error = (e as Error).message; // no cc on PATH
  }
  if (error) throw new Error(`llama.cpp CPU path +plain needs a C compiler (cc) to build bench/no-extra-bufts.c: ${error}`);
  temporary.add(out);
  return out;
}

/** The SIMD levels that matter for ggml's quantized kernels, as the loaded CPU backend reports them. */
export function cpuFeatures(systemInfo: string): string {
  const on = (flag: string) => new RegExp(`\\b${flag} = 1\\b`).test(systemInfo);
  return ["AVX2", "AVX512", "AVX512_VNNI", "AVX_VNNI", "AMX_INT8"].filter(on).join(" ") || "no AVX2";
}

/**
 * Start llama.cpp on CPU path `spec` (see the file header) for `gguf`, in a child process.
 *
 * @example
 * const p = await startLlamaCpuPath("icelake+plain", "bench/models/x-q4_0-pure.gguf", { threads: 2, tokens: 32, prompt: [300, 301] });
 * console.log(p.features, await p.rate());
 * p.close();
 */
export async function startLlamaCpuPath(spec: string, gguf: string, o: { threads: number; tokens: number; prompt: readonly number[] }): Promise<LlamaCpuPath> {
  const [variant, plain, ...rest] = spec.split("+");
  if (!variant || rest.length || (plain !== undefined && plain !== "plain")) throw new Error(`llama.cpp CPU path "${spec}": expected <variant> or <variant>+plain`);
  const dir = libraryDir(variant);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    STEERKIT_LLAMA_LIB_DIR: dir,
    SK_GGUF: gguf,
    SK_THREADS: String(o.threads),
    SK_TOKENS: String(o.tokens),
    SK_PROMPT: JSON.stringify(o.prompt),
  };
  if (plain) Object.assign(env, { LD_PRELOAD: noExtraBuftsShim(), SK_LIBGGML: join(dir, LIB_GGML) });
  const child = Bun.spawn(["bun", join(import.meta.dir, "llama-cpu-path-worker.ts")], { stdin: "pipe", stdout: "pipe", stderr: "inherit", env });
  const lines = stdoutLines(child.stdout);
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`llama.cpp CPU path ${spec}: the worker exited`);
    const reply = JSON.parse(value) as { error?: string; systemInfo?: string; refusals?: number; tokensPerSecond?: number };
    if (reply.error) throw new Error(`llama.cpp CPU path ${spec}: ${reply.error}`);
    return reply;
  };
  const close = () => child.kill();
  process.on("exit", close);
  const first = await next();
  // Without a refusal the +plain row would silently be the default path.
  if (plain && !first.refusals) {
    close();
    throw new Error(`llama.cpp CPU path ${spec}: the LD_PRELOAD shim did not take effect (libllama never asked it for the extra buffer types)`);
  }
  return {
    name: spec,
    features: cpuFeatures(first.systemInfo!),
    async rate() {
      child.stdin.write("run\n");
      child.stdin.flush();
      return (await next()).tokensPerSecond!;
    },
    close,
  };
}
