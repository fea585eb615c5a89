/**
 * Fixture generator: lay a GGUF model (llama, mistral3, smollm3, qwen2, qwen3, phi3, gemma2, gemma3 or gpt2) out as Hugging Face Optimum's ONNX
 * exporter does for `text-generation-with-past`, in the two layouts people download:
 *
 * - `optimum-merged`: `decoder_model_merged.onnx` at the root, as `optimum-cli export onnx` writes
 *   it (and transformers.js v2 repositories ship it under `onnx/`): `optimum.onnx.merge_decoders`
 *   wraps the decoder without past and the decoder with past in one `If(use_cache_branch)` node
 *   (then = with past, else = without), weights deduplicated into the outer graph, scalars and small
 *   int constants kept in each branch, outer inputs = both models' inputs + `use_cache_branch` [1].
 * - `transformers.js`: `onnx/model.onnx`, a single with-past decoder (transformers.js v3 repositories),
 *   with `config.json` and the tokenizer files at the root.
 *
 * The graph is what `torch.onnx.export` traces from transformers' eager Llama/Qwen2/GPT-2 modules at
 * Optimum's default opset for them (14), written with the project's ONNX codec:
 * - inputs `input_ids`, `attention_mask` [batch, past + seq], `position_ids`, and
 *   `past_key_values.N.key|value` [batch, kv_heads, past, head_dim]; outputs `logits` and
 *   `present.N.key|value` (the Concat of past and new rows, kv heads before repeat_kv);
 * - linear layers as `MatMul` on transposed weight initializers named `onnx::MatMul_<n>` (what the
 *   exporter names them), biases as a separate `Add`;
 * - RMSNorm decomposed (Pow, ReduceMean, Add eps, Sqrt, Reciprocal, Mul, Mul weight);
 * - rotary embedding on HF's layout (q/k rows un-permuted from GGUF's interleaved order for llama):
 *   inv_freq x position_ids, Concat(freqs, freqs), Cos/Sin, `q*cos + rotate_half(q)*sin` with
 *   rotate_half = Concat(Neg(Slice(second half)), Slice(first half));
 * - repeat_kv as Unsqueeze, Expand, Reshape; attention as MatMul, Mul by 1/sqrt(head_dim), Add of a
 *   4-D additive mask (0 or float32 min), Softmax, MatMul;
 * - the residual stream as plain `Add` nodes named `/model/layers.N/Add` (attention) and
 *   `/model/layers.N/Add_1` (MLP), as the exporter names them;
 * - Gemma 2 / 3: embeddings times the normalizer sqrt(hidden), scores times query_pre_attn_scalar^-0.5
 *   (Gemma 2: then soft-capped, Div, Tanh, Mul), a sliding-window mask on the sliding layers,
 *   post-attention and post-feedforward RMSNorms, gelu_pytorch_tanh gated MLP, the final logit
 *   soft-cap when the model has one; Gemma 3's per-head q/k norms and `rotary_emb_local` (its own
 *   base) on the sliding layers; Qwen 3's q/k norms; Phi-3's fused `qkv_proj` and `gate_up_proj` (Split),
 *   its partial rotary (Slice, rotate, Concat);
 * - GPT-2 (`/transformer/...`): token + position embeddings (`/transformer/Add`), LayerNorm decomposed
 *   (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div, Mul, Add), Conv1D `c_attn` as MatMul + bias
 *   then Split into q/k/v, scores divided by sqrt(head_dim) and masked with Where before the additive
 *   padding mask, gelu_new decomposed (Pow 3, Tanh), residual Adds `/transformer/h.N/Add` and `Add_1`,
 *   the tied head as a MatMul on a transposed copy of `wte`.
 * It computes the GGUF's function (llama.cpp's graph), so the reference backend on the GGUF is its
 * oracle. `quantized: true` (transformers.js layout) writes `onnx/model_quantized.onnx` instead, as
 * onnxruntime's `quantize_dynamic` (what transformers.js's conversion script runs) rewrites every
 * MatMul on a weight: int8 weights with a per-tensor symmetric scale, `DynamicQuantizeLinear` on the
 * activation, `MatMulInteger`, `Cast` to float, and the two scales multiplied in. Run as a script to
 * write a fixture directory:
 *
 *   bun test/onnx/helpers/optimum-export.ts <model.gguf> <out-dir> [--layout optimum-merged|transformers.js] [--quantized]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type LlamaGguf, openLlamaGguf, readWeightF32, ropeFactors, ropeInverseFrequencies } from "../../../src/convert/llama-gguf.ts";
import { ggufToHfTokenizer, readTokenizerSpec } from "../../../src/formats/gguf-tokenizer.ts";
import type { GgufTensorInfo } from "../../../src/formats/gguf.ts";
import {
  attr,
  DataType,
  encodeModel,
  graph,
  model,
  node,
  type OnnxGraph,
  type OnnxNode,
  type OnnxTensor,
  tensorFromBytes,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
} from "../../../src/formats/onnx/index.ts";

export type OptimumLayout = "optimum-merged" | "transformers.js";
export const OPTIMUM_OPSET = 14;

/** Nodes and the small constants of one graph (a branch keeps its own, as merge_decoders does). */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly constants: OnnxTensor[] = [];
  private readonly counts = new Map<string, number>();
  private readonly constantsByName = new Map<string, OnnxTensor>();

  /** A node named as torch.onnx.export names them (`<scope>/<Op>`, then `_1`, `_2`...); returns its output. */
  op(opType: string, inputs: readonly string[], scope: string, attributes = [] as ReturnType<typeof attr.int>[], out?: string): string {
    const base = `${scope}/${opType}`;
    const n = this.counts.get(base) ?? 0;
    this.counts.set(base, n + 1);
    const name = n === 0 ? base : `${base}_${n}`;
    const output = out ?? `${name}_output_0`;
    this.nodes.push(node(opType, inputs, [output], attributes, { name }));
    return output;
  }

  i64(name: string, values: readonly number[], scalar = false): string {
    return this.constant(tensorFromInt64(name, scalar ? [] : [values.length], values));
  }

  f32(name: string, values: readonly number[], dims: readonly number[] = []): string {
    return this.constant(tensorFromFloat32(name, dims, Float32Array.from(values)));
  }

  /** A name holds one value: asking again reuses it, a different value under the same name is a bug. */
  private constant(t: OnnxTensor): string {
    const existing = this.constantsByName.get(t.name!);
    if (!existing) {
      this.constantsByName.set(t.name!, t);
      this.constants.push(t);
    } else if (existing.dataType !== t.dataType || existing.rawData?.join() !== t.rawData?.join()) {
      throw new Error(`constant "${t.name}" defined twice with different values`);
    }
    return t.name!;
  }
}

