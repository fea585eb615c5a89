/**
 * Fine-tuning a GGUF model with llama.cpp's own training API (`llama_opt_init` / `llama_opt_epoch`
 * over a `ggml_opt_dataset`), bound through bun:ffi like the rest of the adapter, then saved with
 * `llama_model_save_to_file`. This is what llama.cpp's `examples/training/finetune.cpp` does, as a
 * library call with a seeded order, a learning-rate schedule and a progress callback.
 *
 * What the API decides for us (the pinned release, llama-context.cpp `opt_epoch_iter`):
 * - Every position of a window carries loss: labels are one-hot rows built from the next tokens, and
 *   there is no per-token weight (`idata_split` only splits *windows* into trained and evaluated
 *   ones). Steerkit adds one from outside: `lossWeights` scales each position's row of the loss
 *   gradient in the scheduler's eval callback (train-shim.c `sk_train_weigh`), so a zero weight masks
 *   a position, e.g. the prompt of a chat example ("loss on the assistant's tokens only"). The loss
 *   the API reports (and `trainLoss` / `validationLoss` here) stays the unweighted mean.
 * - One window is one optimizer step (`n_batch = n_ubatch = window`, so `opt_period` is 1).
 * - The token embedding matrix is not trained (`llama_set_param(model->tok_embd, ...)` is a FIXME
 *   there); every other weight, output matrix included, is.
 * - The model must be loaded without mmap (weights are written in place) and the KV cache must be F32
 *   (OUT_PROD has no F16 backward).
 *
 * Deterministic for a seed and a thread count: the window order is drawn from the seed here, the
 * optimizer is deterministic, and ggml's CPU kernels split work by thread count.
 */
import { cc, dlopen, FFIType, ptr, read, toArrayBuffer, type Pointer } from "bun:ffi";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { BATCH, CONTEXT_PARAMS, LIB_GGML_BASE, LIB_LLAMA, MODEL_PARAMS, TENSOR } from "./abi.ts";
import { addressOf, asPointer, cString, loadLlamaLibrary, LlamaLoadError, OWN_BUILD_ENV } from "./ffi.ts";
import { createRng } from "../../core/sampling.ts";
import { SteerkitError } from "../../core/errors.ts";
import { checkLossWeights, type TrainingResult, type TrainingSchedule } from "../../train/schedule.ts";

const { i32, i64, u32, ptr: P, void: V } = FFIType;

export interface FinetuneOptions extends TrainingSchedule {
  /** CPU threads; the result is bit-identical only for the same count. */
  readonly threads: number;
}

/** Losses are llama.cpp's: unweighted means over every position, whatever `lossWeights` trained on. */
export type FinetuneResult = TrainingResult;

export class FinetuneError extends SteerkitError {
  override name = "FinetuneError";
  constructor(message: string) {
    super("BACKEND_FAILED", message);
  }
}

const trainSymbols = {
  llama_opt_init: { args: [], returns: V }, // by value: through sk_opt_init
  llama_opt_param_filter_all: { args: [P, P], returns: FFIType.bool },
  llama_opt_epoch: { args: [P, P, P, P, i64, P, P], returns: V },
  llama_model_save_to_file: { args: [P, P], returns: V },
} as const;

const ggmlOptSymbols = {
  ggml_opt_dataset_init: { args: [i32, i32, i64, i64, i64, i64], returns: P },
  ggml_opt_dataset_data: { args: [P], returns: P },
  ggml_opt_dataset_labels: { args: [P], returns: P },
  ggml_opt_dataset_free: { args: [P], returns: V },
  ggml_opt_result_init: { args: [], returns: P },
  ggml_opt_result_free: { args: [P], returns: V },
  ggml_opt_result_reset: { args: [P], returns: V },
  ggml_opt_result_loss: { args: [P, P, P], returns: V },
  ggml_op_name: { args: [i32], returns: FFIType.cstring },
} as const;

const shimSymbols = {
  sk_sizeof_opt_params: { args: [], returns: i32 },
  sk_sizeof_opt_pars: { args: [], returns: i32 },
  sk_opt_pars: { args: [P], returns: V },
  sk_opt_init: { args: [P, P, P, P, P, i32, u32], returns: V },
  sk_train_weigh: { args: [P, FFIType.bool, P], returns: FFIType.bool },
} as const;

