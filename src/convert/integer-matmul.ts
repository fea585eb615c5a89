/**
 * Dynamic int8 linear layers: the pattern onnxruntime's `quantize_dynamic` (QuantizationMode.IntegerOps,
 * per_channel=True, weight_type=QInt8; also what Optimum's ORTQuantizer dynamic int8 configs write)
 * puts in place of each MatMul, written by steerkit convert --weights int8-dynamic:
 *
 *   DynamicQuantizeLinear(x) -> x_quantized uint8, x_scale, x_zero_point   (one per input tensor,
 *                                                                           shared by q/k/v, gate/up)
 *   MatMulInteger(x_quantized, W_quantized int8 [K, N], x_zero_point, W_zero_point int8 [N] = 0) -> int32
 *   Cast(to float) -> Mul(·, Mul(x_scale, W_scale [N]))                     -> the layer's output
 *
 * Why: on x86 CPUs with VNNI/AMX, ORT's MatMulInteger (uint8 x int8) runs 1.29-1.37x faster than the
 * 8-bit MatMulNBits kernel (bench/matmul-kernels.ts). The price is accuracy: weights get one scale per
 * output column (not per 32-block as Q8_0 / MatMulNBits) and activations one uint8 scale/zero point
 * for the whole tensor (not per 32-block), so this is not a lossless repack of Q8_0 — Q8_0 sources are
 * dequantized and rounded again.
 *
 * Weight rounding as onnxruntime's quantizer does it for symmetric int8 (quant_utils: qmin/qmax
 * -127/127 when symmetric): scale = max|w| of the column / 127, q = round-half-to-even(w / scale)
 * clipped to [-127, 127] (numpy's round), zero point 0. A column of zeros gets scale 1 (ORT does the
 * same so the scale is never 0). Names follow its quantizer: `<weight>_quantized`, `<weight>_scale`,
 * `<weight>_zero_point`, `<input>_quantized` / `_scale` / `_zero_point` from `<input>_QuantizeLinear`,
 * `<node>_quant` (MatMulInteger), `<out>_output_quantized_cast`, `<node>_quant_scales_mul`,
 * `<node>_quant_output_scale_mul`.
 *
 * Written here (not with an npm package): nothing on npm writes ONNX quantized initializers.
 */
import type { GgufTensorInfo } from "../formats/gguf.ts";
import { attr, DataType, node, type OnnxNode } from "../formats/onnx/index.ts";
import { type LlamaGguf, readWeightF32 } from "./llama-gguf.ts";
import type { LazyInitializer } from "./llama-onnx-graph.ts";

export interface ColumnQuantized {
  /** Input features (rows of the stored matrix). */
  readonly k: number;
  /** Output features (columns). */
  readonly n: number;
  /** int8 [k][n]: the weight transposed, as MatMulInteger's B is laid out. */
  readonly q: Int8Array;
  /** float32 [n]: one scale per output column. */
  readonly scales: Float32Array;
}

/** numpy's round: half to even. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantize a row-major float matrix W [n out][k in] (GGUF's order) symmetrically to int8 with one
 * scale per output feature, transposed to [k][n] for `MatMulInteger(x, B)`.
 *
 * @example
 * ```ts
 * const c = quantizeColumns(new Float32Array([0.5, -1, 0.25, 2]), 2, 2); // rows [0.5, -1], [0.25, 2]
 * c.scales; // [1/127, 2/127]; c.q = [64, 16, -127, 127] (k-major: column 0 = 64, -127)
 * ```
 */
export function quantizeColumns(w: Float32Array, n: number, k: number): ColumnQuantized {
  if (w.length !== n * k) throw new RangeError(`matrix of ${w.length} values is not ${n} x ${k}`);
  const q = new Int8Array(k * n);
  const scales = new Float32Array(n);
  const f = Math.fround;
  for (let r = 0; r < n; r++) {
    let amax = 0;
    for (let i = r * k; i < (r + 1) * k; i++) amax = Math.max(amax, Math.abs(w[i]!));
    const scale = amax === 0 ? 1 : f(amax / 127);
    scales[r] = scale;
    for (let c = 0; c < k; c++) q[c * n + r] = Math.min(127, Math.max(-127, roundHalfEven(f(w[r * k + c]! / scale))));
  }
  return { k, n, q, scales };
}