interface Weights {
  /** Outer-graph initializers (shared by both branches of a merged model). */
  readonly tensors: OnnxTensor[];
  /** GGUF tensor -> initializer name (MatMul weights transposed to [in, out]). */
  matmul(t: GgufTensorInfo, permuteHeads?: number): string;
  plain(t: GgufTensorInfo, name: string): string;
}

/**
 * GGUF stores llama's q/k rows permuted so adjacent lanes rotate together (NORM rope); HF's layout
 * rotates halves. GGUF row h*D + 2j + a holds HF row h*D + a*D/2 + j: undo it.
 */
function unpermuteRows(w: Float32Array, rows: number, cols: number, nHeads: number): Float32Array {
  const d = rows / nHeads;
  const out = new Float32Array(w.length);
  for (let h = 0; h < nHeads; h++) {
    for (let j = 0; j < d / 2; j++) {
      for (let a = 0; a < 2; a++) {
        const src = (h * d + 2 * j + a) * cols;
        const dst = (h * d + a * (d / 2) + j) * cols;
        out.set(w.subarray(src, src + cols), dst);
      }
    }
  }
  return out;
}

function makeWeights(g: LlamaGguf): Weights {
  const tensors: OnnxTensor[] = [];
  const names = new Map<string, string>();
  let counter = 1000;
  return {
    tensors,
    matmul(t, permuteHeads) {
      const key = `${t.name}/T`;
      const existing = names.get(key);
      if (existing) return existing;
      const [nIn, nOut] = [t.dims[0]!, t.dims[1]!];
      let w = readWeightF32(g, t);
      if (permuteHeads) w = unpermuteRows(w, nOut, nIn, permuteHeads);
      const wt = new Float32Array(w.length);
      for (let o = 0; o < nOut; o++) for (let i = 0; i < nIn; i++) wt[i * nOut + o] = w[o * nIn + i]!;
      const name = `onnx::MatMul_${counter++}`;
      tensors.push(tensorFromFloat32(name, [nIn, nOut], wt));
      names.set(key, name);
      return name;
    },
    plain(t, name) {
      if (!names.has(t.name)) {
        tensors.push(tensorFromFloat32(name, [...t.dims].reverse(), readWeightF32(g, t)));
        names.set(t.name, name);
      }
      return names.get(t.name)!;
    },
  };
}

