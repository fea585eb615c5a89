/**
 * `convertGgufToOnnx`: a llama-family GGUF -> an ONNX decoder export directory the ONNX adapter
 * loads like an Optimum export: `model.onnx` (+ `model.onnx.data` for large models), `config.json`,
 * `generation_config.json`, `tokenizer.json` and `tokenizer_config.json` (with the chat template).
 *
 * The math and its sources are in llama-gguf.ts, the graph's layout in llama-onnx-graph.ts.
 */
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import { checkFiniteWeights } from "../formats/gguf-scan.ts";
import { join } from "node:path";
import { ggmlTypeName } from "../formats/ggml-types.ts";
import { ggufToHfTokenizer, readTokenizerSpec } from "../formats/gguf-tokenizer.ts";
import { buildLlamaOnnxGraph, OPSET, type WeightDtype } from "./llama-onnx-graph.ts";
import { ConvertError, type LlamaGguf, openLlamaGguf, ropeFactors } from "./llama-gguf.ts";
import { DEFAULT_EXTERNAL_THRESHOLD, writeOnnxModel } from "./onnx-writer.ts";
import { blockReport, resolveWeights, type ResolvedWeights, type WeightFormat } from "./quantize-weights.ts";
import { buildGenaiLlamaGraph, GENAI_OPSET, genaiConfig } from "./genai-llama-graph.ts";

export { ConvertError } from "./llama-gguf.ts";

export interface ConvertOptions {
  /** Weight, activation and KV-cache precision of the ONNX model. Default "float32". */
  readonly dtype?: WeightDtype;
  /**
   * Weight format (overrides `dtype`): "fp32", "fp16", or block-quantized "int8" / "int4"
   * (`MatMulNBits`, float32 activations, as onnxruntime-genai's builder writes for CPU; see
   * quantize-weights.ts). Q4_0 / Q8_0 GGUF matrices are repacked into int4 / int8 without loss.
   * "int8-dynamic": onnxruntime's `quantize_dynamic` pattern (DynamicQuantizeLinear + MatMulInteger,
   * symmetric per-column int8 weights; optimum layout only; see integer-matmul.ts).
   */
  readonly weights?: WeightFormat;
  /**
   * Graph layout: "optimum" (default: standard ops, position_ids input, see llama-onnx-graph.ts) or
   * "genai" (onnxruntime-genai's builder layout: GroupQueryAttention, packed q/k/v, Skip norms,
   * genai_config.json; fp32 / int8 / int4 weights; see genai-llama-graph.ts).
   */
  readonly layout?: "optimum" | "genai";
  /**
   * MatMulNBits block size for int8/int4: 16, 32 (default: the builder's default, and Q4_0/Q8_0's, so
   * those repack without loss), 64, 128 or 256 (fewer scale bytes, faster on ONNX Runtime's CPU
   * kernels; Q4_0/Q8_0 sources are then dequantized and rounded again).
   */
  readonly blockSize?: number;
  /** Progress while weights are converted and written: bytes done of the total. */
  readonly onProgress?: (doneBytes: number, totalBytes: number) => void;
  /** genai layout only: rotary inside GroupQueryAttention (default) or separate RotaryEmbedding nodes. */
  readonly genaiRotary?: "attention" | "separate";
  /**
   * Store weights in `model.onnx.data`: true, false, or "auto" (default) = when they exceed
   * `externalThresholdBytes` (default 128 MiB: onnxruntime maps external data but parses and copies
   * inline weights, so large models load far faster external; protobuf files cannot exceed 2 GiB).
   */
  readonly externalData?: boolean | "auto";
  readonly externalThresholdBytes?: number;
  /**
   * `max_position_embeddings` written to config.json, and the context the export is for (phi3's
   * longrope factors are chosen by it, as llama.cpp chooses them by its context). Default: the
   * GGUF's context length.
   */
  readonly maxPositionEmbeddings?: number;
}

