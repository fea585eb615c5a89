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
import { ConvertError, type LlamaGguf, openLlamaGguf } from "./llama-gguf.ts";
import { DEFAULT_EXTERNAL_THRESHOLD, writeOnnxModel } from "./onnx-writer.ts";

export { ConvertError } from "./llama-gguf.ts";

export interface ConvertOptions {
  /** Weight, activation and KV-cache precision of the ONNX model. Default "float32". */
  readonly dtype?: WeightDtype;
  /**
   * Store weights in `model.onnx.data`: true, false, or "auto" (default) = when they exceed
   * `externalThresholdBytes` (default 128 MiB: onnxruntime maps external data but parses and copies
   * inline weights, so large models load far faster external; protobuf files cannot exceed 2 GiB).
   */
  readonly externalData?: boolean | "auto";
  readonly externalThresholdBytes?: number;
  /** `max_position_embeddings` written to config.json. Default: the GGUF's context length. */
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
  const dtype = options.dtype ?? "float32";
  if (dtype !== "float32" && dtype !== "float16") throw new ConvertError(ggufPath, `dtype must be "float32" or "float16", got ${JSON.stringify(dtype)}`);
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

  const { model, weights } = buildLlamaOnnxGraph(g, { dtype });
  const weightBytes = weights.reduce((a, w) => a + w.byteLength, 0);
  const threshold = options.externalThresholdBytes ?? DEFAULT_EXTERNAL_THRESHOLD;
  const external = options.externalData === undefined || options.externalData === "auto" ? weightBytes > threshold : options.externalData;
  const written = writeOnnxModel(outDir, model, weights, external);
  const files = [...written.files];

  const sourceTypes: Record<string, number> = {};
  for (const w of weights) sourceTypes[ggmlTypeName(w.source.type)] = (sourceTypes[ggmlTypeName(w.source.type)] ?? 0) + 1;

  const writeJson = (name: string, value: unknown, indent = 2) => {
    const p = join(outDir, name);
    writeFileSync(p, JSON.stringify(value, null, indent) + "\n");
    files.push(p);
  };
  writeJson("config.json", { ...hfConfig(g, dtype, options.maxPositionEmbeddings ?? h.contextLength), ...tokens });
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
    opset: OPSET,
    parameterCount: weights.reduce((a, w) => a + w.source.elementCount, 0),
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
    rms_norm_eps: h.rmsEps,
    rope_theta: h.ropeFreqBase,
    rope_scaling: h.ropeFreqScale !== 1 ? { type: "linear", factor: 1 / h.ropeFreqScale } : null,
    hidden_act: "silu",
    tie_word_embeddings: h.tiedEmbeddings,
    attention_bias: g.layers[0]!.bq !== null,
    mlp_bias: g.layers[0]!.bGate !== null,
    torch_dtype: dtype,
    use_cache: true,
    // Where this came from, and the one layout fact a reader of the weights must know.
    steerkit: {
      converted_from: "gguf",
      name: h.name,
      rope_layout: h.profile.rope === "norm" ? "interleaved pairs (GGUF-permuted q/k weights)" : "halves (neox)",
      no_rope_layers: h.ropeLayers.flatMap((r, i) => (r ? [] : [i])),
      rope_freq_factors: h.ropeFreqFactors !== null,
      rope_attn_factor: h.ropeAttnFactor,
    },
  };
  return config;
}
