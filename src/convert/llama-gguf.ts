/**
 * A llama-family GGUF as the converter needs it: validated hyper-parameters and a way to read each
 * weight, with every error naming the file and the reason.
 *
 * # The math, as llama.cpp computes it for `general.architecture` = "llama"
 *
 * Read from llama.cpp's `src/models/llama.cpp`, `src/llama-graph.cpp` (build_norm, build_qkv,
 * build_attn_mha, build_ffn), `src/llama-model.cpp` (hparams), `src/llama-context.cpp` (rope cparams)
 * and `ggml/src/ggml-cpu/ops.cpp` (rope, rms_norm). Per token row `x` (`[n_embd]`):
 *
 *   h_0 = token_embd[id]                                    (ggml_get_rows; `embd` in the eval callback = resid_pre.0)
 *   for each block L:
 *     a   = rms_norm(h) * attn_norm                          rms_norm(v) = v / sqrt(mean(v²) + eps),
 *                                                            eps = `llama.attention.layer_norm_rms_epsilon`
 *     q   = a Wqᵀ (+ bq),  k = a Wkᵀ (+ bk),  v = a Wvᵀ (+ bv)   (W rows are outputs: GGUF dims [in, out])
 *     q,k = rope(q), rope(k) per head of head_dim = n_embd / n_head (or `attention.key_length`)
 *     attn per head i: softmax(q_i · K_g / sqrt(head_dim) + causal mask) · V_g, with the KV head
 *                      g = floor(i / (n_head / n_head_kv)) — grouped-query attention: consecutive query
 *                      heads share one KV head (ggml_mul_mat broadcasts src0 over ne2 that way, as HF's
 *                      repeat_kv does)
 *     m   = h + concat_heads(attn) Woᵀ (+ bo)              (`ffn_inp-L` = resid_mid.L)
 *     f   = rms_norm(m) * ffn_norm
 *     h   = m + (silu(f Wgateᵀ) ⊙ (f Wupᵀ)) Wdownᵀ         (`l_out-L` = resid_post.L; silu(x) = x·σ(x))
 *   logits = (rms_norm(h) * output_norm) Woutᵀ, Wout = `output.weight`, or `token_embd.weight` when
 *            the file has no `output.weight` (tied embeddings: llama.cpp loads it TENSOR_DUPLICATED)
 *
 * RoPE: llama uses LLAMA_ROPE_TYPE_NORM, which rotates ADJACENT pairs (x[2j], x[2j+1]) of each head
 * (ggml `rotate_pairs` with n_offset 1). HF's llama rotates halves (x[j], x[j+d/2]); the GGUF converter
 * permutes the rows of Wq and Wk so the two agree, so a graph built on the GGUF weights must rotate
 * adjacent pairs. For position p and pair j (0 <= j < n_rot/2):
 *
 *   theta_j = freq_scale * p * freq_base^(-2j / n_rot) / ff_j
 *   (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos) * attn_factor
 *
 * - freq_base  = `llama.rope.freq_base` (default 10000).
 * - n_rot      = `llama.rope.dimension_count` (default head_dim); llama.cpp refuses a llama model whose
 *                n_rot differs from head_dim, and so do we.
 * - freq_scale = 1 / `llama.rope.scaling.factor` (or the old `llama.rope.scale_linear`) for scaling type
 *                "linear" (the default type when a factor is present); 1 for "none" or no factor.
 *                "yarn" and "longrope" change the angle per dimension and the magnitude: refused by name.
 * - ff_j       = `rope_freqs.weight[j]` when present (Llama 3.1-style frequency factors), else 1.
 * - attn_factor= `llama.rope.scaling.attn_factor` (default 1), applied to cos and sin alike.
 *
 * Attention scale is 1/sqrt(head_dim) (llama's `f_attention_scale` is 0 unless set), applied to q·k
 * before the mask and softmax, as `ggml_soft_max_ext(kq, mask, scale)` does.
 *
 * # The other architectures
 *
 * Each supported architecture is this graph with the departures its entry in architectures.ts
 * describes (rope kind, partial rotary, LayerNorm, fused q/k/v or gate/up, post-norms, soft-caps,
 * sliding windows, learned positions, embedding scale). This module reads the tensors and keys
 * those departures need and turns them into plain numbers per block (`layerRope`, `slidingWindow`,
 * `queryScale`, ...), so the reference backend and the graph writer never look at the name.
 *
 * Where llama.cpp's numbers differ from an fp32 graph (so parity is within a tolerance, not exact):
 * its KV cache is F16 by default (K and V rounded to half on store); with F16/Q8_0 weights, ggml's
 * CPU matmul first converts the activations to the weight's dot type (F16 / Q8_0 blocks); rms_norm sums
 * in double; rope angles are built by repeated float multiplication (theta *= theta_scale).
 */
