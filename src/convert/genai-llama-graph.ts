/**
 * A llama GGUF laid out as onnxruntime-genai's model builder lays out a llama for CPU
 * (`builders/base.py`: fp32 io, `GroupQueryAttention` with rotary inside, packed q/k/v MatMul,
 * `SimplifiedLayerNormalization` first and `SkipSimplifiedLayerNormalization` after, int4 through
 * onnxruntime's MatMulNBitsQuantizer). Node, value and initializer names are the builder's, so the
 * ONNX adapter is tested here on the layout people download, not on Steerkit's own converter layout:
 *
 *   input_ids, attention_mask, past_key_values.L.key|value  ->  logits, present.L.key|value
 *   /model/embed_tokens/Gather
 *   /model/attn_mask_reformat/attn_mask_subgraph/{ReduceSum,Sub,Sub/Cast,Shape,Gather,Gather/Cast}
 *     (seqlens_k = sum(mask) - 1 as int32 [batch, 1]; total_sequence_length = mask width as int32)
 *   /model/layers.L/input_layernorm/LayerNorm (L = 0) | .../SkipLayerNorm (L > 0, output 3 = resid_post.(L-1))
 *   /model/layers.L/attn/qkv_proj/MatMul -> /model/layers.L/attn/GroupQueryAttention -> .../o_proj/MatMul
 *   /model/layers.L/post_attention_layernorm/SkipLayerNorm (output 3 = resid_mid.L)
 *   /model/layers.L/mlp/{gate_proj,up_proj}/MatMul, act_fn/{Sigmoid,Mul}, Mul, down_proj/MatMul
 *   /model/layers.N/final_norm_layernorm/SkipLayerNorm (output 0 only), /lm_head/MatMul -> logits
 *
 * The builder starts from Hugging Face weights: its rotary is `rotary_interleaved = 0` (rotate
 * halves) on HF-ordered q/k rows. GGUF llama q/k rows are permuted for llama.cpp's adjacent-pair
 * rotation (convert_hf_to_gguf.py `permute`), so they are permuted back here; the two layouts are
 * the same model. cos/sin caches are [context_length, head_dim / 2], as the builder writes them.
 */
import { attr, DataType, graph, model, node, type OnnxAttribute, type OnnxNode, type OnnxTensor, tensorFromFloat32, tensorFromInt64, valueInfo } from "../formats/onnx/index.ts";
import type { GgufTensorInfo } from "../formats/gguf.ts";
import { ConvertError, type LlamaGguf, readWeightF32 } from "./llama-gguf.ts";
import type { LazyInitializer, LlamaOnnxGraph } from "./llama-onnx-graph.ts";
import { ACCURACY_LEVEL, BLOCK_SIZE, blockQuantizeTensor, type BlockQuantized } from "./quantize-weights.ts";

export const GENAI_OPSET = 21;

export interface GenaiGraphOptions {
  /** MatMul weights: float32, or MatMulNBits at 4 / 8 bits (the builder's CPU int4 is 4). */
  readonly quantizeBits?: 4 | 8;
  /** MatMulNBits block size (default 32, the builder's `int4_block_size` default). */
  readonly blockSize?: number;
  /** Rows of the cos/sin caches (the builder's `context_length`). */
  readonly contextLength: number;
  /**
   * "attention" (the builder's CPU/CUDA default): packed q/k/v, rotary inside GroupQueryAttention,
   * no position_ids input. "separate" (its DML layout): q/k/v MatMuls, `RotaryEmbedding` nodes on
   * q and k fed by a position_ids input, GroupQueryAttention without rotary.
   */
  readonly rotary?: "attention" | "separate";
}

/** GGUF row order -> HF row order of a q/k matrix: HF row s * half + i of a head is GGUF row 2i + s. */
function hfRowOrder(nRows: number, headDim: number): Int32Array {
  const order = new Int32Array(nRows);
  const half = headDim / 2;
  for (let r = 0; r < nRows; r++) {
    const h = Math.floor(r / headDim);
    const j = r % headDim;
    const [s, i] = [Math.floor(j / half), j % half];
    order[r] = h * headDim + 2 * i + s;
  }
  return order;
}

/** One matrix of the packed projection: its GGUF tensor and, for rope'd q/k, the rows' HF order. */
interface Part {
  readonly t: GgufTensorInfo;
  readonly order: Int32Array | null;
}

