/**
 * Loads libllama (the prebuilt library of `@node-llama-cpp/linux-x64`) with bun:ffi, plus Steerkit's
 * TinyCC shim (shim.c), once per process.
 *
 * Load order matters: libggml-base and libggml first, then `ggml_backend_load_all_from_path(<bins>)`
 * (without a path ggml searches next to the executable, i.e. Bun's directory, and finds no CPU
 * backend), then libllama. Only the exact build described in abi.ts is accepted.
 */
import { cc, CFunction, dlopen, FFIType, ptr, CString, type Pointer } from "bun:ffi";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  BATCH,
  CONTEXT_PARAMS,
  LIB_GGML,
  LIB_GGML_BASE,
  LIB_LLAMA,
  MODEL_PARAMS,
  QUANTIZE_PARAMS,
  SHIM_BATCH,
  SHIM_HOOKS,
  SHIM_POINT,
  VERIFIED_LLAMA_RELEASE,
  VERIFIED_PACKAGE,
  VERIFIED_PACKAGE_VERSION,
} from "./abi.ts";
import { SteerkitError } from "../../core/errors.ts";

const { i32, u32, u64, ptr: P, bool, void: V, cstring } = FFIType;

const llamaSymbols = {
  llama_backend_init: { args: [], returns: V },
  llama_log_set: { args: [P, P], returns: V },
  llama_print_system_info: { args: [], returns: cstring },
  // By-value struct functions: called only through the shim, declared here to get their address.
  llama_model_default_params: { args: [], returns: V },
  llama_context_default_params: { args: [], returns: V },
  llama_model_load_from_file: { args: [], returns: V },
  llama_init_from_model: { args: [], returns: V },
  llama_decode: { args: [], returns: V },
  llama_model_quantize_default_params: { args: [], returns: V },
  llama_model_quantize: { args: [P, P, P], returns: u32 },

  llama_model_free: { args: [P], returns: V },
  llama_free: { args: [P], returns: V },
  llama_attach_threadpool: { args: [P, P, P], returns: V },
  llama_model_get_vocab: { args: [P], returns: P },
  llama_model_n_layer: { args: [P], returns: i32 },
  llama_model_n_embd: { args: [P], returns: i32 },
  llama_model_n_ctx_train: { args: [P], returns: i32 },
  llama_model_meta_val_str: { args: [P, P, P, u64], returns: i32 },
  llama_model_chat_template: { args: [P, P], returns: P },
  llama_vocab_n_tokens: { args: [P], returns: i32 },
  llama_vocab_bos: { args: [P], returns: i32 },
  llama_vocab_eos: { args: [P], returns: i32 },
  llama_vocab_eot: { args: [P], returns: i32 },
  llama_vocab_is_eog: { args: [P, i32], returns: bool },
  llama_vocab_get_add_bos: { args: [P], returns: bool },
  llama_tokenize: { args: [P, P, i32, P, i32, bool, bool], returns: i32 },
  llama_token_to_piece: { args: [P, i32, P, i32, i32, bool], returns: i32 },
  llama_detokenize: { args: [P, P, i32, P, i32, bool, bool], returns: i32 },

  llama_n_ctx: { args: [P], returns: u32 },
  llama_get_memory: { args: [P], returns: P },
  llama_memory_clear: { args: [P, bool], returns: V },
  llama_memory_seq_rm: { args: [P, i32, i32, i32], returns: bool },
  llama_memory_seq_pos_max: { args: [P, i32], returns: i32 },
  llama_get_logits_ith: { args: [P, i32], returns: P },
  llama_set_adapter_cvec: { args: [P, P, u64, i32, i32, i32], returns: i32 },
  llama_set_n_threads: { args: [P, i32, i32], returns: V },
  llama_set_abort_callback: { args: [P, P, P], returns: V },
} as const;