/** One decoder graph as the exporter traces it, with or without past inputs. */
function decoderGraph(g: LlamaGguf, w: Weights, withPast: boolean): { graph: OnnxGraph; inputs: ReturnType<typeof valueInfo>[] } {
  const h = g.hparams;
  const b = new GraphBuilder();
  const gpt2 = h.architecture === "gpt2";
  const gemma = h.architecture === "gemma2" || h.architecture === "gemma3";
  const phi3 = h.architecture === "phi3";
  const top = gpt2 ? "/transformer" : "/model";
  const D = h.headDim;
  const H = h.nHead;
  const KV = h.nHeadKv;
  const unpermute = h.profile.rope === "norm";
  const inputs = [
    valueInfo("input_ids", DataType.INT64, ["batch_size", "sequence_length"]),
    valueInfo("attention_mask", DataType.INT64, ["batch_size", "past_sequence_length + 1"]),
    valueInfo("position_ids", DataType.INT64, ["batch_size", "sequence_length"]),
  ];
  const outputs = [valueInfo("logits", DataType.FLOAT, ["batch_size", "sequence_length", h.vocabSize])];

  const rmsNorm = (x: string, weightT: GgufTensorInfo, weightName: string, scope: string) => {
    const pow = b.op("Pow", [x, b.f32("/model/Constant_pow_2", [2])], scope);
    const mean = b.op("ReduceMean", [pow], scope, [attr.ints("axes", [-1]), attr.int("keepdims", 1)]);
    const eps = b.op("Add", [mean, b.f32("/model/Constant_eps", [h.normEps])], scope);
    const inv = b.op("Reciprocal", [b.op("Sqrt", [eps], scope)], scope);
    const normed = b.op("Mul", [x, inv], scope);
    return b.op("Mul", [w.plain(weightT, weightName), normed], scope);
  };
  const layerNorm = (x: string, weightT: GgufTensorInfo, biasT: GgufTensorInfo, name: string, scope: string) => {
    const mean = b.op("ReduceMean", [x], scope, [attr.ints("axes", [-1]), attr.int("keepdims", 1)]);
    const centered = b.op("Sub", [x, mean], scope);
    const variance = b.op("ReduceMean", [b.op("Pow", [centered, b.f32("/model/Constant_pow_2", [2])], scope)], scope, [attr.ints("axes", [-1]), attr.int("keepdims", 1)]);
    const std = b.op("Sqrt", [b.op("Add", [variance, b.f32("/model/Constant_eps", [h.normEps])], scope)], scope);
    const normed = b.op("Div", [centered, std], scope);
    return b.op("Add", [b.op("Mul", [normed, w.plain(weightT, `${name}.weight`)], scope), w.plain(biasT, `${name}.bias`)], scope);
  };
  const norm = (x: string, weightT: GgufTensorInfo, biasT: GgufTensorInfo | null, name: string, scope: string) =>
    biasT ? layerNorm(x, weightT, biasT, name, scope) : rmsNorm(x, weightT, `${name}.weight`, scope);
  /** gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  const geluNew = (x: string, scope: string) => {
    const cubed = b.op("Mul", [b.op("Pow", [x, b.f32("/model/Constant_pow_3", [3])], scope), b.f32("/model/Constant_gelu_coef", [0.044715])], scope);
    const t = b.op("Tanh", [b.op("Mul", [b.op("Add", [x, cubed], scope), b.f32("/model/Constant_gelu_sqrt", [Math.sqrt(2 / Math.PI)])], scope)], scope);
    return b.op("Mul", [b.op("Mul", [x, b.f32("/model/Constant_gelu_half", [0.5])], scope), b.op("Add", [t, b.f32("/model/Constant_one", [1])], scope)], scope);
  };
  const linear = (x: string, t: GgufTensorInfo, bias: GgufTensorInfo | null, biasName: string, scope: string, permuteHeads?: number) => {
    const y = b.op("MatMul", [x, w.matmul(t, permuteHeads)], scope);
    return bias ? b.op("Add", [w.plain(bias, biasName), y], scope) : y;
  };

  // Shapes.
  const idsShape = b.op("Shape", ["input_ids"], "/model");
  const batch = b.op("Gather", [idsShape, b.i64("/model/Constant_0", [0], true)], "/model", [attr.int("axis", 0)]);
  const seq = b.op("Gather", [idsShape, b.i64("/model/Constant_1", [1], true)], "/model", [attr.int("axis", 0)]);
  const maskShape = b.op("Shape", ["attention_mask"], "/model");
  const total = b.op("Gather", [maskShape, "/model/Constant_1"], "/model", [attr.int("axis", 0)]);
  const past = b.op("Sub", [total, seq], "/model");
  const unsq0 = b.i64("/model/Constant_axes_0", [0]);
  const dims = (...parts: string[]) => b.op("Concat", parts.map((p) => (p.startsWith("/model/Constant") ? p : b.op("Unsqueeze", [p, unsq0], "/model"))), "/model", [attr.int("axis", 0)]);

  // The 4-D additive causal mask [batch, 1, seq, total]: 0 where a query may attend, float32 min elsewhere.
  const one = b.i64("/model/Constant_step", [1], true);
  const cols = b.op("Range", [b.i64("/model/Constant_start", [0], true), total, one], "/model");
  const rows = b.op("Unsqueeze", [b.op("Range", [past, total, one], "/model"), b.i64("/model/Constant_axes_1", [1])], "/model");
  const causal = b.op("LessOrEqual", [cols, rows], "/model");
  const padded = b.op("Unsqueeze", [b.op("Cast", ["attention_mask"], "/model", [attr.int("to", DataType.BOOL)]), b.i64("/model/Constant_axes_12", [1, 2])], "/model");
  const allowed = b.op("And", [causal, padded], "/model");
  const mask4d = b.op("Where", [allowed, b.f32("/model/Constant_zero", [0]), b.f32("/model/Constant_min", [-3.4028234663852886e38])], "/model");
  // Gemma 2's sliding-window layers: keys within the window only (query - key < window).
  const windowOf = (L: number) => h.slidingWindow[L]!;
  const slidingMask = (window: number) => {
    const inWindow = b.op("Greater", [cols, b.op("Sub", [rows, b.i64(`/model/Constant_window_${window}`, [window], true)], "/model")], "/model");
    return b.op("Where", [b.op("And", [allowed, inWindow], "/model"), "/model/Constant_zero", "/model/Constant_min"], "/model");
  };
  const masks = new Map<number, string>();
  const maskFor = (L: number) => {
    const window = windowOf(L);
    if (window === 0) return mask4d;
    if (!masks.has(window)) masks.set(window, slidingMask(window));
    return masks.get(window)!;
  };
  /** Gemma 2's soft-cap: x / cap, Tanh, * cap. */
  const softcap = (x: string, cap: number, scope: string) =>
    b.op("Mul", [b.op("Tanh", [b.op("Div", [x, b.f32(`/model/Constant_cap_${cap}`, [cap])], scope)], scope), `/model/Constant_cap_${cap}`], scope);
  // GPT-2's padding mask alone, additive: (1 - mask) * float32 min.
  const padAdditive = b.op("Where", [padded, "/model/Constant_zero", "/model/Constant_min"], "/model");

  // Rotary (not gpt2): freqs = inv_freq x positions, emb = [freqs, freqs], cos/sin [batch, 1, seq, D].
  /**
   * The rotary embedding of block L (none for gpt2). Gemma 3 has two: `rotary_emb` (global blocks) and
   * `rotary_emb_local` (sliding blocks, their own base); every other model one.
   */
  const rotaries = new Map<string, (x: string, scope: string) => string>();
  const rotaryFor = (L: number) => {
    const r = h.layerRope[L]!;
    const key = `${r.freqBase}/${r.freqScale}`;
    const existing = rotaries.get(key);
    if (existing) return existing;
    const re = rotaries.size === 0 ? "/model/rotary_emb" : "/model/rotary_emb_local";
    const invFreq = [...ropeInverseFrequencies(h, r, ropeFactors(h, h.contextLength))];
    const pos = b.op("Cast", [b.op("Unsqueeze", ["position_ids", b.i64("/model/rotary_emb/Constant_axes", [1])], re)], re, [attr.int("to", DataType.FLOAT)]);
    const R = h.nRot; // rotated lanes per head (Phi-3's partial_rotary_factor < 1: R < D)
    const freqs = b.op("Transpose", [b.op("MatMul", [b.f32(`${re}/inv_freq`, invFreq, [R / 2, 1]), pos], re)], re, [attr.ints("perm", [0, 2, 1])]);
    const emb = b.op("Concat", [freqs, freqs], re, [attr.int("axis", -1)]);
    const cos = b.op("Unsqueeze", [b.op("Cos", [emb], re), b.i64("/model/Constant_axes_1", [1])], re);
    const sin = b.op("Unsqueeze", [b.op("Sin", [emb], re), "/model/Constant_axes_1"], re);
    const lanes = (x: string, from: number, to: string | number, scope: string) =>
      b.op("Slice", [x, b.i64(`/model/Constant_from_${from}`, [from]), typeof to === "string" ? to : b.i64(`/model/Constant_to_${to}`, [to]), b.i64("/model/Constant_last", [-1])], scope);
    const big = b.i64("/model/Constant_big", [Number.MAX_SAFE_INTEGER]);
    const rotateHalf = (x: string, scope: string) => b.op("Concat", [b.op("Neg", [lanes(x, R / 2, big, scope)], scope), lanes(x, 0, R / 2, scope)], scope, [attr.int("axis", -1)]);
    const rotate = (x: string, scope: string) => b.op("Add", [b.op("Mul", [x, cos], scope), b.op("Mul", [rotateHalf(x, scope), sin], scope)], scope);
    // Partial rotary (Phi-3 / Phi-4-mini): rotate the first R lanes, pass the rest, concatenate.
    const apply = R === D ? rotate : (x: string, scope: string) => b.op("Concat", [rotate(lanes(x, 0, R, scope), scope), lanes(x, R, big, scope)], scope, [attr.int("axis", -1)]);
    rotaries.set(key, apply);
    return apply;
  };

  let x = gpt2
    ? b.op("Add", [b.op("Gather", [w.plain(g.tokenEmbd, "transformer.wte.weight"), "input_ids"], "/transformer/wte"), b.op("Gather", [w.plain(g.posEmbd!, "transformer.wpe.weight"), "position_ids"], "/transformer/wpe")], top)
    : b.op("Gather", [w.plain(g.tokenEmbd, "model.embed_tokens.weight"), "input_ids"], "/model/embed_tokens");
  // Gemma: hidden_states = inputs_embeds * normalizer (sqrt(hidden_size)).
  if (gemma) x = b.op("Mul", [x, b.f32("/model/Constant_normalizer", [h.embedScale])], "/model");
  const heads = (t: string, n: number, scope: string) =>
    b.op("Transpose", [b.op("Reshape", [t, dims(batch, seq, b.i64(`/model/Constant_heads_${n}`, [n]), b.i64("/model/Constant_head_dim", [D]))], scope)], scope, [attr.ints("perm", [0, 2, 1, 3])]);
  for (let L = 0; L < h.nLayers; L++) {
    const l = g.layers[L]!;
    const s = gpt2 ? `/transformer/h.${L}` : `/model/layers.${L}`;
    const p = gpt2 ? `transformer.h.${L}` : `model.layers.${L}`;
    let q: string, k: string, v: string;
    if (phi3) {
      const a = rmsNorm(x, l.attnNorm, `${p}.input_layernorm.weight`, `${s}/input_layernorm`);
      const qkv = linear(a, l.wqkv!, l.bqkv, `${p}.self_attn.qkv_proj.bias`, `${s}/self_attn/qkv_proj`);
      const [q2, k2, v2] = [0, 1, 2].map((i) => `${s}/self_attn/Split_output_${i}`);
      b.nodes.push(node("Split", [qkv, b.i64("/model/Constant_split_qkv", [H * D, KV * D, KV * D])], [q2!, k2!, v2!], [attr.int("axis", 2)], { name: `${s}/self_attn/Split` }));
      [q, k, v] = [heads(q2!, H, `${s}/self_attn`), heads(k2!, KV, `${s}/self_attn`), heads(v2!, KV, `${s}/self_attn`)];
    } else if (gpt2) {
      const a = norm(x, l.attnNorm, l.attnNormB, `${p}.ln_1`, `${s}/ln_1`);
      const qkv = linear(a, l.wqkv!, l.bqkv, `${p}.attn.c_attn.bias`, `${s}/attn/c_attn`);
      const [q2, k2, v2] = [0, 1, 2].map((i) => `${s}/attn/Split_output_${i}`);
      b.nodes.push(node("Split", [qkv, b.i64("/model/Constant_split_qkv", [H * D, KV * D, KV * D])], [q2!, k2!, v2!], [attr.int("axis", 2)], { name: `${s}/attn/Split` }));
      [q, k, v] = [heads(q2!, H, `${s}/attn`), heads(k2!, KV, `${s}/attn`), heads(v2!, KV, `${s}/attn`)];
    } else {
      const a = rmsNorm(x, l.attnNorm, `${p}.input_layernorm.weight`, `${s}/input_layernorm`);
      q = heads(linear(a, l.wq!, l.bq, `${p}.self_attn.q_proj.bias`, `${s}/self_attn/q_proj`, unpermute ? H : undefined), H, `${s}/self_attn`);
      k = heads(linear(a, l.wk!, l.bk, `${p}.self_attn.k_proj.bias`, `${s}/self_attn/k_proj`, unpermute ? KV : undefined), KV, `${s}/self_attn`);
      v = heads(linear(a, l.wv!, l.bv, `${p}.self_attn.v_proj.bias`, `${s}/self_attn/v_proj`), KV, `${s}/self_attn`);
    }
    // Gemma 3 / Qwen 3 style per-head q/k norms on [batch, heads, seq, head_dim], before rope.
    if (l.qNorm && l.kNorm) {
      q = rmsNorm(q, l.qNorm, `${p}.self_attn.q_norm.weight`, `${s}/self_attn/q_norm`);
      k = rmsNorm(k, l.kNorm, `${p}.self_attn.k_norm.weight`, `${s}/self_attn/k_norm`);
    }
    // SmolLM3's NoPE blocks (HF no_rope_layers[L] = 0) and gpt2 apply no rotary.
    const rotates = !gpt2 && h.layerRope[L]!.rotate;
    const qr = rotates ? rotaryFor(L)(q, `${s}/self_attn`) : q;
    const kr = rotates ? rotaryFor(L)(k, `${s}/self_attn`) : k;
    if (withPast) {
      inputs.push(valueInfo(`past_key_values.${L}.key`, DataType.FLOAT, ["batch_size", KV, "past_sequence_length", D]));
      inputs.push(valueInfo(`past_key_values.${L}.value`, DataType.FLOAT, ["batch_size", KV, "past_sequence_length", D]));
    }
    outputs.push(valueInfo(`present.${L}.key`, DataType.FLOAT, ["batch_size", KV, "past_sequence_length + 1", D]));
    outputs.push(valueInfo(`present.${L}.value`, DataType.FLOAT, ["batch_size", KV, "past_sequence_length + 1", D]));
    const kAll = withPast
      ? b.op("Concat", [`past_key_values.${L}.key`, kr], `${s}/self_attn`, [attr.int("axis", -2)], `present.${L}.key`)
      : b.op("Identity", [kr], `${s}/self_attn`, [], `present.${L}.key`);
    const vAll = withPast
      ? b.op("Concat", [`past_key_values.${L}.value`, v], `${s}/self_attn`, [attr.int("axis", -2)], `present.${L}.value`)
      : b.op("Identity", [v], `${s}/self_attn`, [], `present.${L}.value`);
    // repeat_kv: [b, kv, T, D] -> [b, kv, group, T, D] -> [b, H, T, D]
    const repeat = (t: string) => {
      if (H === KV) return t;
      const tShape = b.op("Shape", [t], `${s}/self_attn`);
      const len = b.op("Gather", [tShape, b.i64("/model/Constant_2", [2], true)], `${s}/self_attn`, [attr.int("axis", 0)]);
      const kvC = b.i64(`/model/Constant_kv`, [KV]);
      const grpC = b.i64(`/model/Constant_group`, [H / KV]);
      const expanded = b.op("Expand", [b.op("Unsqueeze", [t, b.i64("/model/Constant_axes_2", [2])], `${s}/self_attn`), dims(batch, kvC, grpC, len, "/model/Constant_head_dim")], `${s}/self_attn`);
      return b.op("Reshape", [expanded, dims(batch, b.i64("/model/Constant_heads_all", [H]), len, "/model/Constant_head_dim")], `${s}/self_attn`);
    };
    const kRep = repeat(kAll);
    const vRep = repeat(vAll);
    const qk = b.op("MatMul", [qr, b.op("Transpose", [kRep], `${s}/self_attn`, [attr.ints("perm", [0, 1, 3, 2])])], `${s}/self_attn`);
    // GPT-2 divides by sqrt(head_dim), masks causally with Where, then adds the padding mask; llama multiplies by the scale and adds one 4-D mask.
    const scores = gpt2
      ? b.op("Add", [b.op("Where", [causal, b.op("Div", [qk, b.f32("/model/Constant_sqrt_d", [Math.sqrt(D)])], `${s}/attn`), b.f32("/model/Constant_min", [-3.4028234663852886e38])], `${s}/attn`), padAdditive], `${s}/attn`)
      : gemma
        ? (() => {
            const scaled = b.op("Mul", [qk, b.f32("/model/Constant_scaling", [h.queryScale])], `${s}/self_attn`);
            return b.op("Add", [h.attnSoftcap > 0 ? softcap(scaled, h.attnSoftcap, `${s}/self_attn`) : scaled, maskFor(L)], `${s}/self_attn`);
          })()
        : b.op("Add", [b.op("Mul", [qk, b.f32("/model/Constant_scale", [1 / Math.sqrt(D)])], `${s}/self_attn`), mask4d], `${s}/self_attn`);
    const probs = b.op("Softmax", [scores], `${s}/self_attn`, [attr.int("axis", -1)]);
    const ctx = b.op("Transpose", [b.op("MatMul", [probs, vRep], `${s}/self_attn`)], `${s}/self_attn`, [attr.ints("perm", [0, 2, 1, 3])]);
    const flat = b.op("Reshape", [ctx, dims(batch, seq, b.i64("/model/Constant_q_dim", [H * D]))], `${s}/self_attn`);
    let o = gpt2 ? linear(flat, l.wo, l.bo, `${p}.attn.c_proj.bias`, `${s}/attn/c_proj`) : linear(flat, l.wo, l.bo, `${p}.self_attn.o_proj.bias`, `${s}/self_attn/o_proj`);
    // Gemma's norm weights are stored with the 1 already added (what `1 + weight` folds to in the export).
    if (gemma) o = rmsNorm(o, l.postAttnNorm!, `${p}.post_attention_layernorm.weight`, `${s}/post_attention_layernorm`);
    const mid = b.op("Add", [x, o], s);
    let down: string;
    if (gpt2) {
      const f = norm(mid, l.ffnNorm, l.ffnNormB, `${p}.ln_2`, `${s}/ln_2`);
      const hidden = geluNew(linear(f, l.wUp, l.bUp, `${p}.mlp.c_fc.bias`, `${s}/mlp/c_fc`), `${s}/mlp/act`);
      down = linear(hidden, l.wDown, l.bDown, `${p}.mlp.c_proj.bias`, `${s}/mlp/c_proj`);
    } else if (phi3) {
      // gate_up_proj, then chunk(2): gate first, as llama.cpp's fused ffn_up.
      const f = rmsNorm(mid, l.ffnNorm, `${p}.post_attention_layernorm.weight`, `${s}/post_attention_layernorm`);
      const gateUp = linear(f, l.wUp, l.bUp, `${p}.mlp.gate_up_proj.bias`, `${s}/mlp/gate_up_proj`);
      const [gate, up] = [`${s}/mlp/Split_output_0`, `${s}/mlp/Split_output_1`];
      b.nodes.push(node("Split", [gateUp, b.i64("/model/Constant_split_gate_up", [h.nFf, h.nFf])], [gate, up], [attr.int("axis", -1)], { name: `${s}/mlp/Split` }));
      const act = b.op("Mul", [gate, b.op("Sigmoid", [gate], `${s}/mlp/activation_fn`)], `${s}/mlp/activation_fn`);
      down = linear(b.op("Mul", [up, act], `${s}/mlp`), l.wDown, l.bDown, `${p}.mlp.down_proj.bias`, `${s}/mlp/down_proj`);
    } else if (gemma) {
      const f = rmsNorm(mid, l.ffnNorm, `${p}.pre_feedforward_layernorm.weight`, `${s}/pre_feedforward_layernorm`);
      const gate = linear(f, l.wGate!, l.bGate, `${p}.mlp.gate_proj.bias`, `${s}/mlp/gate_proj`);
      const up = linear(f, l.wUp, l.bUp, `${p}.mlp.up_proj.bias`, `${s}/mlp/up_proj`);
      const mlp = linear(b.op("Mul", [geluNew(gate, `${s}/mlp/act_fn`), up], `${s}/mlp`), l.wDown, l.bDown, `${p}.mlp.down_proj.bias`, `${s}/mlp/down_proj`);
      down = rmsNorm(mlp, l.postFfnNorm!, `${p}.post_feedforward_layernorm.weight`, `${s}/post_feedforward_layernorm`);
    } else {
      const f = rmsNorm(mid, l.ffnNorm, `${p}.post_attention_layernorm.weight`, `${s}/post_attention_layernorm`);
      const gate = linear(f, l.wGate!, l.bGate, `${p}.mlp.gate_proj.bias`, `${s}/mlp/gate_proj`);
      const act = b.op("Mul", [gate, b.op("Sigmoid", [gate], `${s}/mlp/act_fn`)], `${s}/mlp/act_fn`);
      const up = linear(f, l.wUp, l.bUp, `${p}.mlp.up_proj.bias`, `${s}/mlp/up_proj`);
      down = linear(b.op("Mul", [act, up], `${s}/mlp`), l.wDown, l.bDown, `${p}.mlp.down_proj.bias`, `${s}/mlp/down_proj`);
    }
    x = b.op("Add", [mid, down], s);
  }
  const normed = gpt2 ? norm(x, g.outputNorm, g.outputNormB, "transformer.ln_f", "/transformer/ln_f") : rmsNorm(x, g.outputNorm, "model.norm.weight", "/model/norm");
  if (g.outputBias) throw new Error("an output bias is not laid out by this generator");
  if (h.finalSoftcap > 0) {
    softcap(b.op("MatMul", [normed, w.matmul(g.output)], "/lm_head"), h.finalSoftcap, "/model/final_softcap");
    b.nodes.at(-1)!.outputs[0] = "logits";
  } else b.op("MatMul", [normed, w.matmul(g.output)], "/lm_head", [], "logits");
  return { graph: graph({ name: withPast ? "with_past" : "no_past", nodes: b.nodes, initializers: b.constants, inputs: [], outputs }), inputs };
}

