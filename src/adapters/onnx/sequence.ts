/**
 * A sequence: its KV cache (one KvCache per past input), its hook plan and its affine inputs (fixed
 * per request, built once; a position-limited edit's row mask depends on the step's rows, so it is
 * built per step).
 * A step's new KV rows are appended only after the whole pass succeeded, so a hook error leaves
 * the sequence as it was before the step.
 */
import type { AffineEdit, ResidualHooks, Sequence } from "../../core/backend.ts";
import { checkAffineEdit, checkPrefill } from "../../core/backend-kit.ts";
import { inPositions } from "../../core/points.ts";
import { SteerkitError } from "../../core/errors.ts";
import { tensor as makeTensor, type Tensor } from "../../core/tensor.ts";
import { DataType } from "../../formats/onnx/index.ts";
import { float32ToHalfBits, halfBitsToFloat32 } from "../../formats/half.ts";
import type { OnnxRuntimeModel, PlanLease, RuntimePlan } from "./model.ts";
import { KvCache } from "./kv.ts";
import { float16Tensor, halfBits, ort, type OrtTensor } from "./ort.ts";
import type { PlanSpec } from "./plan.ts";

export class OnnxSequence implements Sequence {
  private readonly caches: KvCache[];
  private tokens = 0;
  private freed = false;
  private plan: RuntimePlan | null = null;
  private lease: PlanLease | null = null;
  private readonly spec: PlanSpec;
  private steerFeeds: Record<string, OrtTensor> | null = null;
  private readonly logits: Float32Array;
  private busy = false;

  constructor(
    readonly id: number,
    private readonly model: OnnxRuntimeModel,
    private readonly hooks: ResidualHooks | null,
    private readonly onFree: () => void,
  ) {
    // Before any graph sees them: a NaN or a misshapen edit is the plugin's fault (PLUGIN_FAILED),
    // not NaN logits or an onnxruntime size error later.
    for (const edit of hooks?.affine.values() ?? []) checkAffineEdit(edit, model.info.dModel, `sequence ${id} of ${model.info.name}`);
    this.spec = model.planSpec(hooks);
    this.caches = model.io.kv.entries.map((e) => new KvCache(e, model.info.contextLength));
    this.logits = new Float32Array(model.info.vocabSize);
  }

  get length(): number {
    return this.tokens;
  }

  decode(token: number): Promise<Float32Array> {
    return this.prefill([token]);
  }

  async prefill(tokens: ArrayLike<number>): Promise<Float32Array> {
    if (this.freed) throw new Error(`sequence ${this.id} was freed`);
    if (this.busy) throw new Error(`sequence ${this.id} is already evaluating; await the previous call`);
    const n = tokens.length;
    const { info, io } = this.model;
    checkPrefill(tokens, { subject: `sequence ${this.id} of ${info.name}`, cached: this.tokens, contextLength: info.contextLength, vocabSize: info.vocabSize });
    this.busy = true;
    try {
      this.lease ??= this.model.acquirePlan(this.spec);
      this.plan ??= await this.lease.plan;
      const plan = this.plan;
      const past = this.tokens;
      const feeds: Record<string, OrtTensor> = {};
      feeds[io.inputIds.name] = intTensor(io.inputIds.type, n, (i) => tokens[i]!);
      if (io.positionIds) feeds[io.positionIds.name] = intTensor(io.positionIds.type, n, (i) => past + i);
      if (io.attentionMask) feeds[io.attentionMask.name] = intTensor(io.attentionMask.type, past + n, () => 1);
      io.kv.entries.forEach((e, i) => {
        const { data, dims } = this.caches[i]!.past();
        feeds[e.input] = data instanceof Float32Array ? new ort.Tensor("float32", data, dims) : float16Tensor(data, dims);
      });
      Object.assign(feeds, this.steer(plan), this.masks(plan, past, n));

      const results: Record<string, OrtTensor> = {};
      const positions = Array.from({ length: n }, (_, i) => past + i);
      const tokenIds = Array.from(tokens);
      const hooks = this.hooks;
      for (const seg of plan.segments) {
        const out = await runSegment(seg, feeds);
        Object.assign(results, out);
        if (seg.cut && hooks) {
          const x = toResidual(out[seg.cut.tensor]!, n, info.dModel);
          const y = hooks.run(seg.cut.point, x, positions, tokenIds);
          if (hooks.error) throw hooks.error;
          if (y.data.length !== n * info.dModel) {
            throw new RangeError(`hook at ${seg.cut.point.site}.${seg.cut.point.layer} returned ${y.data.length} values, expected ${n} x ${info.dModel}`);
          }
          feeds[seg.cut.tensor] = fromResidual(y, n, info.dModel, io.hiddenElemType);
        }
      }
      if (hooks) {
        for (const r of plan.reads) {
          hooks.run(r.point, toResidual(results[r.tensor]!, n, info.dModel), positions, tokenIds);
          if (hooks.error) throw hooks.error;
        }
      }
      io.kv.entries.forEach((e, i) => {
        const rows = results[io.newKvRows.get(e.output)!]!;
        this.caches[i]!.append(rows.type === "float16" ? halfBits(rows) : (rows.data as Float32Array), n);
      });
      this.tokens += n;
      lastRow(results[io.logits]!, info.vocabSize, this.logits);
      return this.logits;
    } finally {
      this.busy = false;
    }
  }