const shimSymbols = {
  sk_sizeof_model_params: { args: [], returns: i32 },
  sk_sizeof_context_params: { args: [], returns: i32 },
  sk_sizeof_batch: { args: [], returns: i32 },
  sk_sizeof_quantize_params: { args: [], returns: i32 },
  sk_quantize_default_params: { args: [P, P], returns: V },
  sk_model_default_params: { args: [P, P], returns: V },
  sk_context_default_params: { args: [P, P], returns: V },
  sk_model_load: { args: [P, P, P], returns: P },
  sk_init_from_model: { args: [P, P, P], returns: P },
  sk_decode: { args: [P, P, P], returns: i32 },
  sk_abort_flag: { args: [P], returns: bool },
  sk_log: { args: [i32, P, P], returns: V },
  sk_eval: { args: [P, bool, P], returns: bool },
  sk_point_layout: { args: [P], returns: V },
  sk_hooks_layout: { args: [P], returns: V },
  // Batched decoding (batch.ts).
  sk_batch_layout: { args: [P], returns: V },
  sk_eval_batch: { args: [P, bool, P], returns: bool },
  sk_batch_resume: { args: [P], returns: V },
  sk_batch_decode_async: { args: [P], returns: i32 },
  sk_batch_stop: { args: [P], returns: V },
} as const;

function openLlama(path: string) {
  return dlopen(path, llamaSymbols);
}
function compileShim() {
  return cc({
    source: fileURLToPath(new URL("./shim.c", import.meta.url)),
    define: {
      SIZEOF_MODEL_PARAMS: String(MODEL_PARAMS.size),
      SIZEOF_CONTEXT_PARAMS: String(CONTEXT_PARAMS.size),
      SIZEOF_BATCH: String(BATCH.size),
      SIZEOF_QUANTIZE_PARAMS: String(QUANTIZE_PARAMS.size),
    },
    symbols: shimSymbols,
  });
}

/**
 * Fields of the shim's sk_point / sk_hooks whose size or offset differs from SHIM_POINT /
 * SHIM_HOOKS in abi.ts, as "sk_point.pos_to at 44, abi.ts says 40"; empty when they agree. JS writes
 * these structs by offset, so a drift would be silent memory corruption.
 */
export function shimLayoutDrift(shim: {
  sk_point_layout(out: Pointer): void;
  sk_hooks_layout(out: Pointer): void;
  sk_batch_layout(out: Pointer): void;
}): string[] {
  const out: string[] = [];
  const compare = (struct: string, layout: (p: Pointer) => void, expected: Record<string, number>) => {
    const keys = Object.keys(expected); // "size" first, then the fields in declaration order
    const got = new Int32Array(new ArrayBuffer(keys.length * 4));
    layout(ptr(got));
    keys.forEach((k, i) => {
      if (got[i] !== expected[k]) out.push(`${struct}.${k} ${k === "size" ? "is" : "at"} ${got[i]}, abi.ts says ${expected[k]}`);
    });
  };
  compare("sk_point", shim.sk_point_layout, SHIM_POINT);
  compare("sk_hooks", shim.sk_hooks_layout, SHIM_HOOKS);
  compare("sk_batch", shim.sk_batch_layout, SHIM_BATCH);
  return out;
}

export type LlamaSymbols = ReturnType<typeof openLlama>["symbols"];
export type ShimSymbols = ReturnType<typeof compileShim>["symbols"];

export interface LlamaLibrary {
  readonly llama: LlamaSymbols;
  readonly shim: ShimSymbols;
  /** Addresses of the by-value functions the shim calls. */
  readonly fn: {
    modelDefaultParams: Pointer;
    contextDefaultParams: Pointer;
    modelLoad: Pointer;
    initFromModel: Pointer;
    decode: Pointer;
    quantizeDefaultParams: Pointer;
  };
  readonly binsDir: string;
  /**
   * Persistent CPU thread pools (what llama-bench attaches). Without one, ggml creates and joins a
   * new pool for every graph it computes (ggml-cpu.c, "disposable threadpool"), once per token.
   */
  readonly threadpool: { create(nThreads: number): Pointer | null; free(pool: Pointer): void };
  readonly systemInfo: string;
  /** The last error llama.cpp logged (cleared by {@link clearLastLogError}). */
  lastLogError(): string;
  clearLastLogError(): void;
}

export class LlamaLoadError extends SteerkitError {
  override name = "LlamaLoadError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("BACKEND_UNAVAILABLE", message, options);
  }
}

