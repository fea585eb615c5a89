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
 * # Llama-family architectures that share this graph (src/models/<arch>.cpp), and what differs
 *
 * - `qwen2`:    RoPE type NEOX (rotates halves: (x[j], x[j + n_rot/2])), q/k/v biases, an optional
 *               `output.bias`; no rope_freqs.
 * - `qwen3`:    NEOX, plus a per-head RMSNorm of q and k (`attn_q_norm` / `attn_k_norm`, [head_dim],
 *               same eps) after the projections and before RoPE.
 * - `smollm3`:  NORM, but every 4th block has no RoPE at all (`(il + 1) % 4 == 0`, NoPE layers).
 * - `mistral3`: NORM as llama; its optional attention-temperature scaling
 *               (`mistral3.attention.temperature_scale`) is refused by name.
 * Every other difference (keys under `<arch>.`, optional biases) is read the same way.
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
import { DEQUANTIZABLE_TYPES, GGML_TYPE, ggmlTypeName } from "../formats/ggml-types.ts";
import { SteerkitError } from "../core/errors.ts";

/** How one architecture departs from the llama graph (see the notes above). */
export interface ArchProfile {
  /** NORM rotates adjacent pairs (llama), NEOX rotates halves (qwen). */
  readonly rope: "norm" | "neox";
  /** Per-head RMSNorm of q and k before RoPE (qwen3). */
  readonly qkNorm: boolean;
  /** Blocks `il` with `(il + 1) % step == 0` skip RoPE; 0 = every block uses it (smollm3: 4). */
  readonly noRopeLayerStep: number;
  /** Whether llama.cpp applies `rope_freqs.weight` for this architecture. */
  readonly ropeFreqs: boolean;
  /** HF `architectures[0]` for config.json. */
  readonly hfClass: string;
}

/** Architectures whose GGUF tensors and math are the llama graph above, with their differences. */
export const ARCHITECTURES: Readonly<Record<string, ArchProfile>> = {
  llama: { rope: "norm", qkNorm: false, noRopeLayerStep: 0, ropeFreqs: true, hfClass: "LlamaForCausalLM" },
  mistral3: { rope: "norm", qkNorm: false, noRopeLayerStep: 0, ropeFreqs: true, hfClass: "MistralForCausalLM" },
  qwen2: { rope: "neox", qkNorm: false, noRopeLayerStep: 0, ropeFreqs: false, hfClass: "Qwen2ForCausalLM" },
  qwen3: { rope: "neox", qkNorm: true, noRopeLayerStep: 0, ropeFreqs: false, hfClass: "Qwen3ForCausalLM" },
  smollm3: { rope: "norm", qkNorm: false, noRopeLayerStep: 4, ropeFreqs: false, hfClass: "SmolLM3ForCausalLM" },
};
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);
/**
 * Weight types read: the float ones and every block type `dequantize` reads (Q8_0, Q4_0,
 * Q5_0/Q5_1, Q4_K, Q5_K, Q6_K: llama-quantize's q8_0, q4_0, q4_k_m and q5_k_m files); Q4_0 / Q8_0 are
 * repacked rather than dequantized for int4 / int8 exports (quantize-weights.ts). Everything else is
 * refused by name.
 */
export const SUPPORTED_WEIGHT_TYPES: readonly number[] = DEQUANTIZABLE_TYPES;

export interface LlamaHParams {
  readonly architecture: string;
  readonly profile: ArchProfile;
  /** Per block: whether it applies RoPE (false for NoPE blocks). */
  readonly ropeLayers: readonly boolean[];
  readonly name: string;
  readonly nLayers: number;
  readonly nEmbd: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  readonly nRot: number;
  readonly vocabSize: number;
  /** Training context (`llama.context_length`). */
  readonly contextLength: number;
  readonly rmsEps: number;
  readonly ropeFreqBase: number;
  /** 1 / rope scaling factor ("linear"), 1 without scaling. */
  readonly ropeFreqScale: number;
  readonly ropeAttnFactor: number;
  /** `rope_freqs.weight` (length nRot/2), or null. */
  readonly ropeFreqFactors: Float32Array | null;
  /** True when `output.weight` is absent and the embedding matrix doubles as the output head. */
  readonly tiedEmbeddings: boolean;
  readonly bosTokenId: number | null;
  readonly eosTokenId: number | null;
}

