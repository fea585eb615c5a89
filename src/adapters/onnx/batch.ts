/**
 * Batched decoding on ONNX Runtime: the decode steps of every live sequence run as one
 * `session.run` with batch B, each row with its own positions, attention mask and steering.
 *
 * KV layout: one persistent buffer per KV input, `[sequences, kv_heads, width, head_dim]`, row r
 * holding sequence r's cache left-aligned (`[0, length_r)`, the rest padding). A pass feeds rows
 * `[0, B)` of it as `past` (a zero-copy prefix: live sequences are kept in rows `0..B-1`), with
 * `attention_mask` 1 over each row's own `[0, length_r)` and over the pass's new tokens, and
 * `position_ids` `length_r + i`; the graph appends the new tokens at index `width` of every row, and
 * after the pass each row's new KV rows (the `Slice` outputs of outputNewKvRows, a few KiB) are
 * copied to `[length_r, length_r + n)` of its row. So a step copies only the new rows, never a
 * sequence's whole cache (the single-sequence path copies its cache once per step: KvCache). The
 * price is attention over `width` keys for every row, `width` being the longest row rounded up to
 * WIDTH_STEP; masked keys weigh exactly 0. A row's padding is never read, so a failed call rolls
 * back by not advancing `length_r`, and `reset` is `length_r = 0`.
 *
 * Which exports: the mask must be honoured per row with positions taken from `position_ids` (the
 * graph's causal mask is by cache index, which padding shifts; keys are rotated at their own
 * positions, so their slot does not matter). onnxruntime-genai's GroupQueryAttention reads each
 * row's past length from the mask's sum (`seqlens_k`) and writes its new KV rows right after it,
 * which this left-aligned layout is; outputNewKvRows (kv.ts) gathers them there. `batchRefusal`
 * checks all that statically and by a probe run; other fused attention ops, the legacy `past_N`
 * layout and sliding windows (masks by cache index, which padding shifts) are refused by name, and
 * their sequences still work one per `session.run` (`createSequence`).
 *
 * Steering per row: a pass runs one plan, built for the union of the live sequences' hook layouts
 * (plan.ts, `batched`): affine inputs carry one edit per row (zeros and a zero row mask for rows
 * without one), a JS hook of any sequence cuts the graph for all, and at a cut each sequence's chain
 * runs over a view of its own rows (its positions, its tokens); rows without a hook there pass
 * through. Read-only points run after the pass, in forward order, as on the single path.
 *
 * Scheduling: a step starts when every live sequence has a call waiting (or `gatherMs` after the
 * first call). It runs one decode pass for all one-token calls (sequences waiting on something else
 * ride along as rows whose results are dropped), then the next chunk (`promptChunk` tokens) of each
 * longer call (a prompt) as its own pass of batch 1, against its row of the same buffer. A hook error, a freed sequence or a full context
 * fails only that sequence's call; an onnxruntime error fails the calls of that pass.
 */
import type { Capability, ChatMessage, Model, ModelInfo, ResidualHooks, Sequence, SequenceOptions, TokenizeOptions, BatchOptions as CoreBatchOptions } from "../../core/backend.ts";
import { checkAffineEdit, checkPrefill } from "../../core/backend-kit.ts";
import { BatchedModelView } from "../../core/batched-view.ts";
import { SteerkitError } from "../../core/errors.ts";
import { inPositions } from "../../core/points.ts";
import { pointIndex, pointName, type HookPoint } from "../../core/sites.ts";
import { tensor as makeTensor } from "../../core/tensor.ts";
import { DataType } from "../../formats/onnx/index.ts";
import { float32ToHalfBits, halfBitsToFloat32 } from "../../formats/half.ts";
import type { OnnxRuntimeModel, PlanLease, RuntimePlan } from "./model.ts";
import { float16Tensor, halfBits, ort, type OrtTensor } from "./ort.ts";
import type { AffineSpec, PlanSpec } from "./plan.ts";
import { runSegment } from "./sequence.ts";

