/**
 * Build a random-weight GPT-style decoder with an Optimum KV layout from plain ONNX ops, using the
 * project's codec. Tests use it for fp16 and bad-input cases; the benchmark for a realistic width.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  attr,
  DataType,
  floatToHalf,
  graph,
  model,
  node,
  saveModel,
  tensorFromFloat16Bits,
  tensorFromFloat32,
  tensorFromInt64,
  valueInfo,
  type OnnxModel,
  type OnnxNode,
  type OnnxTensor,
} from "../../../src/formats/onnx/index.ts";

export interface DecoderSpec {
  dModel: number;
  nLayers: number;
  nHeads: number;
  vocab: number;
  dFF?: number;
  fp16?: boolean;
  seed?: number;
  /** Leave out the KV cache (an encoder-like graph). */
  noCache?: boolean;
  /** Leave out the residual Adds (a graph with no residual chain). */
  noResidual?: boolean;
  opset?: number;
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return ((s >>> 0) / 4294967296) * 2 - 1;
  };
}

export function buildDecoder(spec: DecoderSpec): OnnxModel {
  const { dModel: d, nLayers, nHeads, vocab } = spec;
  const dFF = spec.dFF ?? 4 * d;
  const hd = d / nHeads;
  const rand = rng(spec.seed ?? 1);
  const elem = spec.fp16 ? DataType.FLOAT16 : DataType.FLOAT;
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [];
  const weight = (name: string, dims: number[], scale: number, fill?: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n);
    for (let i = 0; i < n; i++) f[i] = fill ?? rand() * scale;
    inits.push(spec.fp16 ? tensorFromFloat16Bits(name, dims, Uint16Array.from(f, floatToHalf)) : tensorFromFloat32(name, dims, f));
    return name;
  };
  const i64 = (name: string, v: number[], dims = [v.length]) => {
    inits.push(tensorFromInt64(name, dims, v));
    return name;
  };
  const scalar = (name: string, v: number) => {
    inits.push(spec.fp16 ? tensorFromFloat16Bits(name, [], Uint16Array.of(floatToHalf(v))) : tensorFromFloat32(name, [], Float32Array.of(v)));
    return name;
  };
  const add = (n: OnnxNode) => nodes.push(n);

  i64("c0", [0], []);
  i64("c1", [1], []);
  i64("axis2", [2]);
  i64("qkv_shape", [0, 0, nHeads, hd]);
  i64("merge_shape", [0, 0, d]);
  scalar("scale", 1 / Math.sqrt(hd));
  scalar("zero", 0);
  scalar("neg", spec.fp16 ? -65504 : -1e9);

  add(node("Gather", [weight("wte", [vocab, d], 0.5), "input_ids"], ["tok_emb"], [attr.int("axis", 0)]));
  add(node("Gather", [weight("wpe", [4096, d], 0.1), "position_ids"], ["pos_emb"], [attr.int("axis", 0)]));
  add(node("Add", ["tok_emb", "pos_emb"], ["h.pre"]));

  if (!spec.noCache) {
    // Causal mask [S, T]: key j is visible to query i when j <= past + i.
    add(node("Shape", ["input_ids"], ["ids_shape"]));
    add(node("Gather", ["ids_shape", "c1"], ["S"], [attr.int("axis", 0)]));
    add(node("Shape", ["attention_mask"], ["mask_shape"]));
    add(node("Gather", ["mask_shape", "c1"], ["T"], [attr.int("axis", 0)]));
    add(node("Sub", ["T", "S"], ["P"]));
    add(node("Range", ["P", "T", "c1"], ["rows"]));
    add(node("Unsqueeze", ["rows", "c1_axes"], ["rows_col"]));
    i64("c1_axes", [1]);
    add(node("Range", ["c0", "T", "c1"], ["cols"]));
    add(node("LessOrEqual", ["cols", "rows_col"], ["visible"]));
    add(node("Where", ["visible", "zero", "neg"], ["causal"]));
  }

  let h = "h.pre";
  for (let l = 0; l < nLayers; l++) {
    const p = `l${l}`;
    add(node("LayerNormalization", [h, weight(`${p}.ln1.g`, [d], 0, 1), weight(`${p}.ln1.b`, [d], 0, 0)], [`${p}.x1`], [attr.int("axis", -1), attr.float("epsilon", 1e-5)]));
    for (const w of ["q", "k", "v"]) {
      add(node("MatMul", [`${p}.x1`, weight(`${p}.w${w}`, [d, d], 1 / Math.sqrt(d))], [`${p}.${w}0`]));
      add(node("Reshape", [`${p}.${w}0`, "qkv_shape"], [`${p}.${w}1`]));
      add(node("Transpose", [`${p}.${w}1`], [`${p}.${w}`], [attr.ints("perm", [0, 2, 1, 3])]));
    }
    let k = `${p}.k`;
    let v = `${p}.v`;
    if (!spec.noCache) {
      add(node("Concat", [`past_key_values.${l}.key`, k], [`present.${l}.key`], [attr.int("axis", 2)]));
      add(node("Concat", [`past_key_values.${l}.value`, v], [`present.${l}.value`], [attr.int("axis", 2)]));
      k = `present.${l}.key`;
      v = `present.${l}.value`;
    }
    add(node("Transpose", [k], [`${p}.kt`], [attr.ints("perm", [0, 1, 3, 2])]));
    add(node("MatMul", [`${p}.q`, `${p}.kt`], [`${p}.s0`]));
    add(node("Mul", [`${p}.s0`, "scale"], [`${p}.s1`]));
    let scores = `${p}.s1`;
    if (!spec.noCache) {
      add(node("Add", [`${p}.s1`, "causal"], [`${p}.s2`]));
      scores = `${p}.s2`;
    }
    add(node("Softmax", [scores], [`${p}.a`], [attr.int("axis", -1)]));
    add(node("MatMul", [`${p}.a`, v], [`${p}.o0`]));
    add(node("Transpose", [`${p}.o0`], [`${p}.o1`], [attr.ints("perm", [0, 2, 1, 3])]));
    add(node("Reshape", [`${p}.o1`, "merge_shape"], [`${p}.o2`]));
    add(node("MatMul", [`${p}.o2`, weight(`${p}.wo`, [d, d], 1 / Math.sqrt(d))], [`${p}.attn`]));
    const mid = spec.noResidual ? `${p}.attn` : `${p}.mid`;
    if (!spec.noResidual) add(node("Add", [h, `${p}.attn`], [mid]));
    add(node("LayerNormalization", [mid, weight(`${p}.ln2.g`, [d], 0, 1), weight(`${p}.ln2.b`, [d], 0, 0)], [`${p}.x2`], [attr.int("axis", -1), attr.float("epsilon", 1e-5)]));
    add(node("MatMul", [`${p}.x2`, weight(`${p}.w1`, [d, dFF], 1 / Math.sqrt(d))], [`${p}.f0`]));
    add(node("Relu", [`${p}.f0`], [`${p}.f1`]));
    add(node("MatMul", [`${p}.f1`, weight(`${p}.w2`, [dFF, d], 1 / Math.sqrt(dFF))], [`${p}.mlp`]));
    const post = spec.noResidual ? `${p}.mlp` : `${p}.post`;
    if (!spec.noResidual) add(node("Add", [mid, `${p}.mlp`], [post]));
    h = post;
  }
  add(node("LayerNormalization", [h, weight("lnf.g", [d], 0, 1), weight("lnf.b", [d], 0, 0)], ["xf"], [attr.int("axis", -1), attr.float("epsilon", 1e-5)]));
  add(node("MatMul", ["xf", weight("lm_head", [d, vocab], 1 / Math.sqrt(d))], ["logits"]));

  const inputs = [valueInfo("input_ids", DataType.INT64, ["batch", "seq"]), valueInfo("position_ids", DataType.INT64, ["batch", "seq"])];
  const outputs = [valueInfo("logits", elem, ["batch", "seq", vocab])];
  if (!spec.noCache) {
    inputs.push(valueInfo("attention_mask", DataType.INT64, ["batch", "total"]));
    for (let l = 0; l < nLayers; l++) {
      for (const kv of ["key", "value"]) {
        inputs.push(valueInfo(`past_key_values.${l}.${kv}`, elem, ["batch", nHeads, "past", hd]));
        outputs.push(valueInfo(`present.${l}.${kv}`, elem, ["batch", nHeads, "total", hd]));
      }
    }
  }
  return model({ graph: graph({ name: "tiny-decoder", nodes, initializers: inits, inputs, outputs }), opsets: { "": spec.opset ?? 17 } });
}