/** Where the platform package's binaries live, resolved from this module (never from cwd). */
export function resolveBinsDir(): string {
  if (process.platform !== "linux" || process.arch !== "x64") {
    throw new LlamaLoadError(
      `the llama.cpp adapter is verified on linux-x64 only (this is ${process.platform}-${process.arch}); ` +
        `its struct layouts are checked for the x86-64 SysV ABI of ${VERIFIED_PACKAGE}@${VERIFIED_PACKAGE_VERSION}`,
    );
  }
  let pkgJson: string;
  try {
    pkgJson = createRequire(import.meta.url).resolve(`${VERIFIED_PACKAGE}/package.json`);
  } catch {
    throw new LlamaLoadError(
      `cannot find ${VERIFIED_PACKAGE}: install it (bun add ${VERIFIED_PACKAGE}@${VERIFIED_PACKAGE_VERSION}) to use the llama.cpp adapter`,
    );
  }
  return verifyPackage(dirname(pkgJson));
}

/**
 * Check that `packageDir` holds the exact build abi.ts describes (package version, llama.cpp
 * release tag, library files) and return its binaries directory; throw a LlamaLoadError otherwise.
 */
export function verifyPackage(packageDir: string): string {
  const pkgJson = join(packageDir, "package.json");
  let pkg: { version?: string };
  try {
    pkg = JSON.parse(readFileSync(pkgJson, "utf8")) as { version?: string };
  } catch (e) {
    throw new LlamaLoadError(`cannot read ${pkgJson}: ${(e as Error).message}`);
  }
  if (pkg.version !== VERIFIED_PACKAGE_VERSION) {
    throw new LlamaLoadError(
      `${VERIFIED_PACKAGE} is version ${pkg.version}, but Steerkit verified its struct layouts against ` +
        `${VERIFIED_PACKAGE_VERSION} only: install exactly ${VERIFIED_PACKAGE}@${VERIFIED_PACKAGE_VERSION}`,
    );
  }
  const binsDir = join(packageDir, "bins", "linux-x64");
  const metaPath = join(binsDir, "_nlcBuildMetadata.json");
  let release: string | undefined;
  try {
    release = (JSON.parse(readFileSync(metaPath, "utf8")) as { buildOptions?: { llamaCpp?: { release?: string } } })
      .buildOptions?.llamaCpp?.release;
  } catch (e) {
    throw new LlamaLoadError(`cannot read ${metaPath}: ${(e as Error).message}`);
  }
  if (release !== VERIFIED_LLAMA_RELEASE) {
    throw new LlamaLoadError(
      `${metaPath} names llama.cpp release ${release}, Steerkit verified ${VERIFIED_LLAMA_RELEASE} only`,
    );
  }
  for (const lib of [LIB_GGML_BASE, LIB_GGML, LIB_LLAMA]) {
    if (!existsSync(join(binsDir, lib))) throw new LlamaLoadError(`missing ${lib} in ${binsDir}`);
  }
  return binsDir;
}

/** The address of a dlopen'ed or cc-compiled function (bun:ffi sets `.ptr`; its types omit it). */
export function addressOf(fn: unknown): Pointer {
  const p = (fn as { ptr?: Pointer }).ptr;
  if (typeof p !== "number" || p === 0) throw new LlamaLoadError("bun:ffi gave no address for a native function");
  return p;
}

/** A pointer result as a Pointer or null (bun:ffi's types widen pointer returns to include bigint). */
export function asPointer(p: unknown): Pointer | null {
  return typeof p === "number" && p !== 0 ? (p as Pointer) : null;
}

/** A NUL-terminated UTF-8 copy of `s` for passing as `const char *`. */
export function cString(s: string): Buffer {
  return Buffer.from(`${s}\0`, "utf8");
}

let loaded: LlamaLibrary | null = null;

/** The environment variable naming a directory with the user's own build of the verified release. */
export const OWN_BUILD_ENV = "STEERKIT_LLAMA_LIB_DIR";

interface LibraryFiles {
  readonly dir: string;
  readonly ggmlBase: string;
  readonly ggml: string;
  readonly llama: string;
}

/**
 * The libraries to load: the platform package's prebuilt ones, or, when `STEERKIT_LLAMA_LIB_DIR` is
 * set, a user's own build of the same release (`cmake -DGGML_NATIVE=ON` builds prefill about twice
 * as fast as the portable prebuilt CPU variants on this machine). An own build has no release tag to
 * read, so it is accepted on the struct-layout check alone (`verifyDefaults`): build it from the tag
 * abi.ts names.
 */
