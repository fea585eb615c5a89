import { convertGgufToOnnx } from "../../convert/gguf-to-onnx.ts";
import { SUPPORTED_ARCHITECTURES } from "../../convert/architectures.ts";
import { CliError, parse, type Command } from "../args.ts";

export const convertCommand: Command = {
  summary: "convert a GGUF (llama, mistral3, smollm3, qwen2, qwen3, phi3, gemma2, gemma3, gpt2) into an ONNX decoder export (same model on both backends)",
  help: `steerkit convert — build an ONNX decoder with KV cache from a GGUF

Usage: steerkit convert <model.gguf> <out-dir> [--fp16] [--json]

  <model.gguf>   architectures: ${SUPPORTED_ARCHITECTURES.join(", ")}
                 F32, F16, BF16 or Q8_0 weights (Q8_0 is dequantised)
  <out-dir>      written: model.onnx (+ model.onnx.data when large), config.json,
                 generation_config.json, tokenizer.json, tokenizer_config.json
  --fp16         store weights as float16
  --json         print the conversion report as JSON
`,
  async run(argv) {
    const { values, positionals } = parse(argv, { fp16: { type: "boolean" }, json: { type: "boolean" } }, true);
    if (positionals.length !== 2) throw new CliError(`expected <model.gguf> <out-dir>, got ${positionals.length} arguments`);
    const report = await convertGgufToOnnx(positionals[0]!, positionals[1]!, { dtype: values.fp16 ? "float16" : "float32" });
    console.log(values.json ? JSON.stringify(report) : `wrote ${positionals[1]} (${JSON.stringify(report)})`);
  },
};