/** llama_opt_params is 48 bytes and ggml_opt_optimizer_params 28 on x86-64 (pinned llama.h / ggml-opt.h). */
const OPT_PARAMS_SIZE = 48;
const OPT_PARS_SIZE = 28;
const GGML_TYPE_I32 = 26;
const OPTIMIZER_ADAMW = 0;
/** enum ggml_op GGML_OP_CROSS_ENTROPY_LOSS_BACK in the pinned ggml.h; checked by name at bind time. */
const OP_CROSS_ENTROPY_LOSS_BACK = 97;

let bound: { llama: ReturnType<typeof openTrain>; ggml: ReturnType<typeof openGgml>; shim: ReturnType<typeof compileShim> } | null = null;

function openTrain(dir: string) {
  return dlopen(join(dir, process.env[OWN_BUILD_ENV] ? "libllama.so" : LIB_LLAMA), trainSymbols);
}
function openGgml(dir: string) {
  return dlopen(join(dir, LIB_GGML_BASE), ggmlOptSymbols);
}
function compileShim() {
  return cc({ source: fileURLToPath(new URL("./train-shim.c", import.meta.url)), symbols: shimSymbols });
}

function bind() {
  if (bound) return bound;
  const lib = loadLlamaLibrary();
  const shim = compileShim();
  if (shim.symbols.sk_sizeof_opt_params() !== OPT_PARAMS_SIZE || shim.symbols.sk_sizeof_opt_pars() !== OPT_PARS_SIZE) {
    throw new LlamaLoadError("train-shim.c's llama_opt_params / ggml_opt_optimizer_params sizes differ from the pinned headers");
  }
  const ggml = openGgml(lib.binsDir);
  const opName = String(ggml.symbols.ggml_op_name(OP_CROSS_ENTROPY_LOSS_BACK));
  if (opName !== "CROSS_ENTROPY_LOSS_BACK") {
    throw new LlamaLoadError(`ggml op ${OP_CROSS_ENTROPY_LOSS_BACK} is ${opName} in this libggml, expected CROSS_ENTROPY_LOSS_BACK (the pinned ggml.h)`);
  }
  bound = { llama: openTrain(lib.binsDir), ggml, shim };
  return bound;
}

function setPtr(view: DataView, offset: number, p: number | null): void {
  view.setBigUint64(offset, BigInt(p ?? 0), true);
}

/** The int32 buffer of a dataset tensor (`ggml_tensor.data`), `count` elements. */
function tensorInts(tensor: Pointer, count: number): Int32Array {
  const data = read.ptr(tensor, TENSOR.data) as Pointer;
  return new Int32Array(toArrayBuffer(data, 0, count * 4));
}

/**
 * Fine-tune the GGUF at `modelPath` on token windows and save the result to `outPath`.
 * `windows` are trained on (each `window + 1` tokens long); `validation` windows are only evaluated,
 * after every epoch.
 * @example
 * ```ts
 * const windows = [Int32Array.from(tokens.slice(0, 129))];
 * const r = finetune("models/stories260K.gguf", windows, [], "out.gguf", { window: 128, threads: 2, epochs: 1, learningRate: 1e-3, seed: 1 });
 * console.log(r.trainLoss);
 * ```
 */