/**
 * The builder-layout graph of a llama-family GGUF, with its weights produced lazily (written by
 * onnx-writer.ts; `convertGgufToOnnx(..., { layout: "genai" })` is the usual entry).
 *
 * @example
 * ```ts
 * const { model, weights } = buildGenaiLlamaGraph(openLlamaGguf("m.gguf"), { contextLength: 4096, quantizeBits: 4 });
 * writeOnnxModel("out", model, weights, true);
 * ```
 */
export function buildGenaiLlamaGraph(g: LlamaGguf, options: GenaiGraphOptions): LlamaOnnxGraph {
  const h = g.hparams;
  const refuse = (what: string) => {
    throw new ConvertError(g.file.path, `the onnxruntime-genai layout does not cover ${what}`);
  };
  // The builder's llama block only: any other architecture's departure (architectures.ts) is refused, never approximated.
  if (h.profile.norm !== "rms" || h.profile.ffn !== "swiglu" || h.profile.postNorms || h.embedScale !== 1 || h.attnSoftcap > 0 || h.finalSoftcap > 0 || h.slidingWindow.some((w) => w > 0) || g.posEmbd || g.layers.some((l) => l.wqkv) || h.longrope) {
    refuse(`${h.architecture}'s block (see architectures.ts)`);
  }
  if (h.profile.qkNorm) refuse(`${h.architecture}'s q/k norms`);
  if (h.ropeLayers.some((r) => !r)) refuse("blocks without RoPE");
  if (h.ropeFreqFactors || h.ropeFreqScale !== 1 || h.ropeAttnFactor !== 1) refuse("RoPE scaling or frequency factors");
  if (h.nRot !== h.headDim) refuse("partial rotary embeddings");
  if (g.layers.some((l) => l.bo || l.bGate || l.bUp || l.bDown) || g.outputBias) refuse("biases outside q/k/v");

  const bits = options.quantizeBits;
  const blockSize = options.blockSize ?? BLOCK_SIZE;
  const nodes: OnnxNode[] = [];
  const constants: OnnxTensor[] = [];
  const weights: LazyInitializer[] = [];
  const op = (opType: string, inputs: string[], name: string, attributes: OnnxAttribute[] = [], outputs?: string[], domain?: string) => {
    const outs = outputs ?? [`${name}/output_0`];
    nodes.push(node(opType, inputs, outs, attributes, domain ? { name, domain } : { name }));
    return outs[0]!;
  };
  const i64 = (name: string, values: number[], scalar: boolean) => {
    if (!constants.some((c) => c.name === name)) constants.push(tensorFromInt64(name, scalar ? [] : [values.length], values));
    return name;
  };
  const floatWeight = (name: string, dims: number[], sources: GgufTensorInfo[], produce: () => Float32Array) => {
    weights.push({ name, dataType: DataType.FLOAT, dims, byteLength: dims.reduce((a, b) => a * b, 1) * 4, source: sources[0]!, sources, produce: () => bytesOf(produce()) });
    return name;
  };
  const vector = (t: GgufTensorInfo, name: string) => floatWeight(name, [t.elementCount], [t], () => readWeightF32(g, t));

  /** `input @ Wᵀ` for the row-concatenation of `parts` (each [n_i][K]), named as the builder names it. */
  const matmul = (parts: Part[], input: string, name: string, output?: string) => {
    const k = parts[0]!.t.dims[0]!;
    const n = parts.reduce((a, p) => a + p.t.dims[1]!, 0);
    const weightName = `${name.slice(1).replaceAll("/", ".")}.weight`;
    const out = output ?? `${name}/output_0`;
    if (bits === undefined) {
      // The builder stores MatMul weights transposed, [K, N].
      floatWeight(weightName, [k, n], parts.map((p) => p.t), () => transpose(concatRows(parts.map((p) => reorderRows(readWeightF32(g, p.t), k, p.order))), n, k));
      op("MatMul", [input, weightName], name, [], [out]);
      return out;
    }
    const blocks = Math.ceil(k / blockSize);
    const blob = (blockSize * bits) / 8;
    let pending: { packed: Uint8Array; scales: Float32Array } | null = null;
    const quantized = () => (pending ??= concatBlocks(parts.map((p) => reorderBlocks(blockQuantizeTensor(g, p.t, bits, blockSize), p.order))));
    const bName = `${weightName}_Q${bits}`;
    const sName = `${weightName}_scales`;
    weights.push(
      { name: bName, dataType: DataType.UINT8, dims: [n, blocks, blob], byteLength: n * blocks * blob, source: parts[0]!.t, sources: parts.map((p) => p.t), produce: () => quantized().packed },
      {
        name: sName,
        dataType: DataType.FLOAT,
        dims: [n * blocks],
        byteLength: n * blocks * 4,
        source: parts[0]!.t,
        sources: parts.map((p) => p.t),
        produce: () => {
          const s = quantized().scales;
          pending = null;
          return bytesOf(s);
        },
      },
    );
    const attrs = [attr.int("K", k), attr.int("N", n), attr.int("bits", bits), attr.int("block_size", blockSize), attr.int("accuracy_level", ACCURACY_LEVEL)];
    op("MatMulNBits", [input, bName, sName], `${name}_Q${bits}`, attrs, [out], "com.microsoft");
    return out;
  };

  const eps = attr.float("epsilon", h.normEps);
  const separate = options.rotary === "separate";
  const inputs = [
    valueInfo("input_ids", DataType.INT64, ["batch_size", "sequence_length"]),
    valueInfo("attention_mask", DataType.INT64, ["batch_size", "total_sequence_length"]),
    ...(separate ? [valueInfo("position_ids", DataType.INT64, ["batch_size", "sequence_length"])] : []),
  ];
  const outputs = [valueInfo("logits", DataType.FLOAT, ["batch_size", "sequence_length", h.vocabSize])];

  // Embeddings (float: gathered, not multiplied; the builder keeps them float for int4 too).
  const embed = floatWeight("model.embed_tokens.weight", [h.vocabSize, h.nEmbd], [g.tokenEmbd], () => readWeightF32(g, g.tokenEmbd));
  const embedded = op("Gather", [embed, "input_ids"], "/model/embed_tokens/Gather", [attr.int("axis", 0)]);

  // seqlens_k and total_sequence_length for GroupQueryAttention.
  const m = "/model/attn_mask_reformat/attn_mask_subgraph";
  const one1d = i64("/model/constants/TensorProto.INT64/1D/1", [1], false);
  const sum = op("ReduceSum", ["attention_mask", one1d], `${m}/ReduceSum`, [attr.int("keepdims", 1)]);
  const seqlensK = op("Cast", [op("Sub", [sum, one1d], `${m}/Sub`)], `${m}/Sub/Cast`, [attr.int("to", DataType.INT32)]);
  const width = op("Gather", [op("Shape", ["attention_mask"], `${m}/Shape`), i64("/model/constants/TensorProto.INT64/0D/1", [1], true)], `${m}/Gather`, [attr.int("axis", 0)]);
  const totalLen = op("Cast", [width], `${m}/Gather/Cast`, [attr.int("to", DataType.INT32)]);

  // cos/sin caches [context_length, head_dim / 2] (builder: t * inv_freq, inv_freq = 1 / theta^(2j / dim)).
  const half = h.headDim / 2;
  const cos = new Float32Array(options.contextLength * half);
  const sin = new Float32Array(options.contextLength * half);
  for (let j = 0; j < half; j++) {
    const inv = Math.fround(1 / Math.fround(Math.pow(h.ropeFreqBase, Math.fround((2 * j) / h.headDim))));
    for (let p = 0; p < options.contextLength; p++) {
      const angle = Math.fround(p * inv);
      cos[p * half + j] = Math.cos(angle);
      sin[p * half + j] = Math.sin(angle);
    }
  }
  constants.push(tensorFromFloat32("cos_cache", [options.contextLength, half], cos), tensorFromFloat32("sin_cache", [options.contextLength, half], sin));

  const qOrder = h.profile.rope === "norm" ? hfRowOrder(h.nHead * h.headDim, h.headDim) : null;
  const kOrder = h.profile.rope === "norm" ? hfRowOrder(h.nHeadKv * h.headDim, h.headDim) : null;
  let root = embedded; // the residual stream entering the next norm
  let skip = ""; // the branch the next Skip norm adds to it
  for (let L = 0; L < h.nLayers; L++) {
    const l = g.layers[L]!;
    const p = `/model/layers.${L}`;
    const w = `model.layers.${L}`;
    let normed: string;
    if (L === 0) {
      normed = op("SimplifiedLayerNormalization", [root, vector(l.attnNorm, `${w}.input_layernorm.weight`)], `${p}/input_layernorm/LayerNorm`,
        [attr.int("axis", -1), eps, attr.int("stash_type", 1)], [`${p}/input_layernorm/output_0`]);
    } else {
      const out3 = `${p}/input_layernorm/output_3`;
      normed = op("SkipSimplifiedLayerNormalization", [root, skip, vector(l.attnNorm, `${w}.input_layernorm.weight`)], `${p}/input_layernorm/SkipLayerNorm`,
        [eps], [`${p}/input_layernorm/output_0`, "", "", out3], "com.microsoft");
      root = out3;
    }
    let qkv: string;
    let kIn = "";
    let vIn = "";
    if (separate) {
      if (l.bq || l.bk || l.bv) refuse("q/k/v biases with separate rotary nodes");
      const rotary = (x: string, which: "q" | "k") =>
        op("RotaryEmbedding", [x, "position_ids", "cos_cache", "sin_cache"], `${p}/attn/${which}_rotary/RotaryEmbedding`, [attr.int("interleaved", 0)], undefined, "com.microsoft");
      qkv = rotary(matmul([{ t: l.wq!, order: qOrder }], normed, `${p}/attn/q_proj/MatMul`), "q");
      kIn = rotary(matmul([{ t: l.wk!, order: kOrder }], normed, `${p}/attn/k_proj/MatMul`), "k");
      vIn = matmul([{ t: l.wv!, order: null }], normed, `${p}/attn/v_proj/MatMul`);
    } else {
      qkv = matmul([{ t: l.wq!, order: qOrder }, { t: l.wk!, order: kOrder }, { t: l.wv!, order: null }], normed, `${p}/attn/qkv_proj/MatMul`);
    }
    if (!separate && l.bq && l.bk && l.bv) {
      const parts = [{ t: l.bq, order: qOrder }, { t: l.bk, order: kOrder }, { t: l.bv, order: null }];
      const n = parts.reduce((a, x) => a + x.t.elementCount, 0);
      const bias = floatWeight(`${w}.attn.qkv_proj.Add.bias`, [n], parts.map((x) => x.t), () => concatRows(parts.map((x) => reorderRows(readWeightF32(g, x.t), 1, x.order))));
      qkv = op("Add", [qkv, bias], `${p}/attn/qkv_proj/Add`);
    } else if (l.bq || l.bk || l.bv) refuse("a q/k/v bias on only some of q, k, v");
    const pastK = `past_key_values.${L}.key`;
    const pastV = `past_key_values.${L}.value`;
    const kvDims = ["batch_size", h.nHeadKv, "past_sequence_length", h.headDim] as const;
    inputs.push(valueInfo(pastK, DataType.FLOAT, [...kvDims]), valueInfo(pastV, DataType.FLOAT, [...kvDims]));
    outputs.push(
      valueInfo(`present.${L}.key`, DataType.FLOAT, ["batch_size", h.nHeadKv, "total_sequence_length", h.headDim]),
      valueInfo(`present.${L}.value`, DataType.FLOAT, ["batch_size", h.nHeadKv, "total_sequence_length", h.headDim]),
    );
    const rope = separate ? ["", ""] : ["cos_cache", "sin_cache"];
    const attn = op("GroupQueryAttention", [qkv, kIn, vIn, pastK, pastV, seqlensK, totalLen, ...rope], `${p}/attn/GroupQueryAttention`, [
      attr.int("num_heads", h.nHead),
      attr.int("kv_num_heads", h.nHeadKv),
      attr.float("scale", 1 / Math.sqrt(h.headDim)),
      attr.int("do_rotary", separate ? 0 : 1),
      attr.int("rotary_interleaved", 0),
      attr.int("local_window_size", -1),
    ], [`${p}/attn/GroupQueryAttention/output_0`, `present.${L}.key`, `present.${L}.value`], "com.microsoft");
    const o = matmul([{ t: l.wo, order: null }], attn, `${p}/attn/o_proj/MatMul`);

    const mid3 = `${p}/post_attention_layernorm/output_3`;
    const f = op("SkipSimplifiedLayerNormalization", [root, o, vector(l.ffnNorm, `${w}.post_attention_layernorm.weight`)], `${p}/post_attention_layernorm/SkipLayerNorm`,
      [eps], [`${p}/post_attention_layernorm/output_0`, "", "", mid3], "com.microsoft");
    root = mid3;
    const gate = matmul([{ t: l.wGate!, order: null }], f, `${p}/mlp/gate_proj/MatMul`);
    const up = matmul([{ t: l.wUp, order: null }], f, `${p}/mlp/up_proj/MatMul`);
    const act = op("Mul", [gate, op("Sigmoid", [gate], `${p}/mlp/act_fn/Sigmoid`)], `${p}/mlp/act_fn/Mul`);
    skip = matmul([{ t: l.wDown, order: null }], op("Mul", [act, up], `${p}/mlp/Mul`), `${p}/mlp/down_proj/MatMul`);
  }
  const N = h.nLayers;
  const final = op("SkipSimplifiedLayerNormalization", [root, skip, vector(g.outputNorm, `model.layers.${N}.final_norm_layernorm.weight`)],
    `/model/layers.${N}/final_norm_layernorm/SkipLayerNorm`, [eps], [`/model/layers.${N}/final_norm_layernorm/output_0`], "com.microsoft");
  matmul([{ t: g.output, order: null }], final, "/lm_head/MatMul", "logits");

  const onnxModel = model({
    graph: graph({ name: "main_graph", nodes, initializers: constants, inputs, outputs }),
    opsets: { "": GENAI_OPSET, "com.microsoft": 1 },
    producerName: "steerkit-convert (onnxruntime-genai layout)",
    metadata: { source: "gguf", architecture: h.architecture },
  });
  return { model: onnxModel, weights };
}

