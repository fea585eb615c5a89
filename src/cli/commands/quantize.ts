/**
 * `steerkit quantize in.gguf out.gguf --type q4_0|q4_k_m|q5_k_m|q8_0`: libllama's own quantizer
 * (src/adapters/llama-cpp/quantize.ts). The llama.cpp call blocks for seconds to minutes, so it
 * runs in a child process (quantize-worker.ts) while this one draws a progress bar from the size of
 * the file being written; errors are checked here first so bad input fails at once.
 */
import { existsSync, rmSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  estimateQuantizedBytes,
  QuantizeError,
  quantizeTempPath,
  QUANT_TYPES,
  type QuantizeReport,
  type QuantType,
} from "../../adapters/llama-cpp/quantize.ts";
import { validateModelFile } from "../../adapters/llama-cpp/validate.ts";
import { CliError, numberFlag, parse, type Command } from "../args.ts";
import { progressBar } from "../progress.ts";

const help = `steerkit quantize — quantize a GGUF with llama.cpp's own quantizer (llama_model_quantize)

Usage: steerkit quantize <in.gguf> <out.gguf> --type <type> [--pure] [--threads n] [--allow-requantize] [--json]

  --type <type>         q4_0 | q4_k_m | q5_k_m | q8_0 (llama-quantize's types; the same bytes it writes)
  --pure                every matrix at the type's base type (llama-quantize --pure: no Q6_K output
                        head, no more-bits layers in the _M mixes)
  --threads <n>         quantization threads (default: all hardware threads)
  --allow-requantize    quantize an already quantized model (adds a second rounding error)
  --json                print the report as JSON

K-quants (q4_k_m, q5_k_m) need matrix rows that are multiples of 256; llama.cpp falls back to a
32-block type for other tensors (the report lists the types written). The output is written to a
temporary file beside <out.gguf> and renamed when complete.
`;

export const quantizeCommand: Command = {
  summary: "quantize a GGUF (q4_0, q4_k_m, q5_k_m, q8_0) with llama.cpp's quantizer",
  help,
  async run(argv) {
    const { values, positionals } = parse(
      argv,
      { type: { type: "string" }, pure: { type: "boolean" }, threads: { type: "string" }, "allow-requantize": { type: "boolean" }, json: { type: "boolean" } },
      true,
    );
    if (positionals.length !== 2) throw new CliError(`expected <in.gguf> <out.gguf>, got ${positionals.length} arguments`);
    const [input, output] = positionals as [string, string];
    if (values.type === undefined) throw new CliError(`--type is required: one of ${QUANT_TYPES.join(", ")}`);
    const type = values.type.toLowerCase() as QuantType;
    if (!QUANT_TYPES.includes(type)) throw new CliError(`--type must be one of ${QUANT_TYPES.join(", ")}, got "${values.type}"`);
    const threads = numberFlag("threads", values.threads, { integer: true, min: 1 });
    if (!existsSync(input)) throw new QuantizeError(`${input}: no such file`);
    validateModelFile(input); // a damaged input fails here, before a child process starts

    const options = { type, threads, pure: values.pure === true, allowRequantize: values["allow-requantize"] === true };
    const worker = fileURLToPath(new URL("./quantize-worker.ts", import.meta.url));
    const child = Bun.spawn([process.execPath, worker, JSON.stringify({ input, output, options })], { stdout: "pipe", stderr: "inherit" });
    const total = estimateQuantizedBytes(input, type);
    const mb = (n: number) => Math.round(n / 1e6);
    const bar = progressBar(mb(total), `quantizing to ${type} (MB)`);
    const tmp = quantizeTempPath(output, child.pid);
    const timer = setInterval(() => {
      if (existsSync(tmp)) bar.update(Math.min(mb(total), mb(statSync(tmp).size)));
    }, 250);
    // Ctrl-C: stop the quantizer and leave no half-written temporary file behind.
    const interrupt = () => {
      child.kill();
      rmSync(tmp, { force: true });
      process.exit(130);
    };
    process.once("SIGINT", interrupt);
    const text = await new Response(child.stdout).text();
    await child.exited;
    process.off("SIGINT", interrupt);
    clearInterval(timer);
    if (child.exitCode !== 0) rmSync(tmp, { force: true }); // a crash in llama.cpp: the worker could not clean up
    const result = JSON.parse(text.trim().split("\n").pop() || "{}") as QuantizeReport | { error: string };
    if ("error" in result) throw new QuantizeError(result.error);
    if (child.exitCode !== 0) throw new QuantizeError(`the quantizer process exited with code ${child.exitCode}${child.signalCode ? ` (${child.signalCode})` : ""}`);
    bar.update(mb(total));
    bar.done();
    if (values.json) {
      console.log(JSON.stringify(result, null, 2));
      return;
    }
    const types = Object.entries(result.tensorTypes).map(([t, n]) => `${n} ${t}`).join(", ");
    console.log(
      `wrote ${output}: ${type}, ${result.bitsPerWeight.toFixed(2)} bits per weight, ${mb(result.inputBytes)} MB -> ${mb(result.outputBytes)} MB ` +
        `(tensors: ${types}); ${result.seconds.toFixed(1)} s`,
    );
  },
};
