/**
 * The ONNX decoder graph for a GGUF of any architecture architectures.ts describes: the math written
 * down in llama-gguf.ts, in standard ONNX ops (opset 17: LayerNormalization for gpt2) plus
 * `SimplifiedLayerNormalization` (RMSNorm; an ONNX-domain op every onnxruntime build registers, and
 * what ORT's own transformer optimiser emits for llama), with the Optimum KV-cache layout:
 *
 *   inputs   input_ids [batch, seq] int64, attention_mask [batch, total] int64,
 *            position_ids [batch, seq] int64, past_key_values.N.key|value [batch, kv_heads, past, head_dim]
 *   outputs  logits [batch, seq, vocab], present.N.key|value [batch, kv_heads, total, head_dim]
 *
 * Design choices, and why:
 * - Weights stay in GGUF's row order ([out][in]) and are applied with `Gemm(transB=1)` on the
 *   flattened `[batch*seq, in]` activations: no transposes in JS while converting a large model, and a
 *   tied output head shares the embedding initializer instead of storing a transposed copy. (Measured:
 *   for one-token decode, ORT runs Gemm(transB=1) as fast as MatMul on pre-transposed weights.)
 * - The residual stream is a plain `Add(residual, branch)` at both points of every block, named
 *   `layers.L.resid_mid` / `layers.L.resid_post` (and `embeddings` for resid_pre.0), so the ONNX
 *   adapter's residual-chain finder sees each site.
 * - RoPE rotates adjacent pairs, as llama.cpp's LLAMA_ROPE_TYPE_NORM does on the GGUF-permuted Q/K
 *   weights: heads are viewed as [head_dim/2, 2], split into even/odd lanes and recombined.
 *   The angles are computed in float32 in the graph from `position_ids` (no position table, so any
 *   context length works).
 * - Grouped-query attention without copying K/V per query head: Q is viewed as
 *   [batch, kv_heads, group, seq, head_dim] and K/V as [batch, kv_heads, 1, total, head_dim];
 *   MatMul broadcasts over the group axis. Query head i uses KV head floor(i / group), as in ggml.
 * - The mask is causal over cache positions (query i of this call sits at total - seq + i) AND the
 *   attention_mask, applied with `Where` (not by adding a large negative), so a row masked entirely
 *   (left padding) gives uniform weights instead of NaN.
 * - Architecture departures are read from the hyper-parameters, never from the name: fused q/k/v and
 *   fused gate/up are one Gemm then a Split (the GGUF tensor stays whole, so a quantizer sees the
 *   tensor llama.cpp multiplies); partial rotary splits each head into rotated and passed lanes; a
 *   sliding-window block gets its own mask (`attention_allowed_sliding_<w>`, keys with
 *   query - key < w) and rope table; soft-caps are `cap * Tanh(x / cap)`; GELU is the tanh form in
 *   primitive ops (ORT's optimiser fuses it); gemma's post-norms sit on the branch before its Add,
 *   so each block still has exactly two residual Adds.
 * - fp16 models keep every float tensor (weights, KV cache, logits) in float16 except the rope
 *   angles, which need float32 precision at large positions and are cast after cos/sin. ORT runs
 *   ops without an fp16 CPU kernel through inserted casts; RMSNorm accumulates in float32 inside
 *   SimplifiedLayerNormalization, which avoids overflow of x² in half precision.
 */
import { float32ToHalfBits } from "../formats/half.ts";
import { type LayerRope, type LlamaGguf, readWeightF16Bits, readWeightF32, ropeFactors, ropeInverseFrequencies } from "./llama-gguf.ts";
import { BLOCK_SIZE, quantizedMatMul } from "./quantize-weights.ts";
import { integerMatMulWriter } from "./integer-matmul.ts";
import type { GgufTensorInfo } from "../formats/gguf.ts";
import {
  attr,
  DataType,
  graph,
  model,
  node,
  type OnnxAttribute,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
  tensorFromBytes,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
} from "../formats/onnx/index.ts";

export type WeightDtype = "float32" | "float16";

