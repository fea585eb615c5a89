import { convertGgufToOnnx } from "../../convert/gguf-to-onnx.ts";
import { SUPPORTED_ARCHITECTURES } from "../../convert/architectures.ts";
import { CliError, numberFlag, parse, type Command } from "../args.ts";
import { progressBar } from "../progress.ts";
import { BLOCK_SIZES, WEIGHT_FORMATS, type WeightFormat } from "../../convert/quantize-weights.ts";

export const convertCommand: Command = {
  summary: "convert a GGUF (llama, mistral3, smollm3, qwen2, qwen3, phi3, gemma2, gemma3, gpt2) into an ONNX decoder export (same model on both backends)",
  help: `steerkit convert — build an ONNX decoder with KV cache from a GGUF

Usage: steerkit convert <model.gguf> <out-dir> [--weights fp32|fp16|int8|int4|int8-dynamic] [--block-size n] [--layout optimum|genai] [--json]

  <model.gguf>   architectures: ${SUPPORTED_ARCHITECTURES.join(", ")}
  <model.gguf>   F32, F16, BF16, or llama-quantize's q8_0 / q4_0 / q4_k_m / q5_k_m types
                 (Q8_0, Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K: dequantized exactly as ggml does)
  <out-dir>      written: model.onnx (+ model.onnx.data when large), config.json,
                 generation_config.json, tokenizer.json, tokenizer_config.json
  --weights      fp32 (default), fp16 (weights, activations and KV cache in float16), or
                 int8 / int4: every matrix block-quantized into MatMulNBits (block 32, symmetric,
                 accuracy_level 4, float32 activations: what onnxruntime-genai's builder writes for
                 CPU); Q8_0 / Q4_0 GGUF matrices are repacked into int8 / int4 without loss
                 int8-dynamic: onnxruntime's quantize_dynamic layout (DynamicQuantizeLinear ->
                 MatMulInteger -> Cast -> Mul): int8 weights with one scale per output column,
                 activations rounded to uint8 per tensor at run time; faster than int8 on x86
                 VNNI/AMX CPUs, less exact (Q8_0 sources are rounded again); optimum layout only
  --block-size   int8/int4 (MatMulNBits) block: 32 (default; Q4_0/Q8_0 repack without loss), 16, 64, 128 or 256
                 (128: fewer scale bytes and faster on ONNX Runtime's CPU kernels)
  --layout       optimum (default: standard ONNX ops, position_ids input) or genai: the graph
                 onnxruntime-genai's model builder writes for CPU (GroupQueryAttention with rotary,
                 packed q/k/v, SkipSimplifiedLayerNormalization, genai_config.json; fp32/int8/int4)
  --fp16         the same as --weights fp16
  --json         print the conversion report as JSON
`,
  async run(argv) {
    const { values, positionals } = parse(argv, { fp16: { type: "boolean" }, weights: { type: "string" }, "block-size": { type: "string" }, layout: { type: "string" }, json: { type: "boolean" } }, true);
    if (positionals.length !== 2) throw new CliError(`expected <model.gguf> <out-dir>, got ${positionals.length} arguments`);
    const weights = (values.weights ?? (values.fp16 ? "fp16" : "fp32")) as WeightFormat;
    if (!WEIGHT_FORMATS.includes(weights)) throw new CliError(`--weights must be one of ${WEIGHT_FORMATS.join(", ")}, got "${values.weights}"`);
    if (values.fp16 && weights !== "fp16") throw new CliError(`--fp16 contradicts --weights ${weights}`);
    const layout = values.layout ?? "optimum";
    if (layout !== "optimum" && layout !== "genai") throw new CliError(`--layout must be optimum or genai, got "${layout}"`);
    const blockSize = numberFlag("block-size", values["block-size"], { integer: true });
    if (blockSize !== undefined && !(BLOCK_SIZES as readonly number[]).includes(blockSize)) throw new CliError(`--block-size must be one of ${BLOCK_SIZES.join(", ")}, got ${blockSize}`);
    const mb = (n: number) => Math.round(n / 1e6);
    let bar: ReturnType<typeof progressBar> | null = null;
    const onProgress = (done: number, total: number) => (bar ??= progressBar(mb(total), `converting (${weights}, MB)`)).update(mb(done));
    const report = await convertGgufToOnnx(positionals[0]!, positionals[1]!, { weights, layout, blockSize, onProgress });
    (bar as ReturnType<typeof progressBar> | null)?.done();
    console.log(values.json ? JSON.stringify(report) : `wrote ${positionals[1]} (${JSON.stringify(report)})`);
  },
};