export function finetune(
  modelPath: string,
  windows: readonly Int32Array[],
  validation: readonly Int32Array[],
  outPath: string,
  options: FinetuneOptions,
): FinetuneResult {
  const n = options.window;
  for (const [name, set] of [["windows", windows], ["validation", validation]] as const) {
    set.forEach((w, i) => {
      if (w.length !== n + 1) throw new FinetuneError(`${name}[${i}] has ${w.length} tokens, expected window + 1 = ${n + 1}`);
    });
  }
  if (windows.length === 0) throw new FinetuneError("no training windows");
  checkLossWeights("lossWeights", options.lossWeights, windows.length, n, (m) => {
    throw new FinetuneError(m);
  });
  for (const key of ["window", "threads", "epochs"] as const) {
    if (!Number.isInteger(options[key]) || options[key] < 1) throw new FinetuneError(`${key} must be a positive integer, got ${options[key]}`);
  }
  const lib = loadLlamaLibrary();
  const { llama, ggml, shim } = bind();
  const started = performance.now();

  const mp = new DataView(new ArrayBuffer(MODEL_PARAMS.size));
  lib.shim.sk_model_default_params(lib.fn.modelDefaultParams, ptr(mp));
  mp.setInt32(MODEL_PARAMS.n_gpu_layers, 0, true);
  mp.setInt32(MODEL_PARAMS.load_mode, 0, true); // LLAMA_LOAD_MODE_NONE: the optimizer writes the weights in place
  mp.setUint8(MODEL_PARAMS.use_extra_bufts, 0); // no repacked weight layouts
  lib.clearLastLogError();
  const model = asPointer(lib.shim.sk_model_load(lib.fn.modelLoad, ptr(cString(modelPath)), ptr(mp)));
  if (!model) throw new FinetuneError(`llama.cpp could not load ${modelPath}: ${lib.lastLogError() || "no reason logged"}`);

  const cp = new DataView(new ArrayBuffer(CONTEXT_PARAMS.size));
  lib.shim.sk_context_default_params(lib.fn.contextDefaultParams, ptr(cp));
  cp.setUint32(CONTEXT_PARAMS.n_ctx, n, true);
  cp.setUint32(CONTEXT_PARAMS.n_batch, n, true);
  cp.setUint32(CONTEXT_PARAMS.n_ubatch, n, true);
  cp.setUint32(CONTEXT_PARAMS.n_seq_max, 1, true);
  cp.setInt32(CONTEXT_PARAMS.n_threads, options.threads, true);
  cp.setInt32(CONTEXT_PARAMS.n_threads_batch, options.threads, true);
  cp.setInt32(CONTEXT_PARAMS.flash_attn_type, 0, true); // no backward pass for FLASH_ATTN_EXT
  cp.setInt32(CONTEXT_PARAMS.type_k, 0, true); // F32 cache: OUT_PROD has no F16 backward
  cp.setInt32(CONTEXT_PARAMS.type_v, 0, true);
  // int op, n_vocab, n_rows, hits; float w[window] (see sk_train_weigh). Lives until the end of this call.
  const weighBlock = new ArrayBuffer(16 + 4 * n);
  const weighHeader = new Int32Array(weighBlock, 0, 4);
  const weighRows = new Float32Array(weighBlock, 16, n);
  if (options.lossWeights) {
    setPtr(cp, CONTEXT_PARAMS.cb_eval, addressOf(shim.symbols.sk_train_weigh));
    setPtr(cp, CONTEXT_PARAMS.cb_eval_user_data, ptr(weighBlock));
  }
  const ctx = asPointer(lib.shim.sk_init_from_model(lib.fn.initFromModel, model, ptr(cp)));
  weighHeader.set([OP_CROSS_ENTROPY_LOSS_BACK, lib.llama.llama_vocab_n_tokens(lib.llama.llama_model_get_vocab(model)), n, 0]);
  if (!ctx) {
    lib.llama.llama_model_free(model);
    throw new FinetuneError(`llama.cpp could not create a training context of ${n} tokens: ${lib.lastLogError() || "no reason logged"}`);
  }

  // The optimizer computes its graphs through the scheduler directly, and the CPU backend's thread
  // count and pool are set only by llama_decode's graph_compute. Without one decode first, training
  // runs on ggml's default 4 threads with spinning barriers: on a busy 2-core machine, 98% of the time
  // was spent in ggml_barrier (perf). One decoded token fixes both; opt_epoch clears the cache.
  const threadpool = lib.threadpool.create(options.threads);
  if (threadpool) lib.llama.llama_attach_threadpool(ctx, threadpool, threadpool);
  const warmToken = new Int32Array([windows[0]![0]!]);
  const batch = new DataView(new ArrayBuffer(BATCH.size));
  batch.setInt32(BATCH.n_tokens, 1, true);
  setPtr(batch, BATCH.token, ptr(warmToken));
  if (lib.shim.sk_decode(lib.fn.decode, ctx, ptr(batch)) !== 0) {
    lib.llama.llama_free(ctx);
    lib.llama.llama_model_free(model);
    if (threadpool) lib.threadpool.free(threadpool);
    throw new FinetuneError(`llama.cpp could not decode a warm-up token: ${lib.lastLogError() || "no reason logged"}`);
  }

  const steps = windows.length * options.epochs;
  // float lr0, lr_end, beta1, beta2, eps, wd; int step, steps (see sk_opt_pars). Lives until the end of this call.
  const schedule = new ArrayBuffer(32);
  const f = new Float32Array(schedule, 0, 6);
  const counters = new Int32Array(schedule, 24, 2);
  f.set([options.learningRate, options.learningRateEnd ?? options.learningRate, 0.9, 0.999, 1e-8, options.weightDecay ?? 0]);
  counters.set([0, Math.max(1, steps - 1)]);
  shim.symbols.sk_opt_init(addressOf(llama.symbols.llama_opt_init), ctx, model, addressOf(llama.symbols.llama_opt_param_filter_all), ptr(schedule), OPTIMIZER_ADAMW, n);

  const resultTrain = asPointer(ggml.symbols.ggml_opt_result_init())!;
  const resultEval = asPointer(ggml.symbols.ggml_opt_result_init())!;
  const lossOut = new Float64Array(2);
  const readLoss = (result: Pointer) => {
    ggml.symbols.ggml_opt_result_loss(result, ptr(lossOut), ptr(lossOut, 8));
    return lossOut[0]!;
  };
  /** A one-off dataset of `set` (in that order), run through llama_opt_epoch: trained when `train`. */
  const runWindows = (set: readonly Int32Array[], train: boolean) => {
    const ds = asPointer(ggml.symbols.ggml_opt_dataset_init(GGML_TYPE_I32, GGML_TYPE_I32, n, n, set.length, 1));
    if (!ds) throw new FinetuneError("ggml_opt_dataset_init failed");
    const data = tensorInts(asPointer(ggml.symbols.ggml_opt_dataset_data(ds))!, n * set.length);
    const labels = tensorInts(asPointer(ggml.symbols.ggml_opt_dataset_labels(ds))!, n * set.length);
    set.forEach((w, i) => {
      data.set(w.subarray(0, n), i * n);
      labels.set(w.subarray(1), i * n);
    });
    llama.symbols.llama_opt_epoch(ctx, ds, resultTrain, resultEval, train ? set.length : 0, null, null);
    ggml.symbols.ggml_opt_dataset_free(ds);
  };

  const trainLoss: number[] = [];
  const validationLoss: number[] = [];
  const rng = createRng(options.seed);
  let step = 0;
  try {
    for (let epoch = 0; epoch < options.epochs; epoch++) {
      const order = windows.map((_, i) => i);
      for (let i = order.length - 1; i > 0; i--) {
        const j = Math.floor(rng() * (i + 1));
        [order[i], order[j]] = [order[j]!, order[i]!];
      }
      ggml.symbols.ggml_opt_result_reset(resultTrain);
      for (const i of order) {
        if (options.lossWeights) {
          weighRows.set(options.lossWeights[i]!);
          weighHeader[3] = 0;
        }
        runWindows([windows[i]!], true);
        if (options.lossWeights && weighHeader[3] !== 1) {
          throw new FinetuneError(`the loss weights were not applied to window ${i} (${weighHeader[3] === -1 ? "the loss gradient had an unexpected shape" : `${weighHeader[3]} gradients weighted, expected 1`})`);
        }
        step++;
        options.onStep?.(step, steps, readLoss(resultTrain));
      }
      trainLoss.push(readLoss(resultTrain));
      if (validation.length) {
        ggml.symbols.ggml_opt_result_reset(resultEval);
        runWindows(validation, false);
        validationLoss.push(readLoss(resultEval));
      }
    }
    if (counters[0] !== steps) throw new FinetuneError(`the optimizer took ${counters[0]} steps, expected ${steps}`);
    llama.symbols.llama_model_save_to_file(model, ptr(cString(outPath)));
  } finally {
    ggml.symbols.ggml_opt_result_free(resultTrain);
    ggml.symbols.ggml_opt_result_free(resultEval);
    lib.llama.llama_free(ctx);
    lib.llama.llama_model_free(model);
    if (threadpool) lib.threadpool.free(threadpool);
  }
  return { steps, trainLoss, validationLoss, seconds: (performance.now() - started) / 1000 };
}