function resolveLibraryFiles(): LibraryFiles {
  const own = process.env[OWN_BUILD_ENV];
  if (own) {
    const files = { dir: own, ggmlBase: join(own, "libggml-base.so"), ggml: join(own, "libggml.so"), llama: join(own, "libllama.so") };
    for (const f of [files.ggmlBase, files.ggml, files.llama]) {
      if (!existsSync(f)) {
        throw new LlamaLoadError(`${OWN_BUILD_ENV}=${own}: missing ${f} (expected the shared libraries of a llama.cpp ${VERIFIED_LLAMA_RELEASE} build)`);
      }
    }
    return files;
  }
  const dir = resolveBinsDir();
  return { dir, ggmlBase: join(dir, LIB_GGML_BASE), ggml: join(dir, LIB_GGML), llama: join(dir, LIB_LLAMA) };
}

/** Load libllama and the shim once; later calls return the same library. */
export function loadLlamaLibrary(): LlamaLibrary {
  if (loaded) return loaded;
  const files = resolveLibraryFiles();
  const binsDir = files.dir;
  const shim = compileShim().symbols;
  if (
    shim.sk_sizeof_model_params() !== MODEL_PARAMS.size ||
    shim.sk_sizeof_context_params() !== CONTEXT_PARAMS.size ||
    shim.sk_sizeof_batch() !== BATCH.size ||
    shim.sk_sizeof_quantize_params() !== QUANTIZE_PARAMS.size
  ) {
    throw new LlamaLoadError("the TinyCC shim's struct sizes differ from abi.ts (shim.c and abi.ts disagree)");
  }
  const drift = shimLayoutDrift(shim);
  if (drift.length) throw new LlamaLoadError(`shim.c's hook structs differ from abi.ts: ${drift.join(", ")}`);

  // int32 length, int32 flag, 1016 bytes: see sk_log in shim.c. Module-lifetime, so its address stays valid.
  const logBuffer = new Uint8Array(new ArrayBuffer(1024));
  const logHeader = new Int32Array(logBuffer.buffer, 0, 2);
  const logPtr = ptr(logBuffer);

  const ggmlBase = dlopen(files.ggmlBase, { ggml_log_set: { args: [P, P], returns: V } });
  ggmlBase.symbols.ggml_log_set(addressOf(shim.sk_log), logPtr);
  const ggml = dlopen(files.ggml, {
    ggml_backend_load_all_from_path: { args: [P], returns: V },
    ggml_backend_reg_by_name: { args: [P], returns: P },
    ggml_backend_reg_get_proc_address: { args: [P, P], returns: P },
  });
  ggml.symbols.ggml_backend_load_all_from_path(ptr(cString(binsDir)));
  const threadpool = cpuThreadpool(files.ggmlBase, ggml.symbols);
  const llama = openLlama(files.llama).symbols;
  llama.llama_log_set(addressOf(shim.sk_log), logPtr);
  llama.llama_backend_init();

  const lib: LlamaLibrary = {
    llama,
    shim,
    fn: {
      modelDefaultParams: addressOf(llama.llama_model_default_params),
      contextDefaultParams: addressOf(llama.llama_context_default_params),
      modelLoad: addressOf(llama.llama_model_load_from_file),
      initFromModel: addressOf(llama.llama_init_from_model),
      decode: addressOf(llama.llama_decode),
      quantizeDefaultParams: addressOf(llama.llama_model_quantize_default_params),
    },
    binsDir,
    threadpool,
    systemInfo: String(llama.llama_print_system_info()),
    lastLogError() {
      const n = logHeader[0]!;
      return new TextDecoder()
        .decode(logBuffer.subarray(8, 8 + Math.max(0, Math.min(n, 1016))))
        .trim()
        .replace(/\s*\n\s*/g, "; ");
    },
    clearLastLogError() {
      logHeader[0] = 0;
    },
  };
  verifyDefaults(lib);
  loaded = lib;
  return lib;
}

/** ggml_threadpool_params: bool cpumask[512], int n_threads, int prio, u32 poll, bool strict_cpu, bool paused (ggml.h). */
const THREADPOOL_PARAMS_SIZE = 528;