export interface ConvertReport {
  readonly source: string;
  readonly outDir: string;
  /** Paths written. */
  readonly files: readonly string[];
  readonly architecture: string;
  readonly name: string;
  readonly nLayers: number;
  readonly dModel: number;
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly vocabSize: number;
  readonly dtype: WeightDtype;
  readonly weights: WeightFormat;
  readonly layout: "optimum" | "genai";
  /**
   * int8/int4: the block size, and how many matrices were repacked from the GGUF's own Q4_0/Q8_0
   * blocks (the same weights as llama.cpp's) or rounded from float values.
   */
  readonly blockQuantized: { readonly bits: 4 | 8; readonly blockSize: number; readonly repacked: number; readonly rounded: number } | null;
  /** int8-dynamic: how many matrices became MatMulInteger (the others, rows not whole 32-blocks, stay float). */
  readonly integerQuantized: { readonly matrices: number } | null;
  readonly opset: number;
  readonly parameterCount: number;
  readonly weightBytes: number;
  readonly externalData: boolean;
  readonly tiedEmbeddings: boolean;
  /** GGUF weight types met, with how many tensors of each (non-float ones were dequantised). */
  readonly sourceTypes: Readonly<Record<string, number>>;
  /** Whether tokenizer files were written (false when the GGUF has no tokenizer). */
  readonly tokenizer: boolean;
  readonly seconds: number;
}

export async function convertGgufToOnnx(ggufPath: string, outDir: string, options: ConvertOptions = {}): Promise<ConvertReport> {
  const started = performance.now();
  let resolved: ResolvedWeights;
  try {
    resolved = resolveWeights(options);
  } catch (e) {
    throw new ConvertError(ggufPath, (e as Error).message);
  }
  const { format, dtype, bits: quantizeBits, blockSize, integerOps } = resolved;
  const g = openLlamaGguf(ggufPath);
  const h = g.hparams;
  // Every weight is read to convert it anyway; a NaN / Inf one would make every ONNX logit NaN.
  checkFiniteWeights(g.file, "all");

  // The tokenizer (and the chat template, in tokenizer_config.json) come from the GGUF's own
  // tokenizer metadata. Built before anything is written, so an unsupported tokenizer fails fast;
  // a GGUF without one still converts, with the report saying so.
  const spec = g.file.metadata.has("tokenizer.ggml.model") ? readTokenizerSpec(g.file) : null;
  const tokenizer = spec ? ggufToHfTokenizer(spec) : null;
  // Generation ends on every token llama.cpp treats as end-of-generation (EOS, EOT, EOM...), EOS first,
  // so a chat model converted from GGUF stops where it stops under llama.cpp.
  const bos = spec ? spec.bosId : h.bosTokenId;
  const eosFirst = spec ? spec.eosId : h.eosTokenId;
  const eos = [...new Set([...(eosFirst !== null ? [eosFirst] : []), ...(spec?.eogIds ?? [])])];
  const tokens = { bos_token_id: bos, eos_token_id: eos.length === 0 ? null : eos.length === 1 ? eos[0]! : eos };

  try {
    mkdirSync(outDir, { recursive: true });
    if (!statSync(outDir).isDirectory()) throw new Error("not a directory");
  } catch (e) {
    throw new ConvertError(ggufPath, `cannot create output directory ${outDir}: ${(e as Error).message}`);
  }

  const layout = options.layout ?? "optimum";
  if (layout !== "optimum" && layout !== "genai") throw new ConvertError(ggufPath, `layout must be "optimum" or "genai", got ${JSON.stringify(layout)}`);
  if (layout === "genai" && integerOps) throw new ConvertError(ggufPath, `--weights int8-dynamic writes the optimum layout (onnxruntime's quantize_dynamic pattern); the genai layout takes fp32, int8 or int4`);
  if (layout === "genai" && dtype !== "float32") throw new ConvertError(ggufPath, `the genai layout has float32 activations (as onnxruntime-genai's CPU builds): use --weights fp32, int8 or int4, not ${format}`);
  const maxPositions = options.maxPositionEmbeddings ?? h.contextLength;
  const { model, weights } =
    layout === "genai" ? buildGenaiLlamaGraph(g, { quantizeBits, blockSize, contextLength: maxPositions, rotary: options.genaiRotary })
      : buildLlamaOnnxGraph(g, { dtype, quantizeBits, blockSize, integerOps, contextLength: maxPositions });
  const weightBytes = weights.reduce((a, w) => a + w.byteLength, 0);
  const threshold = options.externalThresholdBytes ?? DEFAULT_EXTERNAL_THRESHOLD;
  const external = options.externalData === undefined || options.externalData === "auto" ? weightBytes > threshold : options.externalData;
  const written = writeOnnxModel(outDir, model, weights, external, options.onProgress);
  const files = [...written.files];

  const sourceTensors = [...new Set(weights.flatMap((w) => w.sources ?? [w.source]))];
  const sourceTypes: Record<string, number> = {};
  for (const t of sourceTensors) sourceTypes[ggmlTypeName(t.type)] = (sourceTypes[ggmlTypeName(t.type)] ?? 0) + 1;

  const writeJson = (name: string, value: unknown, indent = 2) => {
    const p = join(outDir, name);
    writeFileSync(p, JSON.stringify(value, null, indent) + "\n");
    files.push(p);
  };
  writeJson("config.json", { ...hfConfig(g, dtype, maxPositions), ...tokens });
  if (layout === "genai") writeJson("genai_config.json", genaiConfig(g, maxPositions, { bos, eos }, options.genaiRotary), 4);
  if (tokenizer) {
    writeJson("tokenizer.json", tokenizer.tokenizerJson, 0); // compact: vocab and merges run to megabytes
    writeJson("tokenizer_config.json", tokenizer.tokenizerConfig);
  }
  writeJson("generation_config.json", Object.fromEntries(Object.entries(tokens).filter(([, v]) => v !== null)));

  return {
    source: ggufPath,
    outDir,
    files,
    architecture: h.architecture,
    name: h.name,
    nLayers: h.nLayers,
    dModel: h.nEmbd,
    nHeads: h.nHead,
    nKvHeads: h.nHeadKv,
    vocabSize: h.vocabSize,
    dtype,
    weights: format,
    layout,
    blockQuantized: quantizeBits === undefined ? null : blockReport(weights, quantizeBits, blockSize),
    integerQuantized: integerOps ? { matrices: weights.filter((w) => w.name.endsWith("_quantized")).length } : null,
    opset: layout === "genai" ? GENAI_OPSET : OPSET,
    parameterCount: sourceTensors.reduce((a, t) => a + t.elementCount, 0),
    weightBytes,
    externalData: external,
    tiedEmbeddings: h.tiedEmbeddings,
    sourceTypes,
    tokenizer: tokenizer !== null,
    seconds: (performance.now() - started) / 1000,
  };
}

