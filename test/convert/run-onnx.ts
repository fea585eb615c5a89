/**
 * Test helper: run a converted decoder directly in onnxruntime-node (no adapter), step by step
 * with the KV cache in the Optimum layout, the way any ONNX Runtime user would.
 */
import { halfToFloat } from "../../src/formats/half.ts";
import { ort } from "../../src/adapters/onnx/ort.ts";

export interface DecoderShape {
  nLayers: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  float16?: boolean;
}

const i64 = (values: readonly number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(values, (v) => BigInt(v)), dims);

/** Logits of one run as float32 (converting float16 bits). */
export function logitsOf(t: ort.Tensor): Float32Array {
  if (t.type === "float16") return Float32Array.from(t.data as Uint16Array, (b) => halfToFloat(b));
  return t.data as Float32Array;
}

export class OnnxDecoder {
  private past: Record<string, ort.Tensor> = {};
  length = 0;

  private constructor(
    readonly session: ort.InferenceSession,
    readonly shape: DecoderShape,
  ) {
    this.reset();
  }

  static async open(modelPath: string, shape: DecoderShape): Promise<OnnxDecoder> {
    return new OnnxDecoder(await ort.InferenceSession.create(modelPath), shape);
  }

  reset(): void {
    const s = this.shape;
    for (let i = 0; i < s.nLayers; i++) {
      for (const kind of ["key", "value"]) {
        this.past[`past_key_values.${i}.${kind}`] = s.float16
          ? new ort.Tensor("float16", new Uint16Array(0), [1, s.nKvHeads, 0, s.headDim])
          : new ort.Tensor("float32", new Float32Array(0), [1, s.nKvHeads, 0, s.headDim]);
      }
    }
    this.length = 0;
  }

  /** Feed `tokens` after the cached ones; returns the logits of every fed position, [tokens * vocab]. */
  async feed(tokens: readonly number[]): Promise<Float32Array> {
    const total = this.length + tokens.length;
    const out = await this.session.run({
      input_ids: i64(tokens, [1, tokens.length]),
      attention_mask: i64(new Array(total).fill(1), [1, total]),
      position_ids: i64(tokens.map((_, i) => this.length + i), [1, tokens.length]),
      ...this.past,
    });
    for (let i = 0; i < this.shape.nLayers; i++) {
      for (const kind of ["key", "value"]) this.past[`past_key_values.${i}.${kind}`] = out[`present.${i}.${kind}`]!;
    }
    this.length = total;
    return logitsOf(out.logits!);
  }

  /** Logits of the last fed token. */
  async last(tokens: readonly number[]): Promise<Float32Array> {
    const all = await this.feed(tokens);
    return all.slice(all.length - this.shape.vocabSize);
  }
}
