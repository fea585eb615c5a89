/**
 * GGUF quantization through libllama's own `llama_model_quantize` — the code behind llama.cpp's
 * `llama-quantize` tool, so a file written here has the tensor types and bytes llama.cpp's tool
 * writes for the same input and type (test/llama-cpp/quantize.test.ts compares them when the tool
 * is available). Re-implementing Q4_K/Q5_K in TypeScript would be a second, untested copy of
 * llama.cpp's rounding and its per-tensor type choices (Q6_K for `output.weight`, more bits for
 * some `attn_v`/`ffn_down` layers in the _M mixes).
 *
 * Safety: the input is validated in TypeScript first (llama.cpp aborts on some damaged files), the
 * output is written to a temporary file next to it and renamed only on success, so a failed or
 * interrupted run never leaves a half-written model under the requested name, and the input is
 * never the output (llama.cpp maps the input while it writes).
 */
import { existsSync, realpathSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { ptr } from "bun:ffi";
import { GGML_TYPE_COUNT, LLAMA_FTYPE, QUANTIZE_PARAMS } from "./abi.ts";
import { cString, loadLlamaLibrary, quantizeDefaultParams } from "./ffi.ts";
import { validateModelFile } from "./validate.ts";
import { metaNumber, readGgufHeader } from "../../formats/gguf.ts";
import { ggmlTypeName } from "../../formats/ggml-types.ts";
import { SteerkitError } from "../../core/errors.ts";

/** The quantization types offered (llama-quantize's names, lower case). */
export const QUANT_TYPES = ["q4_0", "q4_k_m", "q5_k_m", "q8_0"] as const;
export type QuantType = (typeof QUANT_TYPES)[number];

/**
 * Per type: llama.cpp's ftype, the ggml type most weight matrices get, and every type llama.cpp's
 * per-tensor rules may choose for a matrix under it (llama-quant.cpp `llama_tensor_get_type`: the
 * output head gets Q6_K unless the base type is Q8_0; the _M mixes give some attn_v / ffn_down
 * layers Q6_K; a K-quant on rows that are not multiples of 256 falls back to a 32-block type).
 */
export const QUANT_TYPE_INFO: Readonly<Record<QuantType, { ftype: number; base: string; allowed: readonly string[] }>> = {
  q4_0: { ftype: LLAMA_FTYPE.Q4_0, base: "Q4_0", allowed: ["Q4_0", "Q6_K", "Q8_0"] },
  q4_k_m: { ftype: LLAMA_FTYPE.Q4_K_M, base: "Q4_K", allowed: ["Q4_K", "Q6_K", "Q5_0", "Q5_1", "Q8_0"] },
  q5_k_m: { ftype: LLAMA_FTYPE.Q5_K_M, base: "Q5_K", allowed: ["Q5_K", "Q6_K", "Q5_1", "Q8_0"] },
  q8_0: { ftype: LLAMA_FTYPE.Q8_0, base: "Q8_0", allowed: ["Q8_0"] },
};

/** Source weight types llama.cpp quantizes without `allowRequantize`. */
const FLOAT_TYPES = new Set(["F32", "F16", "BF16"]);

export class QuantizeError extends SteerkitError {
  override name = "QuantizeError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("CONVERT_FAILED", message, options);
  }
}

export interface QuantizeOptions {
  readonly type: QuantType;
  /** Threads llama.cpp quantizes with (default: every hardware thread, as llama-quantize does). */
  readonly threads?: number;
  /**
   * Quantize an already quantized model (Q8_0 -> Q4_0, ...). Refused by default, as llama.cpp does:
   * each round of rounding adds error that quantizing the float original would not.
   */
  readonly allowRequantize?: boolean;
  /**
   * Every matrix at the type's base type (llama-quantize --pure): no Q6_K output head, no more-bits
   * layers in the _M mixes. What a like-for-like comparison with another backend's 4-bit weights wants.
   */
  readonly pure?: boolean;
}

export interface QuantizeReport {
  readonly input: string;
  readonly output: string;
  readonly type: QuantType;
  readonly ftype: number;
  readonly inputBytes: number;
  readonly outputBytes: number;
  /** Bits per weight over the 2-D weight matrices of the output. */
  readonly bitsPerWeight: number;
  /** Tensor count per ggml type in the output (vectors included: norms stay F32). */
  readonly tensorTypes: Readonly<Record<string, number>>;
  readonly seconds: number;
}

/**
 * Where {@link quantizeGguf} writes before renaming to `output` (a hidden file beside it, named by
 * the writing process), so a caller in another process can watch the bytes grow.
 *
 * @example
 * ```ts
 * quantizeTempPath("/m/out.gguf", 4242); // "/m/.out.gguf.4242.tmp"
 * ```
 */
export function quantizeTempPath(output: string, pid: number = process.pid): string {
  const out = resolve(output);
  return join(dirname(out), `.${basename(out)}.${pid}.tmp`);
}

/** Bits per weight of the ggml types the offered quantizations write (block bytes * 8 / block size). */
const BITS: Readonly<Record<string, number>> = { Q4_0: 4.5, Q4_K: 4.5, Q5_K: 5.5, Q6_K: 6.5625, Q8_0: 8.5 };

/**
 * About how many bytes quantizing `input` to `type` writes: its matrices at the type's base bits,
 * vectors as F32, plus the header. For progress only (the _M mixes give some matrices more bits).
 *
 * @example
 * ```ts
 * const total = estimateQuantizedBytes("model-f16.gguf", "q4_0");
 * ```
 */