export interface OnnxBatchOptions extends CoreBatchOptions {
  /** Sequences alive at once (rows of the batched KV buffer), 1..256. */
  readonly sequences: number;
  /**
   * How long a step waits for live sequences that have not asked for their next token yet
   * (default 2 ms). A step starts at once when every live sequence is waiting.
   */
  readonly gatherMs?: number;
  /**
   * Most prompt tokens of one sequence per step (default 64): a long prompt goes in over several
   * steps, each after the decode pass of the others, so it does not stall them.
   */
  readonly promptChunk?: number;
}

/** The KV buffer's width grows and shrinks in steps of this many tokens (bounds reallocations and masked keys). */
export const WIDTH_STEP = 16;

interface Call {
  readonly tokens: readonly number[];
  /** Tokens of `tokens` already in the cache (a prompt goes in by chunks). */
  done: number;
  /** The sequence's length when the call began: a failure rolls back to it. */
  readonly start: number;
  readonly resolve: (logits: Float32Array) => void;
  readonly reject: (e: unknown) => void;
}

/** A sequence of a batched view: its tokens live in one row of the batch's KV buffer. */
export class BatchedOnnxSequence implements Sequence {
  /** Row of the KV buffer (moves when a sequence before it is freed, between passes only). */
  row: number;
  tokens = 0;
  call: Call | null = null;
  freed = false;
  readonly spec: PlanSpec;
  /** pointName of the points this sequence's JS chain writes (splits) and only reads. */
  readonly splitNames: ReadonlySet<string>;
  readonly readNames: ReadonlySet<string>;
  readonly logits: Float32Array;

  constructor(
    readonly id: number,
    row: number,
    private readonly batch: OnnxBatch,
    readonly hooks: ResidualHooks | null,
  ) {
    const { info } = batch.model;
    for (const edit of hooks?.affine.values() ?? []) checkAffineEdit(edit, info.dModel, `sequence ${id} of ${info.name}`);
    this.row = row;
    this.spec = batch.model.planSpec(hooks);
    this.splitNames = new Set(this.spec.split.map(pointName));
    this.readNames = new Set(this.spec.read.map(pointName));
    this.logits = new Float32Array(info.vocabSize);
  }

  get length(): number {
    return this.tokens;
  }

  decode(token: number): Promise<Float32Array> {
    return this.prefill([token]);
  }

  prefill(tokens: ArrayLike<number>): Promise<Float32Array> {
    if (this.freed) return Promise.reject(new Error(`sequence ${this.id} was freed`));
    if (this.call) return Promise.reject(new Error(`sequence ${this.id} is already evaluating; await the previous call`));
    const { info } = this.batch.model;
    try {
      checkPrefill(tokens, { subject: `sequence ${this.id} of ${info.name}`, cached: this.tokens, contextLength: info.contextLength, vocabSize: info.vocabSize });
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<Float32Array>((resolve, reject) => {
      this.call = { tokens: Array.from(tokens), done: 0, start: this.tokens, resolve, reject };
      this.batch.wake();
    });
  }

  reset(): void {
    if (this.freed) throw new Error(`sequence ${this.id} was freed`);
    if (this.call) throw new Error(`sequence ${this.id} is evaluating; await the call before reset()`);
    this.tokens = 0;
    this.batch.clearRow(this);
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.batch.release(this);
  }
}

/**
 * The batched KV buffer, the scheduler that fills passes, and the pass itself.
 * @example
 * ```ts
 * const model = await onnx.load(dir);
 * const batch = new OnnxBatch(model, { sequences: 4 });
 * const [a, b] = [batch.createSequence(), batch.createSequence()];
 * await Promise.all([a.prefill([1, 2]), b.prefill([1, 5, 6])]);
 * const [la, lb] = await Promise.all([a.decode(3), b.decode(7)]); // one session.run, batch 2
 * ```
 */
export class OnnxBatch {
  readonly sequences: number;
  readonly #gatherMs: number;
  readonly #promptChunk: number;
  /** Live sequences by row: row r of the KV buffer is #rows[r]'s. */
  readonly #rows: BatchedOnnxSequence[] = [];
  /** One buffer per KV input, `[sequences, kvHeads, width, headDim]`. */
  #kv: (Float32Array | Uint16Array)[];
  #width = 0;
  /** Rows the buffer holds (sequences, more while freed ones wait for a pass to end). */
  #capacity = 0;
  /** Per KV input: kv heads and head dim (the dims around the sequence axis, batch excluded). */
  readonly #heads: number;
  readonly #headDim: number;
  #running = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #disposed = false;
  #nextId = 1;
  #passes = 0;
  #lease: { spec: PlanSpec; lease: PlanLease } | null = null;
  /** Row moves and clears asked for during a pass, done when it ends. */
  #deferred: (() => void)[] = [];