export interface LlamaLayerTensors {
  readonly attnNorm: GgufTensorInfo;
  readonly wq: GgufTensorInfo;
  readonly wk: GgufTensorInfo;
  readonly wv: GgufTensorInfo;
  readonly wo: GgufTensorInfo;
  readonly bq: GgufTensorInfo | null;
  readonly bk: GgufTensorInfo | null;
  readonly bv: GgufTensorInfo | null;
  readonly bo: GgufTensorInfo | null;
  readonly ffnNorm: GgufTensorInfo;
  readonly wGate: GgufTensorInfo;
  readonly wUp: GgufTensorInfo;
  readonly wDown: GgufTensorInfo;
  readonly bGate: GgufTensorInfo | null;
  readonly bUp: GgufTensorInfo | null;
  readonly bDown: GgufTensorInfo | null;
  /** qwen3's per-head q/k RMSNorm weights ([head_dim]), else null. */
  readonly qNorm: GgufTensorInfo | null;
  readonly kNorm: GgufTensorInfo | null;
}

export interface LlamaGguf {
  readonly file: GgufFile;
  readonly hparams: LlamaHParams;
  readonly tokenEmbd: GgufTensorInfo;
  readonly outputNorm: GgufTensorInfo;
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

/** Open a GGUF and check it is a llama-family model this converter can translate exactly. */
export function openLlamaGguf(path: string): LlamaGguf {
  const file = readGgufHeader(path); // GgufError names the file for non-GGUF / damaged input
  const fail = (reason: string): never => {
    throw new ConvertError(path, reason);
  };
  const arch = architecture(file);
  const profile = Object.hasOwn(ARCHITECTURES, arch) ? ARCHITECTURES[arch]! : null;
  if (!profile) {
    fail(`unsupported architecture "${arch}" (general.architecture); this converter handles ${SUPPORTED_ARCHITECTURES.join(", ")}`);
  }
  const key = (k: string) => `${arch}.${k}`;
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
  if (expertCount > 0) fail(`mixture-of-experts llama models (${key("expert_count")} = ${expertCount}) are not supported`);

  const nLayers = positive("block_count", num("block_count"));
  const nEmbd = positive("embedding_length", num("embedding_length"));
  const nFf = positive("feed_forward_length", num("feed_forward_length"));
  const nHead = positive("attention.head_count", num("attention.head_count"));
  const nHeadKv = positive("attention.head_count_kv", num("attention.head_count_kv", nHead));
  if (nHead % nHeadKv !== 0) fail(`${nHead} attention heads are not a multiple of ${nHeadKv} KV heads`);
  const headDim = positive("attention.key_length", num("attention.key_length", nEmbd / nHead));
  const valueDim = num("attention.value_length", headDim);
  if (valueDim !== headDim) fail(`value head size ${valueDim} differs from key head size ${headDim} (llama.cpp requires them equal)`);
  const nRot = num("rope.dimension_count", headDim);
  if (nRot !== headDim) fail(`${key("rope.dimension_count")} is ${nRot} but the head size is ${headDim} (llama.cpp refuses partial rotary for llama)`);
  if (nRot % 2 !== 0) fail(`rope dimension ${nRot} is odd`);
  const rmsEps = num("attention.layer_norm_rms_epsilon");
  if (!(rmsEps >= 0)) fail(`${key("attention.layer_norm_rms_epsilon")} must be >= 0, got ${rmsEps}`);
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

  const tokenEmbd = tensor("token_embd.weight");
  if (tokenEmbd.dims.length !== 2 || tokenEmbd.dims[0] !== nEmbd) {
    fail(`tensor "token_embd.weight" has shape [${tokenEmbd.dims.join(", ")}], expected [${nEmbd}, vocab]`);
  }
  const vocabSize = tokenEmbd.dims[1]!;
  const outputNorm = shaped(tensor("output_norm.weight"), [nEmbd]);
  const outputTensor = optional("output.weight");
  const output = outputTensor ? shaped(outputTensor, [nEmbd, vocabSize]) : tokenEmbd;
  const outputBiasTensor = optional("output.bias");
  const outputBias = outputBiasTensor ? shaped(outputBiasTensor, [vocabSize]) : null;

  if (file.tensors.some((t) => /^blk\.\d+\.attn_qkv\./.test(t.name))) {
    fail(`fused attn_qkv tensors are not supported (expected separate attn_q / attn_k / attn_v)`);
  }
  const qDim = nHead * headDim;
  const kvDim = nHeadKv * headDim;
  const layers: LlamaLayerTensors[] = [];
  for (let i = 0; i < nLayers; i++) {
    const b = (n: string) => `blk.${i}.${n}`;
    const opt = (n: string, dims: number[]) => {
      const t = optional(b(n));
      return t ? shaped(t, dims) : null;
    };
    layers.push({
      attnNorm: shaped(tensor(b("attn_norm.weight")), [nEmbd]),
      wq: shaped(tensor(b("attn_q.weight")), [nEmbd, qDim]),
      wk: shaped(tensor(b("attn_k.weight")), [nEmbd, kvDim]),
      wv: shaped(tensor(b("attn_v.weight")), [nEmbd, kvDim]),
      wo: shaped(tensor(b("attn_output.weight")), [qDim, nEmbd]),
      bq: opt("attn_q.bias", [qDim]),
      bk: opt("attn_k.bias", [kvDim]),
      bv: opt("attn_v.bias", [kvDim]),
      bo: opt("attn_output.bias", [nEmbd]),
      ffnNorm: shaped(tensor(b("ffn_norm.weight")), [nEmbd]),
      wGate: shaped(tensor(b("ffn_gate.weight")), [nEmbd, nFf]),
      wUp: shaped(tensor(b("ffn_up.weight")), [nEmbd, nFf]),
      wDown: shaped(tensor(b("ffn_down.weight")), [nFf, nEmbd]),
      bGate: opt("ffn_gate.bias", [nFf]),
      bUp: opt("ffn_up.bias", [nFf]),
      bDown: opt("ffn_down.bias", [nEmbd]),
      qNorm: profile!.qkNorm ? shaped(tensor(b("attn_q_norm.weight")), [headDim]) : null,
      kNorm: profile!.qkNorm ? shaped(tensor(b("attn_k_norm.weight")), [headDim]) : null,
    });
  }

  // llama.cpp loads one rope_freqs.weight (blk-less name) and shares it across layers.
  const ropeFreqsTensor = profile!.ropeFreqs ? optional("rope_freqs.weight") : null;
  let ropeFreqFactors: Float32Array | null = null;
  if (ropeFreqsTensor) {
    if (ropeFreqsTensor.elementCount < nRot / 2) fail(`tensor "rope_freqs.weight" has ${ropeFreqsTensor.elementCount} values, expected ${nRot / 2}`);
    ropeFreqFactors = readTensorF32(file, ropeFreqsTensor).slice(0, nRot / 2);
  }

  const tokenId = (k: string): number | null => {
    const v = metaNumber(file, k, null);
    return v === null || v < 0 || v >= vocabSize ? null : v;
  };

  return {
    file,
    hparams: {
      architecture: arch,
      profile: profile!,
      ropeLayers: Array.from({ length: nLayers }, (_, il) => profile!.noRopeLayerStep === 0 || (il + 1) % profile!.noRopeLayerStep !== 0),
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
      rmsEps,
      ropeFreqBase,
      ropeFreqScale,
      ropeAttnFactor,
      ropeFreqFactors,
      tiedEmbeddings: outputTensor === null,
      bosTokenId: tokenId("tokenizer.ggml.bos_token_id"),
      eosTokenId: tokenId("tokenizer.ggml.eos_token_id"),
    },
    tokenEmbd,
    outputNorm,
    output,
    outputBias,
    layers,
  };
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