/** A weight whose bytes are produced on demand, so a large model is never whole in memory. */
export interface LazyInitializer {
  readonly name: string;
  readonly dataType: number;
  readonly dims: readonly number[];
  readonly byteLength: number;
  /** GGUF source tensor (for the report). */
  readonly source: GgufTensorInfo;
  /** Every GGUF tensor the bytes are made from, when more than `source` (packed q/k/v). */
  readonly sources?: readonly GgufTensorInfo[];
  produce(): Uint8Array;
}

export interface LlamaOnnxGraph {
  /** The model with small constants inline and no large weights (see `weights`). */
  readonly model: OnnxModel;
  /** Large weights, in graph order; the writer inlines them or streams them to external data. */
  readonly weights: readonly LazyInitializer[];
}

export const OPSET = 17;

class Builder {
  readonly nodes: OnnxNode[] = [];
  readonly constants: OnnxTensor[] = [];
  private readonly counts = new Map<string, number>();
  /** Constants by name: a name always holds one value, so asking again reuses it (and a clash is a bug). */
  private readonly constantsByName = new Map<string, OnnxTensor>();

  private addConstant(t: OnnxTensor): void {
    const existing = this.constantsByName.get(t.name!);
    if (existing) {
      const same = existing.rawData && t.rawData && existing.rawData.length === t.rawData.length && existing.rawData.every((x, i) => x === t.rawData![i]);
      if (!same) throw new Error(`graph constant "${t.name}" was defined twice with different values`);
      return;
    }
    this.constantsByName.set(t.name!, t);
    this.constants.push(t);
  }

  /** Add a node; its single output is named `out` (or derived from the node name). */
  op(opType: string, inputs: readonly string[], name: string, attributes: OnnxAttribute[] = [], out?: string): string {
    const nodeName = this.unique(name);
    const output = out ?? `${nodeName}_output_0`;
    this.nodes.push(node(opType, inputs, [output], attributes, { name: nodeName }));
    return output;
  }

  opMulti(opType: string, inputs: readonly string[], name: string, nOut: number, attributes: OnnxAttribute[] = []): string[] {
    const nodeName = this.unique(name);
    const outputs = Array.from({ length: nOut }, (_, i) => `${nodeName}_output_${i}`);
    this.nodes.push(node(opType, inputs, outputs, attributes, { name: nodeName }));
    return outputs;
  }

  i64(name: string, values: readonly number[], scalar = false): string {
    this.addConstant(tensorFromInt64(name, scalar ? [] : [values.length], values));
    return name;
  }

  f32(name: string, values: Float32Array, dims: readonly number[]): string {
    this.addConstant(tensorFromFloat32(name, dims, values));
    return name;
  }

  /** A float constant of the model's dtype. */
  float(name: string, values: Float32Array, dims: readonly number[], dtype: WeightDtype): string {
    if (dtype === "float32") return this.f32(name, values, dims);
    const bits = float32ToHalfBits(values);
    this.addConstant(tensorFromBytes(name, DataType.FLOAT16, dims, new Uint8Array(bits.buffer)));
    return name;
  }

  private unique(name: string): string {
    const n = this.counts.get(name) ?? 0;
    this.counts.set(name, n + 1);
    return n === 0 ? name : `${name}_${n}`;
  }
}

export interface GraphOptions {
  readonly dtype: WeightDtype;
  /** Context the export is for: phi3's longrope factors are chosen by it, as llama.cpp chooses them by n_ctx. */
  readonly contextLength: number;
  /**
   * Block-quantize every matrix the graph multiplies by (not the embedding table, which is
   * gathered) into `MatMulNBits` at 4 or 8 bits (quantize-weights.ts). Needs dtype float32.
   */
  readonly quantizeBits?: 4 | 8;
  /** MatMulNBits block size (default 32). */
  readonly blockSize?: number;
  /**
   * Write every such matrix as onnxruntime's dynamic int8 pattern instead (DynamicQuantizeLinear +
   * MatMulInteger, per-column int8 weights: integer-matmul.ts). Needs dtype float32, no quantizeBits.
   */
  readonly integerOps?: boolean;
}