  constructor(
    readonly model: OnnxRuntimeModel,
    options: OnnxBatchOptions,
  ) {
    const { sequences } = options;
    if (!Number.isInteger(sequences) || sequences < 1 || sequences > 256) throw new RangeError(`sequences must be an integer in 1..256, got ${sequences}`);
    const gatherMs = options.gatherMs ?? 2;
    if (!(gatherMs >= 0)) throw new RangeError(`gatherMs must be >= 0, got ${gatherMs}`);
    const refusal = model.batchRefusal;
    if (refusal) throw new SteerkitError("UNSUPPORTED_MODEL", `${model.config.modelFile}: cannot batch sequences: ${refusal}`);
    this.sequences = sequences;
    this.#gatherMs = gatherMs;
    const promptChunk = options.promptChunk ?? 64;
    if (!Number.isInteger(promptChunk) || promptChunk < 1) throw new RangeError(`promptChunk must be an integer >= 1, got ${promptChunk}`);
    this.#promptChunk = promptChunk;
    const dims = model.io.kv.entries[0]!.emptyDims; // optimum: [1, kvHeads, 0, headDim]
    this.#heads = dims[1]!;
    this.#headDim = dims[3]!;
    this.#kv = this.#allocKv(0, sequences);
  }

  /** Sequences alive now. */
  get liveSequences(): number {
    return this.#rows.length;
  }

  /** Forward passes run so far (a decode step of many sequences is one). */
  get passes(): number {
    return this.#passes;
  }

  /** Current width of the KV buffer (tokens per row, padding included). */
  get width(): number {
    return this.#width;
  }

  /**
   * A sequence in a free row, with its own hooks. Throws when all `sequences` rows are taken.
   * @example
   * ```ts
   * const seq = batch.createSequence({ hooks: chain.residual });
   * const logits = await seq.prefill(tokens);
   * seq.free();
   * ```
   */
  createSequence(options: SequenceOptions = {}): BatchedOnnxSequence {
    if (this.#disposed || this.model.isDisposed) throw new Error(`${this.model.config.modelFile}: the batched view was disposed`);
    if (this.#rows.filter((s) => !s.freed).length >= this.sequences) {
      throw new SteerkitError("INVALID_REQUEST", `all ${this.sequences} sequences of the batched view of ${this.model.info.name} are in use; free one first`);
    }
    const seq = new BatchedOnnxSequence(this.#nextId++, this.#rows.length, this, options.hooks ?? null);
    // A freed sequence keeps its row until the running pass ends: grow by a row (a pass running now
    // still reads the old buffers it was given, and its results are written to these).
    if (this.#rows.length >= this.#capacity) {
      const next = this.#allocKv(this.#width, this.#rows.length + 1);
      next.forEach((buf, k) => buf.set(this.#kv[k]! as never));
      this.#kv = next;
    }
    this.#rows.push(seq);
    return seq;
  }

  /** Free every sequence (after the pass running now, if any). */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const s of [...this.#rows]) s.free();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#whenIdle(() => {
      this.#lease?.lease.release();
      this.#lease = null;
      this.#kv = this.#allocKv(0, 0);
    });
  }

  // --- called by BatchedOnnxSequence ------------------------------------------------------

  /** @internal A call was queued: start a step now, or after gatherMs. */
  wake(): void {
    if (this.#running) return;
    const all = this.#rows.every((s) => s.call !== null);
    if (all || this.#gatherMs === 0) {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      queueMicrotask(() => void this.#step());
    } else if (this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        void this.#step();
      }, this.#gatherMs);
    }
  }

  /** @internal `seq` is freed: its row goes to the last live sequence, now or when the pass ends. */
  release(seq: BatchedOnnxSequence): void {
    this.#whenIdle(() => {
      seq.call?.reject(new Error(`sequence ${seq.id} was freed`));
      seq.call = null;
      const r = this.#rows.indexOf(seq);
      if (r < 0) return;
      const last = this.#rows.pop()!;
      if (last !== seq) {
        for (const buf of this.#kv) buf.copyWithin(r * this.#rowSize(), last.row * this.#rowSize(), (last.row + 1) * this.#rowSize());
        this.#rows[r] = last;
        last.row = r;
      }
      this.#zeroRow(this.#rows.length);
      if (this.#rows.length > 0) this.wake();
      else {
        this.#lease?.lease.release();
        this.#lease = null;
      }
    });
  }

  /** @internal A reset row: zeroed, so nothing a previous call left (even non-finite values) can reach a mask. */
  clearRow(seq: BatchedOnnxSequence): void {
    this.#whenIdle(() => {
      if (!seq.freed) this.#zeroRow(seq.row);
    });
  }