/**
 * onnxruntime's quantize_dynamic on `graph`: every MatMul whose B is a float initializer becomes
 * DynamicQuantizeLinear(A) -> MatMulInteger(A_q, B_q, A_zp, B_zp) -> Cast -> Mul(A_scale * B_scale),
 * B quantized to int8 with one symmetric scale (max |B| / 127) and zero point 0.
 */
export function quantizeDynamicInt8(graph: OnnxGraph): OnnxGraph {
  const floats = new Map(graph.initializers.filter((t) => t.dataType === DataType.FLOAT && t.dims.length === 2).map((t) => [t.name!, t]));
  const quantized = new Set<string>();
  const initializers: OnnxTensor[] = [];
  const nodes: OnnxNode[] = [];
  for (const n of graph.nodes) {
    const wName = n.inputs[1] ?? "";
    const weight = n.opType === "MatMul" ? floats.get(wName) : undefined;
    if (!weight) {
      nodes.push(n);
      continue;
    }
    if (!quantized.has(wName)) {
      quantized.add(wName);
      const raw = weight.rawData!;
      const f = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
      const scale = f.reduce((m, x) => Math.max(m, Math.abs(x)), 0) / 127 || 1;
      const q = Int8Array.from(f, (x) => Math.max(-127, Math.min(127, Math.round(x / scale))));
      initializers.push(tensorFromBytes(`${wName}_quantized`, DataType.INT8, weight.dims, new Uint8Array(q.buffer)));
      initializers.push(tensorFromFloat32(`${wName}_scale`, [], Float32Array.of(scale)));
      initializers.push(tensorFromBytes(`${wName}_zero_point`, DataType.INT8, [], new Uint8Array(1)));
    }
    const base = n.name ?? n.outputs[0]!;
    const [aq, as, azp] = ["_quantized", "_scale", "_zero_point"].map((x) => `${base}_input${x}`);
    nodes.push(node("DynamicQuantizeLinear", [n.inputs[0]!], [aq!, as!, azp!], [], { name: `${base}_QuantizeLinear` }));
    nodes.push(node("MatMulInteger", [aq!, `${wName}_quantized`, azp!, `${wName}_zero_point`], [`${base}_output_quantized`], [], { name: `${base}_quant` }));
    nodes.push(node("Cast", [`${base}_output_quantized`], [`${base}_output_quantized_cast`], [attr.int("to", DataType.FLOAT)], { name: `${base}_output_quantized_cast` }));
    nodes.push(node("Mul", [as!, `${wName}_scale`], [`${base}_scales_mul`], [], { name: `${base}_scales_mul` }));
    nodes.push(node("Mul", [`${base}_output_quantized_cast`, `${base}_scales_mul`], [...n.outputs], [], { name: `${base}_output_scale_mul` }));
  }
  return { ...graph, nodes, initializers: [...graph.initializers.filter((t) => !quantized.has(t.name!)), ...initializers] };
}