/** The CPU backend's thread-pool functions, reached the way llama-bench reaches them (proc addresses). */
function cpuThreadpool(
  ggmlBasePath: string,
  ggml: { ggml_backend_reg_by_name(name: Pointer): unknown; ggml_backend_reg_get_proc_address(reg: Pointer, name: Pointer): unknown },
): LlamaLibrary["threadpool"] {
  const none = { create: () => null, free: () => {} };
  const reg = asPointer(ggml.ggml_backend_reg_by_name(ptr(cString("CPU"))));
  if (!reg) return none;
  const newAt = asPointer(ggml.ggml_backend_reg_get_proc_address(reg, ptr(cString("ggml_threadpool_new"))));
  const freeAt = asPointer(ggml.ggml_backend_reg_get_proc_address(reg, ptr(cString("ggml_threadpool_free"))));
  if (!newAt || !freeAt) return none;
  const init = dlopen(ggmlBasePath, { ggml_threadpool_params_init: { args: [P, FFIType.i32], returns: V } }).symbols;
  const create = CFunction({ ptr: newAt, args: [P], returns: P });
  const destroy = CFunction({ ptr: freeAt, args: [P], returns: V });
  return {
    create(nThreads) {
      const params = new Uint8Array(THREADPOOL_PARAMS_SIZE);
      init.ggml_threadpool_params_init(ptr(params), nThreads);
      return asPointer(create(ptr(params)));
    },
    free(pool) {
      destroy(pool);
    },
  };
}

/**
 * What llama_model_quantize_default_params returns: the block to edit (abi.ts QUANTIZE_PARAMS
 * offsets) and pass to llama_model_quantize.
 *
 * @example
 * ```ts
 * const q = quantizeDefaultParams(loadLlamaLibrary());
 * q.setInt32(QUANTIZE_PARAMS.ftype, LLAMA_FTYPE.Q4_K_M, true);
 * ```
 */
export function quantizeDefaultParams(lib: LlamaLibrary): DataView {
  const q = new DataView(new ArrayBuffer(QUANTIZE_PARAMS.size));
  lib.shim.sk_quantize_default_params(lib.fn.quantizeDefaultParams, ptr(q));
  return q;
}

/** What llama_{model,context,model_quantize}_default_params return, read through abi.ts offsets. */
export function readDefaults(lib: LlamaLibrary) {
  const m = new DataView(new ArrayBuffer(MODEL_PARAMS.size));
  const c = new DataView(new ArrayBuffer(CONTEXT_PARAMS.size));
  const q = quantizeDefaultParams(lib);
  lib.shim.sk_model_default_params(lib.fn.modelDefaultParams, ptr(m));
  lib.shim.sk_context_default_params(lib.fn.contextDefaultParams, ptr(c));
  return {
    quantize: {
      nthread: q.getInt32(QUANTIZE_PARAMS.nthread, true),
      ftype: q.getInt32(QUANTIZE_PARAMS.ftype, true),
      output_tensor_type: q.getInt32(QUANTIZE_PARAMS.output_tensor_type, true),
      token_embedding_type: q.getInt32(QUANTIZE_PARAMS.token_embedding_type, true),
      allow_requantize: q.getUint8(QUANTIZE_PARAMS.allow_requantize),
      quantize_output_tensor: q.getUint8(QUANTIZE_PARAMS.quantize_output_tensor),
      only_copy: q.getUint8(QUANTIZE_PARAMS.only_copy),
      pure: q.getUint8(QUANTIZE_PARAMS.pure),
      keep_split: q.getUint8(QUANTIZE_PARAMS.keep_split),
      dry_run: q.getUint8(QUANTIZE_PARAMS.dry_run),
      imatrix: q.getBigUint64(QUANTIZE_PARAMS.imatrix, true),
      kv_overrides: q.getBigUint64(QUANTIZE_PARAMS.kv_overrides, true),
      tt_overrides: q.getBigUint64(QUANTIZE_PARAMS.tt_overrides, true),
      prune_layers: q.getBigUint64(QUANTIZE_PARAMS.prune_layers, true),
      max_buf_size: q.getBigUint64(QUANTIZE_PARAMS.max_buf_size, true),
    },
    model: {
      n_gpu_layers: m.getInt32(MODEL_PARAMS.n_gpu_layers, true),
      split_mode: m.getInt32(MODEL_PARAMS.split_mode, true),
      use_extra_bufts: m.getUint8(MODEL_PARAMS.use_extra_bufts),
      vocab_only: m.getUint8(MODEL_PARAMS.vocab_only),
    },
    context: {
      n_ctx: c.getUint32(CONTEXT_PARAMS.n_ctx, true),
      n_batch: c.getUint32(CONTEXT_PARAMS.n_batch, true),
      n_ubatch: c.getUint32(CONTEXT_PARAMS.n_ubatch, true),
      n_seq_max: c.getUint32(CONTEXT_PARAMS.n_seq_max, true),
      n_outputs_max_per_seq: c.getUint32(CONTEXT_PARAMS.n_outputs_max_per_seq, true),
      n_threads: c.getInt32(CONTEXT_PARAMS.n_threads, true),
      n_threads_batch: c.getInt32(CONTEXT_PARAMS.n_threads_batch, true),
      flash_attn_type: c.getInt32(CONTEXT_PARAMS.flash_attn_type, true),
      yarn_ext_factor: c.getFloat32(CONTEXT_PARAMS.yarn_ext_factor, true),
      defrag_thold: c.getFloat32(CONTEXT_PARAMS.defrag_thold, true),
      cb_eval: c.getBigUint64(CONTEXT_PARAMS.cb_eval, true),
      type_k: c.getInt32(CONTEXT_PARAMS.type_k, true),
      type_v: c.getInt32(CONTEXT_PARAMS.type_v, true),
      abort_callback: c.getBigUint64(CONTEXT_PARAMS.abort_callback, true),
      offload_kqv: c.getUint8(CONTEXT_PARAMS.offload_kqv),
      no_perf: c.getUint8(CONTEXT_PARAMS.no_perf),
      swa_full: c.getUint8(CONTEXT_PARAMS.swa_full),
      kv_unified: c.getUint8(CONTEXT_PARAMS.kv_unified),
      ctx_other: c.getBigUint64(CONTEXT_PARAMS.ctx_other, true),
    },
  };
}