  // --- the KV buffer -----------------------------------------------------------------------

  #rowSize(width = this.#width): number {
    return this.#heads * width * this.#headDim;
  }

  #allocKv(width: number, rows = this.#capacity): (Float32Array | Uint16Array)[] {
    this.#capacity = rows;
    const n = rows * this.#rowSize(width);
    return this.model.io.kv.entries.map((e) => (e.elemType === DataType.FLOAT16 ? new Uint16Array(n) : new Float32Array(n)));
  }

  #zeroRow(r: number): void {
    for (const buf of this.#kv) buf.fill(0, r * this.#rowSize(), (r + 1) * this.#rowSize());
  }

  /** Resize the buffer to `width` tokens per row, keeping each row's cached tokens. */
  #resize(width: number): void {
    const next = this.#allocKv(width);
    const hd = this.#headDim;
    this.#kv.forEach((old, e) => {
      const dst = next[e]!;
      for (const seq of this.#rows) {
        for (let h = 0; h < this.#heads; h++) {
          const from = seq.row * this.#rowSize() + h * this.#width * hd;
          dst.set(old.subarray(from, from + seq.tokens * hd) as never, seq.row * this.#rowSize(width) + h * width * hd);
        }
      }
    });
    this.#kv = next;
    this.#width = width;
  }

  /** Make room for `need` tokens in a row; shrink when every row fits in a much narrower buffer. */
  #fit(need: number): void {
    const longest = Math.max(need, ...this.#rows.map((s) => s.tokens));
    const cap = this.model.info.contextLength;
    const wanted = Math.min(cap, Math.ceil(longest / WIDTH_STEP) * WIDTH_STEP);
    if (wanted > this.#width || this.#width - wanted >= 2 * WIDTH_STEP) this.#resize(Math.max(wanted, longest));
  }

  // --- scheduling ----------------------------------------------------------------------------

  #whenIdle(op: () => void): void {
    if (this.#running) this.#deferred.push(op);
    else op();
  }

  async #step(): Promise<void> {
    if (this.#running) return;
    const waiting = this.#rows.filter((s) => s.call !== null);
    if (waiting.length === 0) return;
    this.#running = true;
    try {
      let plan: RuntimePlan;
      try {
        plan = await this.#plan();
      } catch (e) {
        for (const s of waiting) this.#settle(s, e);
        return;
      }
      const decoding = waiting.filter((s) => s.call!.tokens.length === 1);
      if (decoding.length > 0) {
        this.#fit(Math.max(...decoding.map((s) => s.tokens + 1)));
        await this.#pass(plan, 0, this.#rows.length, 1, new Set(decoding));
      }
      for (const s of waiting) {
        if (s.call === null || s.call.tokens.length === 1) continue;
        if (s.freed) {
          this.#settle(s, new Error(`sequence ${s.id} was freed`));
          continue;
        }
        const n = Math.min(this.#promptChunk, s.call.tokens.length - s.call.done);
        this.#fit(s.tokens + n);
        await this.#pass(plan, s.row, 1, n, new Set([s]));
      }
    } finally {
      this.#running = false;
      const ops = this.#deferred;
      this.#deferred = [];
      for (const op of ops) op();
      if (this.#rows.some((s) => s.call !== null)) this.wake();
    }
  }

  /** End `seq`'s call: resolve with its logits, or reject and roll its cache back to where the call began. */
  #settle(seq: BatchedOnnxSequence, error: unknown): void {
    const call = seq.call;
    seq.call = null;
    if (!call) return;
    if (error === null) return call.resolve(seq.logits);
    seq.tokens = call.start;
    call.reject(error);
  }

  /**
   * The plan for the union of the live sequences' hook layouts, kept leased while it serves. A plan
   * that covers every live sequence is kept when one leaves (a sequence leaving would otherwise cost
   * an ORT session build each time the mix changes; the rows just pass through unused points), and
   * replaced by the exact union when a sequence needs a point it lacks or the batch empties.
   */
  #plan(): Promise<RuntimePlan> {
    const nLayers = this.model.info.nLayers;
    const specs = this.#rows.map((s) => s.spec);
    if (!this.#lease || !specs.every((s) => covers(this.#lease!.spec, s))) {
      const spec = unionSpec(specs, nLayers);
      const lease = this.model.acquirePlan(spec);
      this.#lease?.lease.release();
      this.#lease = { spec, lease };
    }
    return this.#lease.lease.plan;
  }

  // --- a pass --------------------------------------------------------------------------------

  /**
   * One session.run (one per plan segment) over rows `[first, first + count)` with `n` new tokens
   * each. `active` are the rows whose call this pass serves; the others ride along and their
   * results are dropped.
   */
  async #pass(plan: RuntimePlan, first: number, count: number, n: number, active: ReadonlySet<BatchedOnnxSequence>): Promise<void> {
    const { info, io } = this.model;
    this.#passes++;
    const d = info.dModel;
    const width = this.#width;
    const rows = this.#rows.slice(first, first + count);
    const feeds: Record<string, OrtTensor> = {};
    const tokenIds = rows.map((s) => (active.has(s) ? s.call!.tokens.slice(s.call!.done, s.call!.done + n) : Array.from({ length: n }, () => 0)));
    const positions = rows.map((s) => Array.from({ length: n }, (_, i) => s.tokens + i));
    feeds[io.inputIds.name] = intTensor(io.inputIds.type, [count, n], (r, i) => tokenIds[r]![i]!);
    if (io.positionIds) feeds[io.positionIds.name] = intTensor(io.positionIds.type, [count, n], (r, i) => positions[r]![i]!);
    // Each row sees its own cached tokens and this pass's new ones (at index width + i).
    feeds[io.attentionMask!.name] = intTensor(io.attentionMask!.type, [count, width + n], (r, j) => (j < rows[r]!.tokens || j >= width ? 1 : 0));
    const rowSize = this.#rowSize();
    io.kv.entries.forEach((e, k) => {
      const data = this.#kv[k]!.subarray(first * rowSize, (first + count) * rowSize);
      const dims = [count, this.#heads, width, this.#headDim];
      feeds[e.input] = data instanceof Float32Array ? new ort.Tensor("float32", data, dims) : float16Tensor(data, dims);
    });
    Object.assign(feeds, steerFeeds(plan, rows, active, positions, n, d));

    const failed = new Map<BatchedOnnxSequence, unknown>();
    const results: Record<string, OrtTensor> = {};
    /** The residual at points that are cuts of this plan, for sequences that only read there. */
    const cutValues = new Map<string, Float32Array>();
    try {
      for (const seg of plan.segments) {
        const out = await runSegment(seg, feeds);
        Object.assign(results, out);
        if (!seg.cut) continue;
        const name = pointName(seg.cut.point);
        const x = residualData(out[seg.cut.tensor]!);
        rows.forEach((s, r) => {
          if (!active.has(s) || failed.has(s) || !s.hooks || !s.splitNames.has(name)) return;
          const block = n * d;
          const view = makeTensor(x.subarray(r * block, (r + 1) * block), [n, d]);
          const y = s.hooks.run(seg.cut!.point, view, positions[r]!, tokenIds[r]!);
          if (s.hooks.error) return void failed.set(s, s.hooks.error);
          if (y.data.length !== block) {
            return void failed.set(s, new RangeError(`hook at ${name} returned ${y.data.length} values, expected ${n} x ${d}`));
          }
          if (y.data !== view.data) x.set(y.data, r * block);
        });
        cutValues.set(name, x);
        feeds[seg.cut.tensor] = io.hiddenElemType === DataType.FLOAT ? new ort.Tensor("float32", x, [count, n, d]) : float16Tensor(float32ToHalfBits(x), [count, n, d]);
      }
    } catch (e) {
      for (const s of active) this.#settle(s, e);
      return;
    }

    // Read-only points, after the pass and in forward order, as on the single-sequence path.
    const reads = [...plan.reads.map((r) => ({ point: r.point, data: () => residualData(results[r.tensor]!) }))];
    for (const [name, x] of cutValues) reads.push({ point: plan.segments.find((s) => s.cut && pointName(s.cut.point) === name)!.cut!.point, data: () => x });
    reads.sort((a, b) => pointIndex(a.point, info.nLayers) - pointIndex(b.point, info.nLayers));
    for (const read of reads) {
      const name = pointName(read.point);
      let x: Float32Array | null = null;
      rows.forEach((s, r) => {
        if (!active.has(s) || failed.has(s) || !s.hooks || !s.readNames.has(name)) return;
        x ??= read.data();
        s.hooks.run(read.point, makeTensor(x.subarray(r * n * d, (r + 1) * n * d), [n, d]), positions[r]!, tokenIds[r]!);
        if (s.hooks.error) failed.set(s, s.hooks.error);
      });
    }

    const logits = results[io.logits]!;
    const vocab = info.vocabSize;
    io.kv.entries.forEach((e, k) => {
      const out = results[io.newKvRows.get(e.output)!]!;
      const fresh = out.type === "float16" ? halfBits(out) : (out.data as Float32Array);
      const hd = this.#headDim;
      rows.forEach((s, r) => {
        if (!active.has(s) || failed.has(s) || s.freed) return;
        for (let h = 0; h < this.#heads; h++) {
          const src = (r * this.#heads + h) * n * hd;
          const dst = s.row * rowSize + h * width * hd + s.tokens * hd;
          this.#kv[k]!.set(fresh.subarray(src, src + n * hd) as never, dst);
        }
      });
    });
    rows.forEach((s, r) => {
      if (!active.has(s)) return;
      if (s.freed) return this.#settle(s, new Error(`sequence ${s.id} was freed during its forward pass`));
      const error = failed.get(s);
      if (error !== undefined) return this.#settle(s, error);
      s.tokens += n;
      const call = s.call!;
      call.done += n;
      if (call.done < call.tokens.length) return; // the next chunk goes in next step
      rowLogits(logits, (r + 1) * n - 1, vocab, s.logits);
      this.#settle(s, null);
    });
  }
}

/** The hook layout serving every sequence of a batch: each point in the union of their layouts. */
export function unionSpec(specs: readonly PlanSpec[], nLayers: number): PlanSpec {
  const byIndex = <T extends { point: HookPoint } | HookPoint>(items: Map<string, T>, key: (t: T) => HookPoint) =>
    [...items.values()].sort((a, b) => pointIndex(key(a), nLayers) - pointIndex(key(b), nLayers));
  const split = new Map<string, HookPoint>();
  const affine = new Map<string, AffineSpec>();
  const read = new Map<string, HookPoint>();
  for (const s of specs) {
    for (const p of s.split) split.set(pointName(p), p);
    for (const a of s.affine) {
      const name = pointName(a.point);
      const lowRank = a.lowRank || (affine.get(name)?.lowRank ?? false);
      affine.set(name, { point: a.point, lowRank, positioned: true });
    }
    for (const p of s.read) read.set(pointName(p), p);
  }
  for (const name of split.keys()) read.delete(name);
  return {
    split: byIndex(split, (p) => p),
    affine: byIndex(affine, (a) => a.point),
    read: byIndex(read, (p) => p),
    batched: true,
  };
}

/** True when a plan built for `plan` serves a sequence whose own layout is `need`. */
function covers(plan: PlanSpec, need: PlanSpec): boolean {
  const split = new Set(plan.split.map(pointName));
  const read = new Set(plan.read.map(pointName));
  const affine = new Map(plan.affine.map((a) => [pointName(a.point), a]));
  return (
    need.split.every((p) => split.has(pointName(p))) &&
    need.read.every((p) => read.has(pointName(p)) || split.has(pointName(p))) &&
    need.affine.every((a) => {
      const have = affine.get(pointName(a.point));
      return have !== undefined && (have.lowRank || !a.lowRank);
    })
  );
}

/** Per-row affine inputs: each active row's own edit (rank padded with zeros), zeros elsewhere. */
function steerFeeds(
  plan: RuntimePlan,
  rows: readonly BatchedOnnxSequence[],
  active: ReadonlySet<BatchedOnnxSequence>,
  positions: readonly (readonly number[])[],
  n: number,
  d: number,
): Record<string, OrtTensor> {
  const feeds: Record<string, OrtTensor> = {};
  const B = rows.length;
  for (const [name, inputs] of plan.steer) {
    const edits = rows.map((s) => (active.has(s) ? (s.hooks?.affine.get(name) ?? null) : null));
    const c = new Float32Array(B * d);
    const mask = new Float32Array(B * n);
    // Rank 0 columns would make a zero-size MatMul: pad to at least 1 (zeros add nothing).
    const k = Math.max(1, ...edits.map((e) => e?.rank ?? 0));
    const U = inputs.U ? new Float32Array(B * d * k) : null;
    const V = inputs.V ? new Float32Array(B * k * d) : null;
    edits.forEach((edit, r) => {
      if (!edit) return;
      if (edit.c) c.set(edit.c, r * d);
      for (let i = 0; i < n; i++) mask[r * n + i] = inPositions(edit.positions, positions[r]![i]!) ? 1 : 0;
      if (U && V && edit.rank > 0) {
        for (let i = 0; i < d; i++) for (let j = 0; j < edit.rank; j++) U[r * d * k + i * k + j] = edit.U![i * edit.rank + j]!;
        V.set(edit.V!, r * k * d);
      }
    });
    feeds[inputs.c] = new ort.Tensor("float32", c, [B, 1, d]);
    feeds[inputs.mask!] = new ort.Tensor("float32", mask, [B, n, 1]);
    if (U && V) {
      feeds[inputs.U!] = new ort.Tensor("float32", U, [B, d, k]);
      feeds[inputs.V!] = new ort.Tensor("float32", V, [B, k, d]);
    }
  }
  return feeds;
}

function intTensor(type: "int32" | "int64", dims: [number, number], value: (row: number, col: number) => number): OrtTensor {
  const [rows, cols] = dims;
  const a = type === "int64" ? new BigInt64Array(rows * cols) : new Int32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = value(r, c);
      if (a instanceof BigInt64Array) a[r * cols + c] = BigInt(v);
      else a[r * cols + c] = v;
    }
  }
  return new ort.Tensor(type, a, dims);
}