/** Write `model.onnx` (+ `model.onnx.data` when asked) and a config.json into `dir`. */
export function writeDecoderDir(dir: string, spec: DecoderSpec, options: { externalData?: boolean } = {}): string {
  mkdirSync(dir, { recursive: true });
  const m = buildDecoder(spec);
  saveModel(join(dir, "model.onnx"), m, options.externalData ? { externalDataFile: "model.onnx.data" } : {});
  writeFileSync(
    join(dir, "config.json"),
    JSON.stringify({
      model_type: "tiny-gpt",
      hidden_size: spec.dModel,
      num_hidden_layers: spec.nLayers,
      num_attention_heads: spec.nHeads,
      vocab_size: spec.vocab,
      max_position_embeddings: 4096,
      bos_token_id: 1,
      eos_token_id: 2,
    }),
  );
  return dir;
}

/**
 * A llama-style decoder laid out the way onnxruntime-genai's model builder writes one:
 * SimplifiedLayerNormalization on the embeddings, then per layer GroupQueryAttention and a SiLU MLP
 * on 4-bit MatMulNBits weights, with every residual sum inside SkipSimplifiedLayerNormalization
 * (output 3), the last one inside the final norm. No rotary (do_rotary 0) to keep it small.
 */
export function buildGenaiStyleDecoder(spec: { dModel: number; nLayers: number; nHeads: number; kvHeads: number; vocab: number; dFF: number; seed?: number }): OnnxModel {
  const { dModel: d, nLayers, nHeads, kvHeads, vocab, dFF } = spec;
  const hd = d / nHeads;
  const rand = rng(spec.seed ?? 5);
  const nodes: OnnxNode[] = [];
  const inits: OnnxTensor[] = [];
  const ms = { domain: "com.microsoft" };
  const f32 = (name: string, dims: number[], scale: number, fill?: number) => {
    const n = dims.reduce((a, b) => a * b, 1);
    inits.push(tensorFromFloat32(name, dims, Float32Array.from({ length: n }, () => fill ?? rand() * scale)));
    return name;
  };
  /** A 4-bit block-quantized [K, N] weight for MatMulNBits: B [N, K/32, 16] uint8 + scales [N * K/32]. */
  const nbits = (x: string, name: string, K: number, N: number, out: string) => {
    const blocks = K / 32;
    const packed = Uint8Array.from({ length: N * blocks * 16 }, () => Math.floor(((rand() + 1) / 2) * 256) & 0xff);
    inits.push({ name: `${name}.qweight`, dataType: DataType.UINT8, dims: [N, blocks, 16], rawData: packed, externalData: [], extra: [] });
    f32(`${name}.scales`, [N * blocks], 0, 1 / (8 * Math.sqrt(K)));
    nodes.push(
      node("MatMulNBits", [x, `${name}.qweight`, `${name}.scales`], [out], [attr.int("K", K), attr.int("N", N), attr.int("bits", 4), attr.int("block_size", 32)], ms),
    );
  };
  const eps = attr.float("epsilon", 1e-6);
  inits.push(tensorFromInt64("one_i64", [], [1]), tensorFromInt64("axes1", [1], [1]));

  nodes.push(node("ReduceSum", ["attention_mask", "axes1"], ["mask_sum"], [attr.int("keepdims", 0)]));
  nodes.push(node("Sub", ["mask_sum", "one_i64"], ["seqlens_i64"]));
  nodes.push(node("Cast", ["seqlens_i64"], ["seqlens_k"], [attr.int("to", DataType.INT32)]));
  nodes.push(node("Shape", ["attention_mask"], ["mask_shape"]));
  nodes.push(node("Gather", ["mask_shape", "one_i64"], ["total_i64"], [attr.int("axis", 0)]));
  nodes.push(node("Cast", ["total_i64"], ["total_len"], [attr.int("to", DataType.INT32)]));

  nodes.push(node("Gather", [f32("embed", [vocab, d], 0.5), "input_ids"], ["embeds"], [attr.int("axis", 0)]));
  nodes.push(node("SimplifiedLayerNormalization", ["embeds", f32("l0.ln1", [d], 0, 1)], ["l0.x1"], [attr.int("axis", -1), eps]));
  let stream = "embeds";
  for (let l = 0; l < nLayers; l++) {
    const p = `l${l}`;
    nbits(`${p}.x1`, `${p}.q`, d, d, `${p}.q`);
    nbits(`${p}.x1`, `${p}.k`, d, kvHeads * hd, `${p}.k`);
    nbits(`${p}.x1`, `${p}.v`, d, kvHeads * hd, `${p}.v`);
    nodes.push(
      node(
        "GroupQueryAttention",
        [`${p}.q`, `${p}.k`, `${p}.v`, `past_key_values.${l}.key`, `past_key_values.${l}.value`, "seqlens_k", "total_len"],
        [`${p}.attn`, `present.${l}.key`, `present.${l}.value`],
        [attr.int("num_heads", nHeads), attr.int("kv_num_heads", kvHeads)],
        ms,
      ),
    );
    nbits(`${p}.attn`, `${p}.o`, d, d, `${p}.o`);
    nodes.push(node("SkipSimplifiedLayerNormalization", [`${p}.o`, stream, f32(`${p}.ln2`, [d], 0, 1)], [`${p}.x2`, "", "", `${p}.mid`], [eps], ms));
    nbits(`${p}.x2`, `${p}.gate`, d, dFF, `${p}.gate`);
    nbits(`${p}.x2`, `${p}.up`, d, dFF, `${p}.up`);
    nodes.push(node("Sigmoid", [`${p}.gate`], [`${p}.sig`]), node("Mul", [`${p}.gate`, `${p}.sig`], [`${p}.silu`]));
    nodes.push(node("Mul", [`${p}.silu`, `${p}.up`], [`${p}.h`]));
    nbits(`${p}.h`, `${p}.down`, dFF, d, `${p}.down`);
    const last = l === nLayers - 1;
    const next = last ? "final" : `l${l + 1}`;
    nodes.push(
      node(
        "SkipSimplifiedLayerNormalization",
        [`${p}.down`, `${p}.mid`, f32(`${next}.ln1`, [d], 0, 1)],
        last ? [`${next}.x1`] : [`${next}.x1`, "", "", `${p}.post`],
        [eps],
        ms,
      ),
    );
    stream = `${p}.post`;
  }
  nodes.push(node("MatMul", ["final.x1", f32("lm_head", [d, vocab], 1 / Math.sqrt(d))], ["logits"]));
  const inputs = [valueInfo("input_ids", DataType.INT64, ["batch", "seq"]), valueInfo("attention_mask", DataType.INT64, ["batch", "total"])];
  const outputs = [valueInfo("logits", DataType.FLOAT, ["batch", "seq", vocab])];
  for (let l = 0; l < nLayers; l++) {
    for (const kv of ["key", "value"]) {
      inputs.push(valueInfo(`past_key_values.${l}.${kv}`, DataType.FLOAT, ["batch", kvHeads, "past", hd]));
      outputs.push(valueInfo(`present.${l}.${kv}`, DataType.FLOAT, ["batch", kvHeads, "total", hd]));
    }
  }
  return model({ graph: graph({ name: "genai-style", nodes, initializers: inits, inputs, outputs }), opsets: { "": 21, "com.microsoft": 1 } });
}