  /** Affine inputs of this request, built once (zeros where an edit has no bias). */
  private steer(plan: RuntimePlan): Record<string, OrtTensor> {
    if (this.steerFeeds) return this.steerFeeds;
    const feeds: Record<string, OrtTensor> = {};
    const d = this.model.info.dModel;
    for (const [name, inputs] of plan.steer) {
      const edit: AffineEdit | undefined = this.hooks?.affine.get(name);
      feeds[inputs.c] = new ort.Tensor("float32", edit?.c ? Float32Array.from(edit.c) : new Float32Array(d), [d]);
      if (inputs.U && inputs.V && edit && edit.rank > 0) {
        feeds[inputs.U] = new ort.Tensor("float32", Float32Array.from(edit.U!), [d, edit.rank]);
        feeds[inputs.V] = new ort.Tensor("float32", Float32Array.from(edit.V!), [edit.rank, d]);
      }
    }
    this.steerFeeds = feeds;
    return feeds;
  }

  /** Row masks of this step's rows for position-limited edits: 1 where the row's position is in range. */
  private masks(plan: RuntimePlan, past: number, n: number): Record<string, OrtTensor> {
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, inputs] of plan.steer) {
      if (!inputs.mask) continue;
      const range = this.hooks?.affine.get(name)?.positions ?? null;
      const mask = new Float32Array(n);
      for (let i = 0; i < n; i++) mask[i] = inPositions(range, past + i) ? 1 : 0;
      feeds[inputs.mask] = new ort.Tensor("float32", mask, [1, n, 1]);
    }
    return feeds;
  }

  reset(): void {
    if (this.freed) throw new Error(`sequence ${this.id} was freed`);
    for (const c of this.caches) c.reset();
    this.tokens = 0;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.caches.length = 0;
    this.lease?.release();
    this.onFree();
  }
}

/**
 * Run one plan segment on the feeds it takes (from `feeds`, which may hold more). onnxruntime's own
 * errors (a damaged graph's bad axis, shape or type at run time) reach the caller as a
 * SteerkitError, like every other backend failure.
 * @example
 * ```ts
 * for (const seg of plan.segments) Object.assign(results, await runSegment(seg, feeds));
 * ```
 */
export async function runSegment(seg: RuntimePlan["segments"][number], feeds: Readonly<Record<string, OrtTensor>>): Promise<Record<string, OrtTensor>> {
  const segFeeds: Record<string, OrtTensor> = {};
  for (const name of seg.inputs) segFeeds[name] = feeds[name]!;
  try {
    return await seg.session.run(segFeeds);
  } catch (e) {
    throw new SteerkitError("BACKEND_FAILED", `onnxruntime failed running the model: ${(e as Error)?.message ?? String(e)}`, { cause: e });
  }
}

function intTensor(type: "int32" | "int64", n: number, value: (i: number) => number): OrtTensor {
  if (type === "int64") {
    const a = new BigInt64Array(n);
    for (let i = 0; i < n; i++) a[i] = BigInt(value(i));
    return new ort.Tensor("int64", a, [1, n]);
  }
  const a = new Int32Array(n);
  for (let i = 0; i < n; i++) a[i] = value(i);
  return new ort.Tensor("int32", a, [1, n]);
}

/** A `[rows, dModel]` float32 view of a `[1, rows, dModel]` residual (converting float16). */
function toResidual(t: OrtTensor, rows: number, d: number): Tensor {
  if (t.type === "float32") return makeTensor(t.data as Float32Array, [rows, d]);
  return makeTensor(halfBitsToFloat32(halfBits(t)), [rows, d]);
}

function fromResidual(x: Tensor, rows: number, d: number, elemType: number): OrtTensor {
  if (elemType === DataType.FLOAT) return new ort.Tensor("float32", x.data, [1, rows, d]);
  return float16Tensor(float32ToHalfBits(x.data), [1, rows, d]);
}

/** The last position's logits of a `[1, seq, vocab]` (or `[1, vocab]`) output, as float32. */
function lastRow(t: OrtTensor, vocab: number, out: Float32Array): void {
  if (t.type === "float32") {
    const data = t.data as Float32Array;
    out.set(data.subarray(data.length - vocab));
  } else {
    const bits = halfBits(t);
    halfBitsToFloat32(bits.subarray(bits.length - vocab), out);
  }
}