/** HF `LlamaConfig` fields, so tools (and the ONNX adapter) read the model's shape from config.json. */
function hfConfig(g: LlamaGguf, dtype: WeightDtype, maxPositions: number): Record<string, unknown> {
  const h = g.hparams;
  const layer = g.layers[0]!;
  const config: Record<string, unknown> = {
    _name_or_path: h.name,
    architectures: [h.profile.hfClass],
    // The GGUF architecture name: what the llama.cpp adapter reports for the same model.
    model_type: h.architecture,
    hidden_size: h.nEmbd,
    intermediate_size: h.nFf,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHead,
    num_key_value_heads: h.nHeadKv,
    head_dim: h.headDim,
    vocab_size: h.vocabSize,
    max_position_embeddings: maxPositions,
    ...(h.profile.norm === "rms" ? { rms_norm_eps: h.normEps } : { layer_norm_epsilon: h.normEps }),
    rope_theta: h.ropeFreqBase,
    rope_scaling: h.ropeFreqScale !== 1 ? { type: "linear", factor: 1 / h.ropeFreqScale } : null,
    partial_rotary_factor: h.nRot / h.headDim,
    hidden_act: h.profile.hfActivation,
    tie_word_embeddings: h.tiedEmbeddings,
    attention_bias: (layer.bq ?? layer.bqkv) !== null,
    mlp_bias: (layer.bUp ?? layer.bDown) !== null,
    ...(h.attnSoftcap > 0 ? { attn_logit_softcapping: h.attnSoftcap } : {}),
    ...(h.finalSoftcap > 0 ? { final_logit_softcapping: h.finalSoftcap } : {}),
    ...(h.slidingWindow.some((w) => w > 0) ? { sliding_window: Math.max(...h.slidingWindow) } : {}),
    torch_dtype: dtype,
    use_cache: true,
    // Where this came from, and the one layout fact a reader of the weights must know.
    steerkit: {
      converted_from: "gguf",
      name: h.name,
      rope_layout: { norm: "interleaved pairs (GGUF-permuted q/k weights)", neox: "halves (neox)", none: "no rope (learned positions)" }[h.profile.rope],
      no_rope_layers: h.ropeLayers.flatMap((r, i) => (r ? [] : [i])),
      rope_freq_factors: h.ropeFreqFactors !== null,
      longrope_factors: h.longrope ? (ropeFactors(h, maxPositions) === h.longrope.long ? "long" : "short") : null,
      rope_attn_factor: h.ropeAttnFactor,
      // Per block: the attention window (0 = full) and rope base, as the graph computes them.
      sliding_window_per_layer: h.slidingWindow,
      rope_theta_per_layer: h.layerRope.map((r) => (r.rotate ? r.freqBase : null)),
      query_scale: h.queryScale,
      embedding_scale: h.embedScale,
    },
  };
  return config;
}