import {
  architecture,
  type GgufFile,
  GgufError,
  type GgufTensorInfo,
  type GgufValue,
  metaNumber,
  metaString,
  readGgufHeader,
  readTensorBytes,
  readTensorF32,
} from "../formats/gguf.ts";
import { type ArchProfile, architectureProfile, SUPPORTED_ARCHITECTURES } from "./architectures.ts";
import { DEQUANTIZABLE_TYPES, GGML_TYPE, ggmlTypeName } from "../formats/ggml-types.ts";
import { SteerkitError } from "../core/errors.ts";

export { ARCHITECTURES, SUPPORTED_ARCHITECTURES, type ArchProfile } from "./architectures.ts";
/**
 * Weight types read: the float ones and every block type `dequantize` reads (Q8_0, Q4_0,
 * Q5_0/Q5_1, Q4_K, Q5_K, Q6_K: llama-quantize's q8_0, q4_0, q4_k_m and q5_k_m files); Q4_0 / Q8_0 are
 * repacked rather than dequantized for int4 / int8 exports (quantize-weights.ts). Everything else is
 * refused by name.
 */
export const SUPPORTED_WEIGHT_TYPES: readonly number[] = DEQUANTIZABLE_TYPES;

/** The rotation one block applies to q and k. */
export interface LayerRope {
  /** False for blocks without rope (smollm3's NoPE blocks, every gpt2 block). */
  readonly rotate: boolean;
  readonly freqBase: number;
  /** 1 / linear scaling factor (1 without scaling). */
  readonly freqScale: number;
}

/** Phi-3's longrope: frequency divisors for long and short contexts (either may be absent). */
export interface Longrope {
  readonly long: Float32Array | null;
  readonly short: Float32Array | null;
  /** `rope.scaling.original_context_length`: contexts above it use `long`. */
  readonly originalContext: number;
}

export interface LlamaHParams {
  readonly architecture: string;
  readonly profile: ArchProfile;
  /** Per block: whether it applies RoPE (false for NoPE blocks and rope-less architectures). */
  readonly ropeLayers: readonly boolean[];
  /** Per block: its rope base and scale (sliding-window blocks of gemma3 have their own). */
  readonly layerRope: readonly LayerRope[];
  /** Per block: the sliding attention window (a query at p sees keys p - w < k <= p), 0 = full causal attention. */
  readonly slidingWindow: readonly number[];
  readonly name: string;
  readonly nLayers: number;
  readonly nEmbd: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  /** Rotated dimensions per head (<= headDim: partial rotary leaves the rest as they are). */
  readonly nRot: number;
  readonly vocabSize: number;
  /** Training context (`<arch>.context_length`; gpt2's learned positions cover exactly this many). */
  readonly contextLength: number;
  /** RMSNorm or LayerNorm epsilon (`attention.layer_norm_rms_epsilon` / `attention.layer_norm_epsilon`). */
  readonly normEps: number;
  readonly ropeFreqBase: number;
  /** 1 / rope scaling factor ("linear"), 1 without scaling. */
  readonly ropeFreqScale: number;
  readonly ropeAttnFactor: number;
  /** `rope_freqs.weight` (length nRot/2), or null. */
  readonly ropeFreqFactors: Float32Array | null;
  /** phi3's longrope factors (see architectures.ts), or null; pick with {@link ropeFactors}. */
  readonly longrope: Longrope | null;
  /** Multiplies q·k before the soft-cap, mask and softmax. */
  readonly queryScale: number;
  /** Attention logit soft-cap (cap * tanh(s / cap)), 0 = none. */
  readonly attnSoftcap: number;
  /** Final logit soft-cap, 0 = none. */
  readonly finalSoftcap: number;
  /** Token embeddings are multiplied by this (gemma: sqrt(n_embd) in float32), else 1. */
  readonly embedScale: number;
  /** True when `output.weight` is absent and the embedding matrix doubles as the output head. */
  readonly tiedEmbeddings: boolean;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
}