export function estimateQuantizedBytes(input: string, type: QuantType): number {
  const file = readGgufHeader(input);
  const bits = BITS[QUANT_TYPE_INFO[type].base] ?? 8;
  let bytes = file.dataOffset;
  for (const t of file.tensors) bytes += t.dims.length >= 2 ? Math.ceil((t.elementCount * bits) / 8) : t.elementCount * 4;
  return bytes;
}

/**
 * Quantize a GGUF with libllama's `llama_model_quantize` (blocking; a 271M-parameter model takes
 * seconds to a minute). Throws a {@link QuantizeError} naming the problem: an unknown type, a
 * missing or damaged input, input = output, an already quantized input, llama.cpp's own failure.
 *
 * @example
 * ```ts
 * import { quantizeGguf } from "steerkit/adapters/llama-cpp";
 * const report = quantizeGguf("model-f16.gguf", "model-q4_k_m.gguf", { type: "q4_k_m" });
 * console.log(report.bitsPerWeight, report.tensorTypes); // ~4.9 { F32: 33, Q4_K: 97, Q6_K: 16 }
 * ```
 */
export function quantizeGguf(input: string, output: string, options: QuantizeOptions): QuantizeReport {
  const started = performance.now();
  const info = QUANT_TYPE_INFO[options.type];
  if (!QUANT_TYPES.includes(options.type) || !info) {
    throw new QuantizeError(`unknown quantization type ${JSON.stringify(options.type)}: expected one of ${QUANT_TYPES.join(", ")}`);
  }
  const threads = options.threads ?? 0;
  if (!Number.isInteger(threads) || threads < 0) throw new QuantizeError(`threads must be a non-negative integer, got ${threads}`);
  if (!existsSync(input)) throw new QuantizeError(`${input}: no such file`);
  const file = validateModelFile(input);
  const out = resolve(output);
  if (existsSync(out) && realpathSync(out) === realpathSync(input)) {
    throw new QuantizeError(`${output} is the input model itself: write the quantized model to another path`);
  }
  if (existsSync(out) && statSync(out).isDirectory()) throw new QuantizeError(`${output} is a directory: give the path of the .gguf file to write`);
  if (!existsSync(dirname(out)) || !statSync(dirname(out)).isDirectory()) {
    throw new QuantizeError(`${output}: directory ${dirname(out)} does not exist`);
  }
  if (!options.allowRequantize) {
    const quantized = file.tensors.find((t) => t.dims.length >= 2 && !FLOAT_TYPES.has(ggmlTypeName(t.type)));
    if (quantized) {
      throw new QuantizeError(
        `${input} is already quantized (tensor "${quantized.name}" is ${ggmlTypeName(quantized.type)}): quantize the F32/F16/BF16 original, ` +
          `or pass allowRequantize (--allow-requantize) to round the rounded weights again`,
      );
    }
  }

  const lib = loadLlamaLibrary();
  const params = quantizeDefaultParams(lib);
  params.setInt32(QUANTIZE_PARAMS.nthread, threads, true);
  params.setInt32(QUANTIZE_PARAMS.ftype, info.ftype, true);
  params.setInt32(QUANTIZE_PARAMS.output_tensor_type, GGML_TYPE_COUNT, true);
  params.setInt32(QUANTIZE_PARAMS.token_embedding_type, GGML_TYPE_COUNT, true);
  params.setUint8(QUANTIZE_PARAMS.allow_requantize, options.allowRequantize ? 1 : 0);
  params.setUint8(QUANTIZE_PARAMS.pure, options.pure ? 1 : 0);

  const tmp = quantizeTempPath(out);
  lib.clearLastLogError();
  let status: number;
  try {
    status = lib.llama.llama_model_quantize(ptr(cString(input)), ptr(cString(tmp)), ptr(params));
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new QuantizeError(`llama_model_quantize failed on ${input}: ${(e as Error).message}`, { cause: e });
  }
  if (status !== 0) {
    rmSync(tmp, { force: true });
    const why = lib.lastLogError() || "no reason logged";
    throw new QuantizeError(`llama.cpp could not quantize ${input} to ${options.type}: ${why}`);
  }
  let written;
  try {
    written = readGgufHeader(tmp);
    const ftype = metaNumber(written, "general.file_type", null);
    if (ftype !== info.ftype) throw new Error(`general.file_type is ${ftype}, expected ${info.ftype}`);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new QuantizeError(`llama.cpp wrote an unreadable ${options.type} file for ${input}: ${(e as Error).message}`, { cause: e });
  }
  renameSync(tmp, out);

  const tensorTypes: Record<string, number> = {};
  let weightElements = 0;
  let weightBytes = 0;
  for (const t of written.tensors) {
    const name = ggmlTypeName(t.type);
    tensorTypes[name] = (tensorTypes[name] ?? 0) + 1;
    if (t.dims.length >= 2) {
      weightElements += t.elementCount;
      weightBytes += t.byteLength;
    }
  }
  return {
    input,
    output,
    type: options.type,
    ftype: info.ftype,
    inputBytes: file.fileSize,
    outputBytes: written.fileSize,
    bitsPerWeight: weightElements > 0 ? (weightBytes * 8) / weightElements : 0,
    tensorTypes,
    seconds: (performance.now() - started) / 1000,
  };
}