/**
 * The float matrix (row-major [n][k], GGUF's order) a column-quantized weight stands for.
 *
 * @example
 * ```ts
 * const w = dequantizeColumns(quantizeColumns(x, n, k)); // x rounded to the per-column int8 grid
 * ```
 */
export function dequantizeColumns(c: ColumnQuantized): Float32Array {
  const out = new Float32Array(c.n * c.k);
  for (let r = 0; r < c.n; r++) for (let i = 0; i < c.k; i++) out[r * c.k + i] = c.q[i * c.n + r]! * c.scales[r]!;
  return out;
}

export interface IntegerMatMul {
  readonly nodes: readonly OnnxNode[];
  /** W_quantized, W_scale, W_zero_point, produced lazily (the matrix is quantized once). */
  readonly initializers: readonly LazyInitializer[];
}

/**
 * Writes the dynamic-int8 pattern for the linear layers of one graph; an input multiplied by several
 * matrices (q/k/v, gate/up) is quantized once, as onnxruntime's quantizer reuses it.
 *
 * @example
 * ```ts
 * const writer = integerMatMulWriter(g);
 * const mm = writer.matMul(layer.wq, { input: "x", output: "q", weightName: "model.layers.0.self_attn.q_proj.weight",
 *   nodeName: "/model/layers.0/self_attn/q_proj/MatMul" });
 * ```
 */
export function integerMatMulWriter(g: LlamaGguf) {
  const quantizedInputs = new Set<string>();
  return {
    matMul(t: GgufTensorInfo, o: { input: string; output: string; weightName: string; nodeName: string }): IntegerMatMul {
      if (t.dims.length !== 2) throw new RangeError(`tensor "${t.name}" is not a matrix (dims ${t.dims.join(" x ")})`);
      const [k, n] = t.dims as [number, number];
      const nodes: OnnxNode[] = [];
      const xq = `${o.input}_quantized`;
      const xs = `${o.input}_scale`;
      const xz = `${o.input}_zero_point`;
      if (!quantizedInputs.has(o.input)) {
        quantizedInputs.add(o.input);
        nodes.push(node("DynamicQuantizeLinear", [o.input], [xq, xs, xz], [], { name: `${o.input}_QuantizeLinear` }));
      }
      const wq = `${o.weightName}_quantized`;
      const ws = `${o.weightName}_scale`;
      const wz = `${o.weightName}_zero_point`;
      const mmName = `${o.nodeName}_quant`;
      const intOut = `${o.output}_output_quantized`;
      const floatOut = `${intOut}_cast_output`;
      const scalesOut = `${mmName}_scales_mul:0`;
      nodes.push(node("MatMulInteger", [xq, wq, xz, wz], [intOut], [], { name: mmName }));
      nodes.push(node("Cast", [intOut], [floatOut], [attr.int("to", DataType.FLOAT)], { name: `${intOut}_cast` }));
      nodes.push(node("Mul", [xs, ws], [scalesOut], [], { name: `${mmName}_scales_mul` }));
      nodes.push(node("Mul", [floatOut, scalesOut], [o.output], [], { name: `${mmName}_output_scale_mul` }));

      let pending: ColumnQuantized | null = null;
      const quantized = () => (pending ??= quantizeColumns(readWeightF32(g, t), n, k));
      const initializers: LazyInitializer[] = [
        { name: wq, dataType: DataType.INT8, dims: [k, n], byteLength: k * n, source: t, produce: () => new Uint8Array(quantized().q.buffer) },
        {
          name: ws,
          dataType: DataType.FLOAT,
          dims: [n],
          byteLength: n * 4,
          source: t,
          produce: () => {
            const s = quantized().scales;
            pending = null; // both halves written: let the matrix go
            return new Uint8Array(s.buffer, s.byteOffset, s.byteLength);
          },
        },
        { name: wz, dataType: DataType.INT8, dims: [n], byteLength: n, source: t, produce: () => new Uint8Array(n) },
      ];
      return { nodes, initializers };
    },
  };
}