export interface LlamaLayerTensors {
  readonly attnNorm: GgufTensorInfo;
  /** LayerNorm bias (gpt2), else null. */
  readonly attnNormB: GgufTensorInfo | null;
  /** Fused q/k/v ([n_embd, q + 2 kv]: rows of q, then k, then v) and its bias; null when separate. */
  readonly wqkv: GgufTensorInfo | null;
  readonly bqkv: GgufTensorInfo | null;
  /** Separate projections; null when fused. */
  readonly wq: GgufTensorInfo | null;
  readonly wk: GgufTensorInfo | null;
  readonly wv: GgufTensorInfo | null;
  readonly bq: GgufTensorInfo | null;
  readonly bk: GgufTensorInfo | null;
  readonly bv: GgufTensorInfo | null;
  readonly wo: GgufTensorInfo;
  readonly bo: GgufTensorInfo | null;
  /** gemma's norm of the attention branch before its residual add, else null. */
  readonly postAttnNorm: GgufTensorInfo | null;
  readonly ffnNorm: GgufTensorInfo;
  readonly ffnNormB: GgufTensorInfo | null;
  /** Null for the gelu MLP (gpt2) and for phi3, whose `ffn_up` holds gate and up (gate first). */
  readonly wGate: GgufTensorInfo | null;
  readonly wUp: GgufTensorInfo;
  readonly wDown: GgufTensorInfo;
  readonly bGate: GgufTensorInfo | null;
  readonly bUp: GgufTensorInfo | null;
  readonly bDown: GgufTensorInfo | null;
  /** gemma's norm of the FFN branch before its residual add, else null. */
  readonly postFfnNorm: GgufTensorInfo | null;
  /** Per-head q/k RMSNorm weights ([head_dim]: qwen3, gemma3), else null. */
  readonly qNorm: GgufTensorInfo | null;
  readonly kNorm: GgufTensorInfo | null;
}

export interface LlamaGguf {
  readonly file: GgufFile;
  readonly hparams: LlamaHParams;
  readonly tokenEmbd: GgufTensorInfo;
  /** Learned absolute position embeddings ([n_embd, context_length], gpt2), else null. */
  readonly posEmbd: GgufTensorInfo | null;
  readonly outputNorm: GgufTensorInfo;
  /** Final LayerNorm bias (gpt2), else null. */
  readonly outputNormB: GgufTensorInfo | null;
  /** `output.weight`, or `token_embd.weight` when tied. */
  readonly output: GgufTensorInfo;
  /** `output.bias` (qwen2), or null. */
  readonly outputBias: GgufTensorInfo | null;
  readonly layers: readonly LlamaLayerTensors[];
}

/** A converter problem with the input model; the message names the file. */
export class ConvertError extends SteerkitError {
  override name = "ConvertError";
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super("CONVERT_FAILED", `${file}: cannot convert: ${reason}`);
  }
}

