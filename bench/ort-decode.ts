/**
 * A plain ONNX Runtime decode loop over an exported model: no adapter, no hooks, the KV cache fed
 * back as it comes out. The benchmarks use it where they need ONNX Runtime alone — its per-operator
 * profile (`bench/equal-bits.ts --profile`) and session options the adapter does not expose
 * (`bench/ort-options.ts`) — so that what they time is the runtime, not Steerkit's plumbing.
 * Works on both export layouts (Steerkit/Optimum with position_ids; onnxruntime-genai's without).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ort } from "../src/adapters/onnx/ort.ts";

interface ExportConfig {
  readonly num_hidden_layers: number;
  readonly num_key_value_heads: number;
  readonly head_dim: number;
  readonly torch_dtype: string;
}

/** One session on `onnxDir/model.onnx`, decoding a fixed token sequence. */
export class PlainDecoder {
  private constructor(
    readonly session: ort.InferenceSession,
    private readonly config: ExportConfig,
  ) {}

  /**
   * @example
   * const d = await PlainDecoder.create("bench/models/x-onnx-int4-genai", { intraOpNumThreads: 2 });
   * const tokPerS = await d.decode([300, 301, 302], 32);
   * await d.release();
   */
  static async create(onnxDir: string, options: ort.InferenceSession.SessionOptions): Promise<PlainDecoder> {
    const config = JSON.parse(readFileSync(join(onnxDir, "config.json"), "utf8")) as ExportConfig;
    const session = await ort.InferenceSession.create(join(onnxDir, "model.onnx"), { interOpNumThreads: 1, logSeverityLevel: 3, ...options });
    return new PlainDecoder(session, config);
  }

  /** Feed `prompt`, then `steps` single tokens; returns decode tokens per second (the prompt excluded). */
  async decode(prompt: readonly number[], steps: number): Promise<number> {
    const { config, session } = this;
    const half = config.torch_dtype === "float16";
    const i64 = (v: readonly number[], dims: number[]) => new ort.Tensor("int64", BigInt64Array.from(v, BigInt), dims);
    let past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < config.num_hidden_layers; l++) {
      for (const kind of ["key", "value"]) {
        const dims = [1, config.num_key_value_heads, 0, config.head_dim];
        past[`past_key_values.${l}.${kind}`] = half ? new ort.Tensor("float16", new Uint16Array(0), dims) : new ort.Tensor("float32", new Float32Array(0), dims);
      }
    }
    const withPositions = session.inputNames.includes("position_ids");
    let length = 0;
    const feed = async (ids: readonly number[]) => {
      const total = length + ids.length;
      const out = await session.run({
        input_ids: i64(ids, [1, ids.length]),
        attention_mask: i64(new Array<number>(total).fill(1), [1, total]),
        ...(withPositions ? { position_ids: i64(ids.map((_, i) => length + i), [1, ids.length]) } : {}),
        ...past,
      });
      length = total;
      past = {};
      for (const [name, t] of Object.entries(out)) if (name.startsWith("present.")) past[name.replace("present.", "past_key_values.")] = t;
    };
    await feed(prompt);
    const t0 = performance.now();
    for (let i = 0; i < steps; i++) await feed([400 + (i % 50)]);
    return (steps * 1000) / (performance.now() - t0);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