/** The export's files; returns the path of the ONNX graph written. */
export function writeOptimumExport(ggufPath: string, outDir: string, layout: OptimumLayout, options: { quantized?: boolean } = {}): string {
  const g = openLlamaGguf(ggufPath);
  const h = g.hparams;
  if (!["llama", "mistral3", "smollm3", "qwen2", "qwen3", "phi3", "gpt2", "gemma2", "gemma3"].includes(h.architecture)) {
    throw new Error(`${ggufPath}: this generator lays out llama, mistral3, smollm3, qwen2, qwen3, phi3, gemma2, gemma3 and gpt2, not ${h.architecture}`);
  }
  const fused = h.architecture === "gpt2" || h.architecture === "phi3";
  if (g.layers.some((l) => (l.wqkv !== null) !== fused)) throw new Error(`${ggufPath}: q/k/v are laid out fused for gpt2 and phi3 only, separate for the others`);
  const w = makeWeights(g);
  const withPast = decoderGraph(g, w, true);
  let decoder: OnnxGraph;
  if (layout === "transformers.js") {
    decoder = { ...withPast.graph, name: "main_graph", inputs: withPast.inputs, initializers: [...w.tensors, ...withPast.graph.initializers] };
  } else {
    const noPast = decoderGraph(g, w, false);
    const useCache = valueInfo("use_cache_branch", DataType.BOOL, [1]);
    const ifNode = node("If", ["use_cache_branch"], noPast.graph.outputs.map((o) => o.name!), [attr.graph("then_branch", withPast.graph), attr.graph("else_branch", noPast.graph)], { name: "optimum::if" });
    decoder = graph({ name: "merged", nodes: [ifNode], initializers: w.tensors, inputs: [...withPast.inputs, useCache], outputs: noPast.graph.outputs });
  }
  if (options.quantized) {
    if (layout !== "transformers.js") throw new Error("quantized fixtures are written in the transformers.js layout");
    decoder = quantizeDynamicInt8(decoder);
  }
  const onnxDir = layout === "transformers.js" ? join(outDir, "onnx") : outDir;
  mkdirSync(onnxDir, { recursive: true });
  const file = join(onnxDir, layout === "transformers.js" ? (options.quantized ? "model_quantized.onnx" : "model.onnx") : "decoder_model_merged.onnx");
  writeFileSync(file, encodeModel(model({ graph: decoder, opsets: { "": OPTIMUM_OPSET }, producerName: layout === "transformers.js" ? "pytorch" : "optimum-onnx", irVersion: 8 })));

  const spec = readTokenizerSpec(g.file);
  const tokenizer = ggufToHfTokenizer(spec);
  const config = {
    _name_or_path: h.name,
    architectures: [h.profile.hfClass],
    // Mistral Small 3.1's text model is HF "mistral" (MistralForCausalLM); GGUF calls it mistral3.
    model_type: h.architecture === "mistral3" ? "mistral" : h.architecture,
    hidden_size: h.nEmbd,
    intermediate_size: h.nFf,
    num_hidden_layers: h.nLayers,
    num_attention_heads: h.nHead,
    num_key_value_heads: h.nHeadKv,
    head_dim: h.headDim,
    ...(h.architecture === "smollm3" ? { no_rope_layers: h.ropeLayers.map((r) => (r ? 1 : 0)), no_rope_layer_interval: 4 } : {}),
    vocab_size: h.vocabSize,
    max_position_embeddings: h.contextLength,
    ...(h.profile.norm === "rms" ? { rms_norm_eps: h.normEps } : { layer_norm_epsilon: h.normEps, n_positions: h.contextLength }),
    rope_theta: h.ropeFreqBase,
    tie_word_embeddings: h.tiedEmbeddings,
    bos_token_id: spec.bosId,
    eos_token_id: spec.eosId,
    use_cache: true,
  };
  writeFileSync(join(outDir, "config.json"), JSON.stringify(config, null, 2));
  writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify(tokenizer.tokenizerJson));
  writeFileSync(join(outDir, "tokenizer_config.json"), JSON.stringify(tokenizer.tokenizerConfig, null, 2));
  return file;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const quantized = args.includes("--quantized");
  const [gguf, out, flag, value] = args.filter((a) => a !== "--quantized");
  if (!gguf || !out || (flag !== undefined && (flag !== "--layout" || (value !== "optimum-merged" && value !== "transformers.js")))) {
    console.error("usage: bun test/onnx/helpers/optimum-export.ts <model.gguf> <out-dir> [--layout optimum-merged|transformers.js] [--quantized]");
    process.exit(2);
  }
  console.log(writeOptimumExport(gguf, out, (value as OptimumLayout | undefined) ?? "optimum-merged", { quantized }));
}