/** Open a GGUF and check it is a model of a supported architecture that can be computed exactly. */
export function openLlamaGguf(path: string): LlamaGguf {
  const file = readGgufHeader(path); // GgufError names the file for non-GGUF / damaged input
  const fail = (reason: string): never => {
    throw new ConvertError(path, reason);
  };
  const arch = architecture(file);
  const profile = architectureProfile(arch) ?? fail(`unsupported architecture "${arch}" (general.architecture); this converter handles ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  const key = (k: string) => `${arch}.${k}`;
  const has = (k: string) => file.metadata.has(key(k));
  const num = (k: string, fallback?: number): number => {
    const v = file.metadata.get(key(k));
    if (v === undefined && fallback !== undefined) return fallback;
    return uniform(file, key(k), v);
  };
  const positive = (k: string, v: number): number => {
    if (!Number.isInteger(v) || v <= 0) fail(`metadata "${key(k)}" must be a positive integer, got ${v}`);
    return v;
  };

  const temperatureScale = num("attention.temperature_scale", 0);
  if (temperatureScale !== 0) fail(`attention temperature scaling (${key("attention.temperature_scale")} = ${temperatureScale}) is not supported`);
  const expertCount = num("expert_count", 0);
  if (expertCount > 0) fail(`mixture-of-experts models (${key("expert_count")} = ${expertCount}) are not supported`);

  const nLayers = positive("block_count", num("block_count"));
  const nEmbd = positive("embedding_length", num("embedding_length"));
  const nFf = positive("feed_forward_length", num("feed_forward_length"));
  const nHead = positive("attention.head_count", num("attention.head_count"));
  const nHeadKv = positive("attention.head_count_kv", num("attention.head_count_kv", nHead));
  if (nHead % nHeadKv !== 0) fail(`${nHead} attention heads are not a multiple of ${nHeadKv} KV heads`);
  const headDim = positive("attention.key_length", num("attention.key_length", nEmbd / nHead));
  const valueDim = num("attention.value_length", headDim);
  if (valueDim !== headDim) fail(`value head size ${valueDim} differs from key head size ${headDim} (llama.cpp requires them equal)`);
  const rope = profile.rope !== "none";
  const nRot = rope ? num("rope.dimension_count", headDim) : 0;
  if (rope && nRot !== headDim && !profile.partialRotary) {
    fail(`${key("rope.dimension_count")} is ${nRot} but the head size is ${headDim} (llama.cpp refuses partial rotary for ${arch})`);
  }
  if (rope && (!Number.isInteger(nRot) || nRot <= 0 || nRot > headDim || nRot % 2 !== 0)) {
    fail(`${key("rope.dimension_count")} is ${nRot}; expected an even number of dimensions in 2..${headDim} (the head size)`);
  }
  const epsKey = profile.norm === "rms" ? "attention.layer_norm_rms_epsilon" : "attention.layer_norm_epsilon";
  const normEps = num(epsKey);
  if (!(normEps >= 0)) fail(`${key(epsKey)} must be >= 0, got ${normEps}`);
  const contextLength = positive("context_length", num("context_length"));
  const ropeFreqBase = num("rope.freq_base", 10000);

  const scalingType = metaString(file, key("rope.scaling.type"), "linear");
  let factor = num("rope.scaling.factor", 0);
  if (factor === 0) factor = num("rope.scale_linear", 0);
  let ropeFreqScale = factor === 0 ? 1 : 1 / factor;
  if (scalingType === "none") ropeFreqScale = 1;
  else if (scalingType !== "linear") {
    fail(`rope scaling type "${scalingType}" (${key("rope.scaling.type")}) is not supported; none and linear are`);
  }
  const ropeAttnFactor = num("rope.scaling.attn_factor", 1);

  // Sliding-window attention: which blocks slide, how far, and the rope their sliding blocks use.
  const swaRule = profile.slidingWindow;
  const window = swaRule ? (has("attention.sliding_window") ? num("attention.sliding_window") : swaRule.defaultWindow) : null;
  const slides = (il: number, pattern: number) => pattern === 0 || il % pattern < pattern - 1;
  let slidingWindow: number[] = new Array<number>(nLayers).fill(0);
  let layerRope: LayerRope[] = Array.from({ length: nLayers }, (_, il) => ({
    rotate: rope && (profile.noRopeLayerStep === 0 || (il + 1) % profile.noRopeLayerStep !== 0),
    freqBase: ropeFreqBase,
    freqScale: ropeFreqScale,
  }));
  if (swaRule && window !== null && window > 0) {
    if (!Number.isInteger(window)) fail(`${key("attention.sliding_window")} must be a positive integer, got ${window}`);
    // llama.cpp reads the pattern with get_key_or_arr(..., required = false) into a scalar: a per-layer
    // array there is skipped and the architecture's default period applies, so here too.
    const patternValue = file.metadata.get(key("attention.sliding_window_pattern"));
    const pattern = Array.isArray(patternValue) ? swaRule.defaultPattern : num("attention.sliding_window_pattern", swaRule.defaultPattern);
    if (!Number.isInteger(pattern) || pattern < 0) fail(`${key("attention.sliding_window_pattern")} must be a non-negative integer, got ${pattern}`);
    const localBase = num("rope.freq_base_swa", swaRule.localRope === "global" ? ropeFreqBase : 10000);
    const localScale = swaRule.localRope === "global" ? ropeFreqScale : 1;
    slidingWindow = slidingWindow.map((_, il) => (slides(il, pattern) ? window : 0));
    layerRope = layerRope.map((r, il) => (slides(il, pattern) ? { ...r, freqBase: localBase, freqScale: localScale } : r));
  }

  // Gemma's query scale: 1/sqrt(n_embd / n_head) for the 27B variant (gemma_pytorch's config), else 1/sqrt(head_dim).
  const queryScale = 1 / Math.sqrt(profile.wideQueryScaleLayers === nLayers ? nEmbd / nHead : headDim);
  const attnSoftcap = profile.attnSoftcap === "always" ? num("attn_logit_softcapping", 50) : 0;
  const finalSoftcap =
    profile.finalSoftcap === "always" ? num("final_logit_softcapping", 30) : profile.finalSoftcap === "optional" ? num("final_logit_softcapping", 0) : 0;
  if (!(attnSoftcap >= 0) || !(finalSoftcap >= 0)) fail(`soft-cap values must be >= 0, got ${attnSoftcap} (attention) and ${finalSoftcap} (final)`);
  if (profile.finalSoftcap === "always" && finalSoftcap === 0) fail(`${key("final_logit_softcapping")} is 0; llama.cpp divides by it`);
  if (profile.attnSoftcap === "always" && attnSoftcap === 0) fail(`${key("attn_logit_softcapping")} is 0; llama.cpp divides by it`);
  const embedScale = profile.embedScaleSqrtD ? Math.fround(Math.sqrt(nEmbd)) : 1;

  const tensor = (name: string): GgufTensorInfo => {
    const t = file.tensors.find((x) => x.name === name);
    if (!t) fail(`tensor "${name}" is missing`);
    return checkType(path, t!);
  };
  const optional = (name: string): GgufTensorInfo | null => {
    const t = file.tensors.find((x) => x.name === name);
    return t ? checkType(path, t) : null;
  };
  const shaped = (t: GgufTensorInfo, dims: readonly number[]): GgufTensorInfo => {
    if (t.dims.length !== dims.length || t.dims.some((d, i) => d !== dims[i])) {
      fail(`tensor "${t.name}" has shape [${t.dims.join(", ")}], expected [${dims.join(", ")}] from the metadata`);
    }
    return t;
  };
  const refuse = (pattern: RegExp, what: string) => {
    const t = file.tensors.find((x) => pattern.test(x.name));
    if (t) fail(`tensor "${t.name}": ${what} is not supported`);
  };
  if (!profile.longrope) refuse(/^rope_factors_(long|short)\.weight$/, `longrope frequency factors for ${arch}`);
  refuse(/^dense_[23]\.weight$/, "the dense output projections of embedding models");
  if (profile.alwaysTied) refuse(/^output\.weight$/, `a separate output head for ${arch} (llama.cpp ties it to token_embd)`);

  const tokenEmbd = tensor("token_embd.weight");
  if (tokenEmbd.dims.length !== 2 || tokenEmbd.dims[0] !== nEmbd) {
    fail(`tensor "token_embd.weight" has shape [${tokenEmbd.dims.join(", ")}], expected [${nEmbd}, vocab]`);
  }
  const vocabSize = tokenEmbd.dims[1]!;
  const posEmbd = profile.learnedPositions ? shaped(tensor("position_embd.weight"), [nEmbd, contextLength]) : null;
  const layerNorm = profile.norm === "layer";
  const outputNorm = shaped(tensor("output_norm.weight"), [nEmbd]);
  const outputNormB = layerNorm ? shaped(tensor("output_norm.bias"), [nEmbd]) : null;
  const outputTensor = profile.alwaysTied ? null : optional("output.weight");
  const output = outputTensor ? shaped(outputTensor, [nEmbd, vocabSize]) : tokenEmbd;
  const outputBiasTensor = optional("output.bias");
  const outputBias = outputBiasTensor ? shaped(outputBiasTensor, [vocabSize]) : null;

  const qDim = nHead * headDim;
  const kvDim = nHeadKv * headDim;
  const layers: LlamaLayerTensors[] = [];
  for (let i = 0; i < nLayers; i++) {
    const b = (n: string) => `blk.${i}.${n}`;
    const opt = (n: string, dims: number[]) => {
      const t = optional(b(n));
      return t ? shaped(t, dims) : null;
    };
    const req = (n: string, dims: number[]) => shaped(tensor(b(n)), dims);
    // llama.cpp's create_tensor_qkv: a fused attn_qkv when present, else separate q/k/v.
    const wqkv = opt("attn_qkv.weight", [nEmbd, qDim + 2 * kvDim]);
    const separate = wqkv === null;
    const fusedGateUp = profile.fusedGateUp;
    const gated = profile.ffn !== "gelu";
    layers.push({
      attnNorm: req("attn_norm.weight", [nEmbd]),
      attnNormB: layerNorm ? req("attn_norm.bias", [nEmbd]) : null,
      wqkv,
      bqkv: wqkv ? opt("attn_qkv.bias", [qDim + 2 * kvDim]) : null,
      wq: separate ? req("attn_q.weight", [nEmbd, qDim]) : null,
      wk: separate ? req("attn_k.weight", [nEmbd, kvDim]) : null,
      wv: separate ? req("attn_v.weight", [nEmbd, kvDim]) : null,
      bq: separate ? opt("attn_q.bias", [qDim]) : null,
      bk: separate ? opt("attn_k.bias", [kvDim]) : null,
      bv: separate ? opt("attn_v.bias", [kvDim]) : null,
      wo: req("attn_output.weight", [qDim, nEmbd]),
      bo: opt("attn_output.bias", [nEmbd]),
      postAttnNorm: profile.postNorms ? req("post_attention_norm.weight", [nEmbd]) : null,
      ffnNorm: req("ffn_norm.weight", [nEmbd]),
      ffnNormB: layerNorm ? req("ffn_norm.bias", [nEmbd]) : null,
      wGate: gated && !fusedGateUp ? req("ffn_gate.weight", [nEmbd, nFf]) : null,
      wUp: req("ffn_up.weight", [nEmbd, fusedGateUp ? 2 * nFf : nFf]),
      wDown: req("ffn_down.weight", [nFf, nEmbd]),
      bGate: gated && !fusedGateUp ? opt("ffn_gate.bias", [nFf]) : null,
      bUp: fusedGateUp ? null : opt("ffn_up.bias", [nFf]),
      bDown: opt("ffn_down.bias", [nEmbd]),
      postFfnNorm: profile.postNorms ? req("post_ffw_norm.weight", [nEmbd]) : null,
      qNorm: profile.qkNorm ? req("attn_q_norm.weight", [headDim]) : null,
      kNorm: profile.qkNorm ? req("attn_k_norm.weight", [headDim]) : null,
    });
  }

  // llama.cpp loads one rope_freqs.weight (blk-less name) and shares it across layers.
  const ropeFreqsTensor = profile.ropeFreqs ? optional("rope_freqs.weight") : null;
  let ropeFreqFactors: Float32Array | null = null;
  if (ropeFreqsTensor) {
    if (ropeFreqsTensor.elementCount < nRot / 2) fail(`tensor "rope_freqs.weight" has ${ropeFreqsTensor.elementCount} values, expected ${nRot / 2}`);
    ropeFreqFactors = readTensorF32(file, ropeFreqsTensor).slice(0, nRot / 2);
  }

  const factorTensor = (name: string): Float32Array | null => {
    const t = profile.longrope ? optional(name) : null;
    if (!t) return null;
    if (t.elementCount !== nRot / 2) fail(`tensor "${name}" has ${t.elementCount} values, expected ${nRot / 2} (n_rot / 2)`);
    return readTensorF32(file, t);
  };
  const long = factorTensor("rope_factors_long.weight");
  const short = factorTensor("rope_factors_short.weight");
  const longrope = long || short ? { long, short, originalContext: num("rope.scaling.original_context_length", contextLength) } : null;

  const tokenId = (k: string): number | null => {
    const v = metaNumber(file, k, null);
    return v === null || v < 0 || v >= vocabSize ? null : v;
  };

  return {
    file,
    hparams: {
      architecture: arch,
      profile,
      ropeLayers: layerRope.map((r) => r.rotate),
      layerRope,
      slidingWindow,
      name: metaString(file, "general.name", null) ?? arch,
      nLayers,
      nEmbd,
      nFf,
      nHead,
      nHeadKv,
      headDim,
      nRot,
      vocabSize,
      contextLength,
      normEps,
      ropeFreqBase,
      ropeFreqScale,
      ropeAttnFactor,
      ropeFreqFactors,
      longrope,
      queryScale,
      attnSoftcap,
      finalSoftcap,
      embedScale,
      tiedEmbeddings: outputTensor === null,
      bosTokenId: tokenId("tokenizer.ggml.bos_token_id"),
      eosTokenId: tokenId("tokenizer.ggml.eos_token_id"),
    },
    tokenEmbd,
    posEmbd,
    outputNorm,
    outputNormB,
    output,
    outputBias,
    layers,
  };
}

/**
 * The rope frequency divisors llama.cpp uses at a context of `contextLength` tokens per sequence
 * (its get_rope_factors): `rope_freqs.weight`, else phi3's long factors above the original context
 * and short ones up to it, else none.
 * @example
 * const ff = ropeFactors(openLlamaGguf("phi-3.5-mini.gguf").hparams, 4096); // the short factors
 */
export function ropeFactors(h: LlamaHParams, contextLength: number): Float32Array | null {
  if (h.ropeFreqFactors) return h.ropeFreqFactors;
  if (!h.longrope) return null;
  return contextLength > h.longrope.originalContext ? h.longrope.long : h.longrope.short;
}

/**
 * Per rotated pair j < n_rot/2 of a block: freq_scale * base^(-2j/n_rot) / ff_j, in double (the
 * angle at position p is p times this).
 * @example
 * const invFreq = ropeInverseFrequencies(h, h.layerRope[0]!, ropeFactors(h, 4096));
 */
export function ropeInverseFrequencies(h: LlamaHParams, rope: LayerRope, factors: Float32Array | null): Float64Array {
  const out = new Float64Array(h.nRot / 2);
  for (let j = 0; j < out.length; j++) out[j] = (rope.freqScale * Math.pow(rope.freqBase, (-2 * j) / h.nRot)) / (factors ? factors[j]! : 1);
  return out;
}

/** A metadata number that may also be a per-layer array; the converter needs it equal in every layer. */
function uniform(file: GgufFile, key: string, v: GgufValue | undefined): number {
  if (Array.isArray(v)) {
    const nums = v.map((x) => (typeof x === "bigint" ? Number(x) : x));
    if (nums.length === 0 || nums.some((x) => typeof x !== "number" || x !== nums[0])) {
      throw new ConvertError(file.path, `metadata "${key}" differs between layers ([${nums.slice(0, 8).join(", ")}${nums.length > 8 ? ", ..." : ""}]); only uniform layers are supported`);
    }
    return nums[0] as number;
  }
  return metaNumber(file, key);
}

function checkType(path: string, t: GgufTensorInfo): GgufTensorInfo {
  if (!SUPPORTED_WEIGHT_TYPES.includes(t.type)) {
    throw new ConvertError(
      path,
      `tensor "${t.name}" has type ${ggmlTypeName(t.type)}; supported weight types are ${SUPPORTED_WEIGHT_TYPES.map(ggmlTypeName).join(", ")} (other quantised types are not converted)`,
    );
  }
  return t;
}

/** A weight as float32 in ggml order (dims[0] fastest: for a matrix, row-major [out][in]). */
export function readWeightF32(g: LlamaGguf, t: GgufTensorInfo): Float32Array {
  return readTensorF32(g.file, t);
}

/** Raw IEEE half bits of an F16 weight (no round trip through float32), or null for other types. */
export function readWeightF16Bits(g: LlamaGguf, t: GgufTensorInfo): Uint16Array | null {
  if (t.type !== GGML_TYPE.F16) return null;
  const bytes = readTensorBytes(g.file, t);
  return new Uint16Array(bytes.buffer, bytes.byteOffset, t.elementCount);
}

export { GgufError };