/**
 * The defaults the verified release's source sets (llama-context.cpp / llama-model.cpp). They sit
 * at offsets spread over both structs, so a layout drift moves at least one of them.
 */
export const EXPECTED_DEFAULTS = {
  // llama-quant.cpp, llama_model_quantize_default_params (the bool run 16..21 and the pointers after it).
  quantize: {
    nthread: 0,
    ftype: 7,
    output_tensor_type: 43,
    token_embedding_type: 43,
    allow_requantize: 0,
    quantize_output_tensor: 1,
    only_copy: 0,
    pure: 0,
    keep_split: 0,
    dry_run: 0,
    imatrix: 0n,
    kv_overrides: 0n,
    tt_overrides: 0n,
    prune_layers: 0n,
    max_buf_size: 8n * 1024n * 1024n * 1024n,
  },
  model: { n_gpu_layers: -1, split_mode: 1, use_extra_bufts: 1, vocab_only: 0 },
  context: {
    n_ctx: 512,
    n_batch: 2048,
    n_ubatch: 512,
    n_seq_max: 1,
    n_outputs_max_per_seq: 1,
    n_threads: 4,
    n_threads_batch: 4,
    flash_attn_type: -1,
    yarn_ext_factor: -1,
    defrag_thold: -1,
    cb_eval: 0n,
    type_k: 1,
    type_v: 1,
    abort_callback: 0n,
    offload_kqv: 1,
    no_perf: 1,
    swa_full: 1,
    kv_unified: 0,
    ctx_other: 0n,
  },
} as const;

function verifyDefaults(lib: LlamaLibrary): void {
  const got = readDefaults(lib);
  const problems: string[] = [];
  for (const group of ["quantize", "model", "context"] as const) {
    const expected = EXPECTED_DEFAULTS[group] as Record<string, number | bigint>;
    const actual = got[group] as Record<string, number | bigint>;
    for (const [k, v] of Object.entries(expected)) {
      if (actual[k] !== v) problems.push(`${group}.${k}: expected ${v}, got ${actual[k]}`);
    }
  }
  if (problems.length > 0) {
    throw new LlamaLoadError(
      `libllama in ${lib.binsDir} does not have the struct layout Steerkit verified (${problems.join("; ")}); ` +
        `refusing to use it`,
    );
  }
}

export { CString };