/** A residual output as float32 values (converting float16). */
function residualData(t: OrtTensor): Float32Array {
  return t.type === "float32" ? (t.data as Float32Array) : halfBitsToFloat32(halfBits(t));
}

/** Row `at` (of `[B * seq]` rows) of a `[B, seq, vocab]` logits output, as float32. */
function rowLogits(t: OrtTensor, at: number, vocab: number, out: Float32Array): void {
  if (t.type === "float32") out.set((t.data as Float32Array).subarray(at * vocab, (at + 1) * vocab));
  else halfBitsToFloat32(halfBits(t).subarray(at * vocab, (at + 1) * vocab), out);
}

/** A model whose `createSequence` gives sequences decoded together (see OnnxBatch). */
export class BatchedOnnxModel extends BatchedModelView<SequenceOptions, BatchedOnnxSequence, OnnxBatch> {
  constructor(
    override readonly model: OnnxRuntimeModel,
    options: OnnxBatchOptions,
  ) {
    super(model, new OnnxBatch(model, options));
  }
}

/** Fused attention ops that place or mask KV rows by their own rules (not by attention_mask + position_ids). */
const OWN_KV_ATTENTION = new Set(["Attention", "MultiHeadAttention", "PackedAttention", "SparseAttention"]);

/**
 * Why this export cannot run batched passes, or null when it can. Static checks name the layout;
 * then a probe: two runs of two rows whose past is masked out, with different junk in it, must give
 * the same logits, which holds only when the export honours `attention_mask` per row (a graph that
 * only reads its shape, as some hand-made exports do, fails it).
 * @example
 * ```ts
 * const reason = await batchRefusal(model);
 * if (reason) console.log(`one session.run per sequence: ${reason}`);
 * ```
 */