/**
 * The builder's genai_config.json for this model.
 *
 * @example
 * ```ts
 * writeFileSync("out/genai_config.json", JSON.stringify(genaiConfig(g, 4096, { bos: 1, eos: [2] }), null, 4));
 * ```
 */
export function genaiConfig(g: LlamaGguf, contextLength: number, tokens: { bos: number | null; eos: number[] }, rotary: "attention" | "separate" = "attention"): Record<string, unknown> {
  const h = g.hparams;
  return {
    model: {
      bos_token_id: tokens.bos ?? 1,
      context_length: contextLength,
      decoder: {
        session_options: { log_id: "onnxruntime-genai", provider_options: [] },
        filename: "model.onnx",
        head_size: h.headDim,
        hidden_size: h.nEmbd,
        inputs: {
          input_ids: "input_ids",
          attention_mask: "attention_mask",
          ...(rotary === "separate" ? { position_ids: "position_ids" } : {}),
          past_key_names: "past_key_values.%d.key", past_value_names: "past_key_values.%d.value",
        },
        outputs: { logits: "logits", present_key_names: "present.%d.key", present_value_names: "present.%d.value" },
        num_attention_heads: h.nHead,
        num_hidden_layers: h.nLayers,
        num_key_value_heads: h.nHeadKv,
      },
      eos_token_id: tokens.eos.length === 1 ? tokens.eos[0] : tokens.eos,
      pad_token_id: tokens.eos[0] ?? 0,
      type: h.profile.hfClass.replace(/For.*$/, "").toLowerCase(),
      vocab_size: h.vocabSize,
    },
    search: {
      diversity_penalty: 0.0,
      do_sample: false,
      early_stopping: true,
      length_penalty: 1.0,
      max_length: contextLength,
      min_length: 0,
      no_repeat_ngram_size: 0,
      num_beams: 1,
      num_return_sequences: 1,
      past_present_share_buffer: true,
      repetition_penalty: 1.0,
      temperature: 1.0,
      top_k: 50,
      top_p: 1.0,
    },
  };
}