export function buildLlamaOnnxGraph(g: LlamaGguf, options: GraphOptions): LlamaOnnxGraph {
  const h = g.hparams;
  const dtype = options.dtype;
  const elem = dtype === "float32" ? DataType.FLOAT : DataType.FLOAT16;
  const b = new Builder();
  const weights: LazyInitializer[] = [];
  const weightNames = new Map<GgufTensorInfo, string>();

  /** The initializer for a GGUF tensor (one per tensor: a tied head reuses the embedding). */
  const weight = (t: GgufTensorInfo, name: string): string => {
    const existing = weightNames.get(t);
    if (existing) return existing;
    weightNames.set(t, name);
    // ggml dims are fastest-first; ONNX dims are slowest-first.
    const dims = [...t.dims].reverse();
    const count = t.elementCount;
    weights.push({
      name,
      dataType: elem,
      dims,
      byteLength: count * (dtype === "float32" ? 4 : 2),
      source: t,
      produce: () => weightBytes(g, t, dtype),
    });
    return name;
  };
  /** A scalar constant of the model's dtype, created once per value. */
  const scalar = (name: string, value: number) => b.float(name, new Float32Array([value]), [], dtype);

  const group = h.nHead / h.nHeadKv;
  const dh = h.headDim;
  const qDim = h.nHead * dh;
  const kvDim = h.nHeadKv * dh;
  const half = h.nRot / 2;
  const partial = h.nRot > 0 && h.nRot < dh;

  // ---- shapes, computed once ----
  const idsShape = b.op("Shape", ["input_ids"], "/model/input_ids_shape");
  const batch = b.op("Slice", [idsShape, b.i64("const_0", [0]), b.i64("const_1", [1])], "/model/batch");
  const seq = b.op("Slice", [idsShape, "const_1", b.i64("const_2", [2])], "/model/seq");
  const shapeOf = (name: string, tail: number[]) =>
    b.op("Concat", [batch, seq, b.i64(`${name}_tail`, tail)], name, [attr.int("axis", 0)]);
  const shapeBsd = shapeOf("/model/shape_bsd", [h.nEmbd]);
  const shapeQHeads = shapeOf("/model/shape_q_heads", [h.nHead, dh]);
  const shapeKHeads = shapeOf("/model/shape_k_heads_bs", [h.nHeadKv, dh]);
  // NORM rope views the rotated lanes of a head as [half, 2] (adjacent pairs), NEOX as [2, half]
  // (halves); the two lanes are split along the axis of size 2.
  const neox = h.profile.rope === "neox";
  const pairAxis = neox ? -2 : -1;
  const pairsShape = (heads: number) => b.i64(`/model/shape_rope_${heads}`, neox ? [0, 0, heads, 2, half] : [0, 0, heads, half, 2]);
  const rotShape = (heads: number) => b.i64(`/model/shape_rot_${heads}`, [0, 0, heads, h.nRot]);
  const shapeV = shapeOf("/model/shape_v", [h.nHeadKv, dh]);
  const shapeLogits = shapeOf("/model/shape_logits", [h.vocabSize]);
  const flatD = b.i64("/model/shape_flat_d", [-1, h.nEmbd]);
  const flatQ = b.i64("/model/shape_flat_q", [-1, qDim]);
  const q5Shape = b.i64("/model/shape_q_grouped", [0, 0, h.nHeadKv, group, dh]);
  const kv4Shape = b.i64("/model/shape_k_heads", [0, 0, h.nHeadKv, dh]);

  // ---- attention mask [batch, 1, 1, seq, total] (bool: may attend) ----
  const maskShape = b.op("Shape", ["attention_mask"], "/model/attn_mask_shape");
  const total = b.op("Gather", [maskShape, b.i64("const_1_scalar", [1], true)], "/model/total_len", [attr.int("axis", 0)]);
  const seqScalar = b.op("Gather", [idsShape, "const_1_scalar"], "/model/seq_len", [attr.int("axis", 0)]);
  const past = b.op("Sub", [total, seqScalar], "/model/past_len");
  const one = b.i64("const_1_scalar_step", [1], true);
  const keyPos = b.op("Range", [b.i64("const_0_scalar", [0], true), total, one], "/model/key_positions");
  const queryPos = b.op("Range", [past, total, one], "/model/query_positions");
  const queryCol = b.op("Unsqueeze", [queryPos, "const_1"], "/model/query_positions_col");
  const causal = b.op("LessOrEqual", [keyPos, queryCol], "/model/causal_mask");
  const padBool = b.op("Cast", ["attention_mask"], "/model/attn_mask_bool", [attr.int("to", DataType.BOOL)]);
  const pad5 = b.op("Unsqueeze", [padBool, b.i64("const_axes_123", [1, 2, 3])], "/model/attn_mask_5d");
  const allowedFull = b.op("And", [causal, pad5], "/model/allowed", [], "attention_allowed");
  /** The mask of a block: full causal, or (sliding window w) keys with query - key < w, as llama.cpp's is_masked_swa. */
  const masks = new Map<number, string>([[0, allowedFull]]);
  const allowedFor = (window: number): string => {
    let m = masks.get(window);
    if (!m) {
      const p = `/model/sliding_${window}`;
      const oldest = b.op("Sub", [queryCol, b.i64(`${p}/window`, [window], true)], `${p}/oldest_excluded`);
      const inWindow = b.op("Greater", [keyPos, oldest], `${p}/in_window`);
      m = b.op("And", [allowedFull, inWindow], `${p}/allowed`, [], `attention_allowed_sliding_${window}`);
      masks.set(window, m);
    }
    return m;
  };
  const lowest = scalar("/model/masked_score", dtype === "float32" ? -3.4028234663852886e38 : -65504);

  // ---- rope cos/sin [batch, seq, 1, half, 1] (NORM) or [batch, seq, 1, 1, half] (NEOX), per (base, scale) ----
  const posF = h.nRot > 0 ? b.op("Cast", ["position_ids"], "/model/rope/positions_f32", [attr.int("to", DataType.FLOAT)]) : "";
  const axis2 = b.i64("const_2_axes", [2]);
  const pos3 = h.nRot > 0 ? b.op("Unsqueeze", [posF, axis2], "/model/rope/positions_col") : "";
  const ropeTables = new Map<string, { cos: string; sin: string }>();
  const factors = ropeFactors(h, options.contextLength);
  const ropeFor = (r: LayerRope) => {
    const key = `${r.freqBase}/${r.freqScale}`;
    const existing = ropeTables.get(key);
    if (existing) return existing;
    const p = ropeTables.size === 0 ? "/model/rope" : `/model/rope_${ropeTables.size}`;
    const invFreq = Float32Array.from(ropeInverseFrequencies(h, r, factors)); // rounded once to float32
    const angles = b.op("Mul", [pos3, b.f32(`${p}/inv_freq`, invFreq, [half])], `${p}/angles`);
    const trig = (fn: "Cos" | "Sin") => {
      const f = fn.toLowerCase();
      let t = b.op(fn, [angles], `${p}/${f}`);
      if (h.ropeAttnFactor !== 1) t = b.op("Mul", [t, b.f32(`${p}/attn_factor_${fn}`, new Float32Array([h.ropeAttnFactor]), [])], `${p}/${f}_scaled`);
      if (dtype === "float16") t = b.op("Cast", [t], `${p}/${f}_f16`, [attr.int("to", DataType.FLOAT16)]);
      return b.op("Unsqueeze", [t, b.i64(`${p}/axes_${fn}`, neox ? [2, 3] : [2, 4])], `${p}/${f}_5d`);
    };
    const table = { cos: trig("Cos"), sin: trig("Sin") };
    ropeTables.set(key, table);
    return table;
  };

  /** RMSNorm, or LayerNorm when the tensor has a bias (gpt2). */
  const norm = (x: string, w: GgufTensorInfo, bias: GgufTensorInfo | null, wName: string, name: string) =>
    bias
      ? b.op("LayerNormalization", [x, weight(w, `${wName}.weight`), weight(bias, `${wName}.bias`)], `${name}/LayerNormalization`, [
          attr.int("axis", -1),
          attr.float("epsilon", h.normEps),
          attr.int("stash_type", 1),
        ])
      : b.op("SimplifiedLayerNormalization", [x, weight(w, `${wName}.weight`)], `${name}/SimplifiedLayerNormalization`, [
          attr.int("axis", -1),
          attr.float("epsilon", h.normEps),
          attr.int("stash_type", 1),
        ]);
  const bits = options.quantizeBits;
  const blockSize = options.blockSize ?? BLOCK_SIZE;
  const integer = options.integerOps ? integerMatMulWriter(g) : null;
  if ((bits !== undefined || integer) && dtype !== "float32") throw new Error("quantized weights need float32 activations");
  if (bits !== undefined && integer) throw new Error("integerOps and quantizeBits are two different int8 layouts: pick one");
  const linear = (x2d: string, w: GgufTensorInfo, bias: GgufTensorInfo | null, wName: string, name: string) => {
    // Rows that are not whole 32-blocks stay float, as llama.cpp's quantizer leaves them (F16 fallback),
    // in the per-column int8 layout too, so the two backends keep the same matrices float.
    if (integer && w.dims[0]! % BLOCK_SIZE === 0) {
      const nodeName = name.replace(/\/Gemm$/, "/MatMul");
      const out = `${nodeName}_output_0`;
      const mm = integer.matMul(w, { input: x2d, output: out, weightName: `${wName}.weight`, nodeName });
      b.nodes.push(...mm.nodes);
      weights.push(...mm.initializers);
      return bias ? b.op("Add", [out, weight(bias, `${wName}.bias`)], name.replace(/\/Gemm$/, "/Add_bias")) : out;
    }
    if (bits === undefined || w.dims[0]! % blockSize !== 0) {
      return b.op("Gemm", bias ? [x2d, weight(w, `${wName}.weight`), weight(bias, `${wName}.bias`)] : [x2d, weight(w, `${wName}.weight`)], name, [
        attr.int("transB", 1),
      ]);
    }
    const nodeName = name.replace(/\/Gemm$/, `/MatMul_Q${bits}`);
    const out = `${nodeName}_output_0`;
    const mm = quantizedMatMul(g, w, { input: x2d, output: out, weightName: `${wName}.weight`, nodeName, bits, blockSize });
    b.nodes.push(mm.node);
    weights.push(...mm.initializers);
    return bias ? b.op("Add", [out, weight(bias, `${wName}.bias`)], name.replace(/\/Gemm$/, "/Add_bias")) : out;
  };
  /** Split the last axis of `x` into parts of the given sizes (fused q/k/v, fused gate/up, rotated/passed lanes). */
  const split = (x: string, sizes: number[], name: string, axis = -1) =>
    b.opMulti("Split", [x, b.i64(`${name}/sizes`, sizes)], name, sizes.length, [attr.int("axis", axis)]);
  /** GELU, tanh approximation, from primitives: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³))). */
  const gelu = (x: string, name: string) => {
    const x3 = b.op("Mul", [b.op("Mul", [x, x], `${name}/Mul_x2`), x], `${name}/Mul_x3`);
    const inner = b.op("Add", [x, b.op("Mul", [x3, scalar("/model/gelu/coef", 0.044715)], `${name}/Mul_coef`)], `${name}/Add_inner`);
    const t = b.op("Tanh", [b.op("Mul", [inner, scalar("/model/gelu/sqrt_2_over_pi", Math.sqrt(2 / Math.PI))], `${name}/Mul_sqrt`)], `${name}/Tanh`);
    const onePlus = b.op("Add", [t, scalar("/model/gelu/one", 1)], `${name}/Add_one`);
    return b.op("Mul", [b.op("Mul", [x, scalar("/model/gelu/half", 0.5)], `${name}/Mul_half`), onePlus], `${name}/Mul`);
  };
  /** cap * tanh(x / cap). */
  const softcap = (x: string, cap: number, name: string) => {
    const inv = scalar(`/model/softcap_${cap}/inv_cap`, 1 / cap);
    return b.op("Mul", [b.op("Tanh", [b.op("Mul", [x, inv], `${name}/Mul_inv_cap`)], `${name}/Tanh`), scalar(`/model/softcap_${cap}/cap`, cap)], `${name}/Mul_cap`);
  };
  /** Rotate `x` ([b, s, heads, head_dim]): adjacent lanes (NORM) or halves (NEOX) of its first n_rot lanes. */
  const rope = (x: string, heads: number, table: { cos: string; sin: string }, name: string) => {
    const [rot, pass] = partial ? split(x, [h.nRot, dh - h.nRot], `${name}/Split_partial`) : [x, null];
    const pairs = b.op("Reshape", [rot!, pairsShape(heads)], `${name}/Reshape`);
    const [x0, x1] = b.opMulti("Split", [pairs], `${name}/Split`, 2, [attr.int("axis", pairAxis)]);
    const { cos, sin } = table;
    const r0 = b.op("Sub", [b.op("Mul", [x0!, cos], `${name}/Mul_x0_cos`), b.op("Mul", [x1!, sin], `${name}/Mul_x1_sin`)], `${name}/Sub`);
    const r1 = b.op("Add", [b.op("Mul", [x0!, sin], `${name}/Mul_x0_sin`), b.op("Mul", [x1!, cos], `${name}/Mul_x1_cos`)], `${name}/Add`);
    const rotated = b.op("Concat", [r0, r1], `${name}/Concat`, [attr.int("axis", pairAxis)]);
    if (!pass) return rotated;
    const lanes = b.op("Reshape", [rotated, rotShape(heads)], `${name}/Reshape_rot`);
    return b.op("Concat", [lanes, pass], `${name}/Concat_partial`, [attr.int("axis", -1)]);
  };

  const inputs = [
    valueInfo("input_ids", DataType.INT64, ["batch_size", "sequence_length"]),
    valueInfo("attention_mask", DataType.INT64, ["batch_size", "total_sequence_length"]),
    valueInfo("position_ids", DataType.INT64, ["batch_size", "sequence_length"]),
  ];
  const outputs = [valueInfo("logits", elem, ["batch_size", "sequence_length", h.vocabSize])];

  // ---- embeddings (resid_pre.0): token rows, times gemma's sqrt(n_embd), plus gpt2's learned positions ----
  const scaled = h.embedScale !== 1;
  const positioned = g.posEmbd !== null;
  let resid = b.op("Gather", [weight(g.tokenEmbd, "model.embed_tokens.weight"), "input_ids"], "/model/embed_tokens/Gather", [attr.int("axis", 0)], scaled || positioned ? undefined : "embeddings");
  if (scaled) resid = b.op("Mul", [resid, scalar("/model/embed_scale", h.embedScale)], "/model/embed_tokens/Mul_scale", [], positioned ? undefined : "embeddings");
  if (g.posEmbd) {
    const pos = b.op("Gather", [weight(g.posEmbd, "model.embed_positions.weight"), "position_ids"], "/model/embed_positions/Gather", [attr.int("axis", 0)]);
    resid = b.op("Add", [resid, pos], "/model/embed_positions/Add", [], "embeddings");
  }
  const queryScale = scalar("/model/attn_scale", h.queryScale);

  for (let L = 0; L < h.nLayers; L++) {
    const l = g.layers[L]!;
    const p = `/model/layers.${L}`;
    const w = `model.layers.${L}`;
    const pastK = `past_key_values.${L}.key`;
    const pastV = `past_key_values.${L}.value`;
    inputs.push(valueInfo(pastK, elem, ["batch_size", h.nHeadKv, "past_sequence_length", dh]));
    inputs.push(valueInfo(pastV, elem, ["batch_size", h.nHeadKv, "past_sequence_length", dh]));
    outputs.push(valueInfo(`present.${L}.key`, elem, ["batch_size", h.nHeadKv, "total_sequence_length", dh]));
    outputs.push(valueInfo(`present.${L}.value`, elem, ["batch_size", h.nHeadKv, "total_sequence_length", dh]));

    // attention
    const a = norm(resid, l.attnNorm, l.attnNormB, `${w}.input_layernorm`, `${p}/input_layernorm`);
    const a2 = b.op("Reshape", [a, flatD], `${p}/self_attn/Reshape_flat`);
    let q: string, k: string, v: string;
    if (l.wqkv) {
      const qkv = linear(a2, l.wqkv, l.bqkv, `${w}.self_attn.qkv_proj`, `${p}/self_attn/qkv_proj/Gemm`);
      [q, k, v] = split(qkv, [qDim, kvDim, kvDim], `${p}/self_attn/qkv_proj/Split`) as [string, string, string];
    } else {
      q = linear(a2, l.wq!, l.bq, `${w}.self_attn.q_proj`, `${p}/self_attn/q_proj/Gemm`);
      k = linear(a2, l.wk!, l.bk, `${w}.self_attn.k_proj`, `${p}/self_attn/k_proj/Gemm`);
      v = linear(a2, l.wv!, l.bv, `${w}.self_attn.v_proj`, `${p}/self_attn/v_proj/Gemm`);
    }
    let qHeads = b.op("Reshape", [q, shapeQHeads], `${p}/self_attn/Reshape_q_heads`); // [b, s, heads, dh]
    let kHeads = b.op("Reshape", [k, shapeKHeads], `${p}/self_attn/Reshape_k_heads_bs`);
    if (l.qNorm && l.kNorm) {
      qHeads = norm(qHeads, l.qNorm, null, `${w}.self_attn.q_norm`, `${p}/self_attn/q_norm`);
      kHeads = norm(kHeads, l.kNorm, null, `${w}.self_attn.k_norm`, `${p}/self_attn/k_norm`);
    }
    // Blocks without rope (smollm3's NoPE blocks, gpt2) skip the rotation.
    const r = h.layerRope[L]!;
    const table = r.rotate ? ropeFor(r) : null;
    const qRot = table ? rope(qHeads, h.nHead, table, `${p}/self_attn/rope_q`) : qHeads;
    const kRot = table ? rope(kHeads, h.nHeadKv, table, `${p}/self_attn/rope_k`) : kHeads;
    const q5 = b.op("Transpose", [b.op("Reshape", [qRot, q5Shape], `${p}/self_attn/Reshape_q_grouped`)], `${p}/self_attn/Transpose_q`, [
      attr.ints("perm", [0, 2, 3, 1, 4]),
    ]); // [b, kv_heads, group, s, dh]
    const kNew = b.op("Transpose", [b.op("Reshape", [kRot, kv4Shape], `${p}/self_attn/Reshape_k_heads`)], `${p}/self_attn/Transpose_k`, [
      attr.ints("perm", [0, 2, 1, 3]),
    ]); // [b, kv_heads, s, dh]
    const vNew = b.op("Transpose", [b.op("Reshape", [v, shapeV], `${p}/self_attn/Reshape_v_heads`)], `${p}/self_attn/Transpose_v`, [
      attr.ints("perm", [0, 2, 1, 3]),
    ]);
    const presentK = b.op("Concat", [pastK, kNew], `${p}/self_attn/Concat_k`, [attr.int("axis", 2)], `present.${L}.key`);
    const presentV = b.op("Concat", [pastV, vNew], `${p}/self_attn/Concat_v`, [attr.int("axis", 2)], `present.${L}.value`);
    const k5 = b.op("Unsqueeze", [presentK, axis2], `${p}/self_attn/Unsqueeze_k`); // [b, kv, 1, T, dh]
    const kT = b.op("Transpose", [k5], `${p}/self_attn/Transpose_kT`, [attr.ints("perm", [0, 1, 2, 4, 3])]);
    const v5 = b.op("Unsqueeze", [presentV, axis2], `${p}/self_attn/Unsqueeze_v`);
    let scores = b.op("Mul", [b.op("MatMul", [q5, kT], `${p}/self_attn/MatMul_qk`), queryScale], `${p}/self_attn/Mul_scale`);
    if (h.attnSoftcap > 0) scores = softcap(scores, h.attnSoftcap, `${p}/self_attn/softcap`);
    const masked = b.op("Where", [allowedFor(h.slidingWindow[L]!), scores, lowest], `${p}/self_attn/Where_mask`);
    const probs = b.op("Softmax", [masked], `${p}/self_attn/Softmax`, [attr.int("axis", -1)]);
    const ctx = b.op("MatMul", [probs, v5], `${p}/self_attn/MatMul_pv`); // [b, kv, group, s, dh]
    const ctxT = b.op("Transpose", [ctx], `${p}/self_attn/Transpose_out`, [attr.ints("perm", [0, 3, 1, 2, 4])]);
    const ctx2 = b.op("Reshape", [ctxT, flatQ], `${p}/self_attn/Reshape_out`);
    const o = linear(ctx2, l.wo, l.bo, `${w}.self_attn.o_proj`, `${p}/self_attn/o_proj/Gemm`);
    let o3 = b.op("Reshape", [o, shapeBsd], `${p}/self_attn/Reshape_o`);
    if (l.postAttnNorm) o3 = norm(o3, l.postAttnNorm, null, `${w}.post_attention_layernorm`, `${p}/post_attention_layernorm`);
    const mid = b.op("Add", [resid, o3], `${p}/attn_residual/Add`, [], `layers.${L}.resid_mid`);

    // MLP: silu(gate) * up, gelu(gate) * up, or gelu(up)
    // HF's names: llama calls the FFN's input norm post_attention_layernorm, gemma (which has a real one) pre_feedforward_layernorm.
    const ffnNormName = l.postAttnNorm ? "pre_feedforward_layernorm" : "post_attention_layernorm";
    const f = norm(mid, l.ffnNorm, l.ffnNormB, `${w}.${ffnNormName}`, `${p}/${ffnNormName}`);
    const f2 = b.op("Reshape", [f, flatD], `${p}/mlp/Reshape_flat`);
    let hidden: string;
    if (h.profile.ffn === "gelu") {
      hidden = gelu(linear(f2, l.wUp, l.bUp, `${w}.mlp.up_proj`, `${p}/mlp/up_proj/Gemm`), `${p}/mlp/act_fn`);
    } else {
      let gate: string, up: string;
      if (l.wGate) {
        gate = linear(f2, l.wGate, l.bGate, `${w}.mlp.gate_proj`, `${p}/mlp/gate_proj/Gemm`);
        up = linear(f2, l.wUp, l.bUp, `${w}.mlp.up_proj`, `${p}/mlp/up_proj/Gemm`);
      } else {
        const gateUp = linear(f2, l.wUp, l.bUp, `${w}.mlp.gate_up_proj`, `${p}/mlp/gate_up_proj/Gemm`);
        [gate, up] = split(gateUp, [h.nFf, h.nFf], `${p}/mlp/gate_up_proj/Split`) as [string, string];
      }
      const act =
        h.profile.ffn === "swiglu"
          ? b.op("Mul", [gate, b.op("Sigmoid", [gate], `${p}/mlp/act_fn/Sigmoid`)], `${p}/mlp/act_fn/Mul`)
          : gelu(gate, `${p}/mlp/act_fn`);
      hidden = b.op("Mul", [act, up], `${p}/mlp/Mul`);
    }
    const down = linear(hidden, l.wDown, l.bDown, `${w}.mlp.down_proj`, `${p}/mlp/down_proj/Gemm`);
    let down3 = b.op("Reshape", [down, shapeBsd], `${p}/mlp/Reshape_out`);
    if (l.postFfnNorm) down3 = norm(down3, l.postFfnNorm, null, `${w}.post_feedforward_layernorm`, `${p}/post_feedforward_layernorm`);
    resid = b.op("Add", [mid, down3], `${p}/mlp_residual/Add`, [], `layers.${L}.resid_post`);
  }

  const normed = norm(resid, g.outputNorm, g.outputNormB, "model.norm", "/model/norm");
  let head = linear(b.op("Reshape", [normed, flatD], "/lm_head/Reshape_flat"), g.output, g.outputBias, "lm_head", "/lm_head/Gemm");
  if (h.finalSoftcap > 0) head = softcap(head, h.finalSoftcap, "/lm_head/softcap");
  b.op("Reshape", [head, shapeLogits], "/lm_head/Reshape_out", [], "logits");

  const m = model({
    graph: graph({ name: `steerkit_${h.architecture}_decoder`, nodes: b.nodes, initializers: b.constants, inputs, outputs }),
    opsets: bits === undefined ? { "": OPSET } : { "": OPSET, "com.microsoft": 1 },
    producerName: "steerkit-convert",
    metadata: { source: "gguf", architecture: h.architecture },
  });
  return { model: m, weights };
}

/** A GGUF weight's bytes in the output dtype (F16 -> float16 passes the bits through untouched). */
function weightBytes(g: LlamaGguf, t: GgufTensorInfo, dtype: WeightDtype): Uint8Array {
  if (dtype === "float16") {
    const bits = readWeightF16Bits(g, t) ?? float32ToHalfBits(readWeightF32(g, t));
    return new Uint8Array(bits.buffer, bits.byteOffset, bits.byteLength);
  }
  const f = readWeightF32(g, t);
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}