export async function batchRefusal(model: OnnxRuntimeModel): Promise<string | null> {
  const { io, graph } = model;
  if (io.kv.style !== "optimum") return `its KV inputs use the legacy past_N layout ([2, batch, heads, past, head]); batched passes are implemented for past_key_values.N.key/value`;
  const fused = graph.nodes.find((n) => OWN_KV_ATTENTION.has(n.opType ?? "") && n.domain === "com.microsoft");
  if (fused) {
    return `it uses com.microsoft ${fused.opType} ("${fused.name || fused.outputs[0]}"), whose past/mask conventions batched passes do not implement (the graph would need each row's padding hidden per row)`;
  }
  if (!io.attentionMask) return `it has no attention_mask input, so a row's padding cannot be hidden`;
  // GroupQueryAttention takes each row's past length (and rotary positions) from seqlens_k, the
  // mask's sum: a row's cache left-aligned in the padded buffer is exactly what it expects.
  const gqa = graph.nodes.some((n) => n.opType === "GroupQueryAttention");
  if (!io.positionIds && !gqa) return `it has no position_ids input, so rows cannot have their own positions`;
  const window = model.config.slidingWindow;
  const sliding = graph.nodes.find((n) => /sliding/i.test(n.name ?? "") || n.outputs.some((o) => /sliding/i.test(o)));
  if (window !== undefined || sliding) {
    const what = window !== undefined ? `config.json: ${typeof window === "number" ? `sliding_window ${window}` : window}` : `"${sliding!.name || sliding!.outputs[0]}"`;
    return `it has sliding-window attention (${what}); exports measure the window in cache slots from the end, which padding a row's cache shifts`;
  }
  return probe(model);
}