function bytesOf(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

function reorderRows(w: Float32Array, k: number, order: Int32Array | null): Float32Array {
  if (!order) return w;
  const out = new Float32Array(w.length);
  for (let r = 0; r < order.length; r++) out.set(w.subarray(order[r]! * k, order[r]! * k + k), r * k);
  return out;
}

function concatRows(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** [n][k] -> [k][n]. */
function transpose(w: Float32Array, n: number, k: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < n; r++) for (let c = 0; c < k; c++) out[c * n + r] = w[r * k + c]!;
  return out;
}

function reorderBlocks(q: BlockQuantized, order: Int32Array | null): { packed: Uint8Array; scales: Float32Array } {
  if (!order) return q;
  const rowBytes = q.packed.length / q.n;
  const packed = new Uint8Array(q.packed.length);
  const scales = new Float32Array(q.scales.length);
  for (let r = 0; r < q.n; r++) {
    const src = order[r]!;
    packed.set(q.packed.subarray(src * rowBytes, src * rowBytes + rowBytes), r * rowBytes);
    scales.set(q.scales.subarray(src * q.blocks, src * q.blocks + q.blocks), r * q.blocks);
  }
  return { packed, scales };
}

function concatBlocks(parts: { packed: Uint8Array; scales: Float32Array }[]): { packed: Uint8Array; scales: Float32Array } {
  const packed = new Uint8Array(parts.reduce((a, p) => a + p.packed.length, 0));
  const scales = new Float32Array(parts.reduce((a, p) => a + p.scales.length, 0));
  let pa = 0;
  let sa = 0;
  for (const p of parts) {
    packed.set(p.packed, pa);
    scales.set(p.scales, sa);
    pa += p.packed.length;
    sa += p.scales.length;
  }
  return { packed, scales };
}