async function probe(model: OnnxRuntimeModel): Promise<string | null> {
  const { io, info } = model;
  const session = (await model.plan({ split: [], affine: [], read: [] })).segments[0]!.session;
  const token = Math.min(1, info.vocabSize - 1);
  const rows = 2;
  const past = 3;
  /** Two rows, each a token at position 0 after a past of `past` masked-out slots filled with `junk`. */
  const run = async (junk: (i: number) => number): Promise<Float32Array> => {
    const feeds: Record<string, OrtTensor> = {};
    feeds[io.inputIds.name] = intTensor(io.inputIds.type, [rows, 1], () => token);
    if (io.positionIds) feeds[io.positionIds.name] = intTensor(io.positionIds.type, [rows, 1], () => 0);
    feeds[io.attentionMask!.name] = intTensor(io.attentionMask!.type, [rows, past + 1], (_, j) => (j === past ? 1 : 0));
    for (const e of io.kv.entries) {
      const dims = [rows, e.emptyDims[1]!, past, e.emptyDims[3]!];
      const values = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => junk(i));
      feeds[e.input] = e.elemType === DataType.FLOAT16 ? float16Tensor(float32ToHalfBits(values), dims) : new ort.Tensor("float32", values, dims);
    }
    const out = await session.run(feeds);
    return residualData(out[io.logits]!);
  };
  // Same shapes, different junk: a mask that is honoured makes the runs equal (masked keys weigh 0),
  // whatever the kernels do with a batch of 2 (int4 MatMulNBits, for one, rounds differently at M > 1).
  let a: Float32Array;
  let b: Float32Array;
  try {
    a = await run((i) => Math.sin(i * 0.37) * 3);
    b = await run((i) => Math.cos(i * 0.91) * 2);
  } catch (e) {
    return `a probe run with batch 2 and a padded past failed (${(e as Error).message.split("\n")[0]}); is the batch dimension fixed?`;
  }
  let worst = 0;
  let scale = 1;
  for (let i = 0; i < a.length; i++) {
    worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(a[i]!));
  }
  if (!(worst <= 1e-4 * scale)) {
    return `it does not hide masked past rows: in a probe, changing only the masked-out past changed the logits by ${worst.toPrecision(3)} (attention_mask read for its shape only?)`;
  }
  return null;
}
