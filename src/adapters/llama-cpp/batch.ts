/**
 * Batched decoding: many sequences in one `llama_context`, their rows decoded together, each with
 * its own steering.
 *
 * Why: decode is memory-bound (every forward pass reads all the weights), so N sequences in one
 * pass cost little more than one. One context holds up to `sequences` live KV streams (a unified
 * cache of `sequences × contextLength` cells, seq id = slot): a sequence can never hold more than its
 * `contextLength` (checked before each call), so the shared cache cannot fill under another
 * sequence. There are twice as many slots (seq ids) as live sequences: a sequence freed while a
 * pass holds its rows keeps its slot until the pass ends, and the new sequence that replaces it
 * (a server reusing its request slot at once) takes another instead of failing. Each step gathers one row per waiting sequence, then prefill chunks of the others up to
 * `stepTokens`, into one `llama_batch` with seq ids: a long prompt is spread over several steps and
 * does not stall the sequences that are decoding.
 *
 * Steering per sequence: a sequence's rows are contiguous in the batch (its "row group"). The
 * batched eval callback (`sk_eval_batch` in shim.c) applies each group's affine edits to that
 * group's rows only, and hands the tensor to JS where some group has JS hooks; JS then runs each
 * such group's chain over a view of its own rows, with their positions and tokens, as the
 * one-context path does. Control vectors are per context and would add to every row, so every
 * affine edit here runs natively per group. The architecture rules are the one-context path's, from
 * the same helpers (sequence.ts): the shim finds the points by the same names (sk_names: block-0
 * input, mid-block prefix or phi3's unnamed sum), parallel-block models refuse resid_mid, and a
 * hooked point the graph never produced fails that sequence's call (per-pass hit counts). A failing hook stops only its own group (its rows are
 * left alone for the rest of the pass, then removed from the cache); a free during the pass frees
 * that sequence when the pass ends; the others' results are untouched.
 *
 * Threads: `llama_decode` runs on the batch's own native thread (`sk_batch_decode_async` wakes it;
 * started on the first pass, joined by dispose), so the JS event loop keeps serving while the
 * weights stream through. One thread for the batch's life, not one per pass: ggml's OpenMP worker
 * team belongs to the thread that calls it, so a thread per pass paid a new team per pass. JS
 * hooks stay synchronous inside the pass: at a JS-hooked tensor the decode thread posts to the JS
 * thread (a threadsafe JSCallback) and sleeps on a futex until the chain has run; the end of the
 * pass is posted the same way (JS sleeps in its event loop meanwhile: no polling). What crosses
 * threads is a tensor address and a point index; everything else (plans, positions, the batch) is
 * memory both sides read, written by JS only while no pass runs. See the README ("Batched decoding").
 */
import { JSCallback, ptr, read, toArrayBuffer, FFIType, type Pointer } from "bun:ffi";
import type { BatchOptions as CoreBatchOptions, ResidualHooks, Sequence } from "../../core/backend.ts";
import { checkPrefill } from "../../core/backend-kit.ts";
import { allPoints, type HookPoint } from "../../core/sites.ts";
import type { Tensor } from "../../core/tensor.ts";
import { BATCH, CONTEXT_PARAMS, SHIM_BATCH, SHIM_POINT, TENSOR } from "./abi.ts";
import { addressOf, asPointer } from "./ffi.ts";
import type { PointMode } from "./plan.ts";
import {
  f32,
  hookedIndices,
  i32,
  planForHost,
  setPtr,
  SequenceError,
  unhookableTensor,
  unreachedPointError,
  writeGraphNames,
  writePointPlan,
  type LlamaSequenceOptions,
  type SequenceHost,
} from "./sequence.ts";

export interface BatchOptions extends CoreBatchOptions {
  /** Sequences that may be alive at once, 1..128 (the context reserves twice as many seq ids: see the file header). */
  readonly sequences: number;
  /**
   * Most tokens in one forward pass (default 512, at least `sequences`): every waiting sequence
   * gets one row, prefill chunks share what is left.
   */
  readonly stepTokens?: number;
  /**
   * How long a step waits for sequences that are alive but have not asked for their next token
   * yet (default 2 ms). A step starts at once when every live sequence is waiting.
   */
  readonly gatherMs?: number;
}

/** Default tokens per batched forward pass. */
export const DEFAULT_STEP_TOKENS = 512;
/** llama.cpp's LLAMA_MAX_SEQ (pinned llama-cparams.h): seq ids a context can hold. */
const MAX_SLOTS = 256;

const NOTIFY_HOOK = 1;
const NOTIFY_DONE = 2;

interface Call {
  readonly tokens: ArrayLike<number>;
  /** Tokens of `tokens` already in the cache. */
  done: number;
  /** The sequence's length when the call began: a failure rolls back to it. */
  readonly start: number;
  readonly resolve: (logits: Float32Array) => void;
  readonly reject: (e: unknown) => void;
}

/** A JS view of one group's rows of one hooked tensor, rebuilt only when they move. */
interface RowView {
  addr: number;
  rows: number;
  first: number;
  tensor: Tensor;
  positions: Int32Array;
  tokens: Int32Array;
}

/**
 * One shared llama_context and the scheduler that fills its passes.
 * @example
 * ```ts
 * const model = loadModel(DEFAULT_MODEL_PATH);
 * const batch = model.batched({ sequences: 4 });
 * const [a, b] = [batch.createSequence(), batch.createSequence()];
 * const [la, lb] = await Promise.all([a.prefill([1, 2, 3]), b.prefill([1, 5])]); // one forward pass
 * ```
 */
export class LlamaBatch {
  readonly sequences: number;
  readonly stepTokens: number;
  readonly #gatherMs: number;
  readonly #host: SequenceHost;
  #ctx: Pointer | null;
  #threadpool: Pointer | null = null;
  readonly #nPoints: number;
  readonly #points: HookPoint[];

  // The batch (llama_batch by value) and its arrays.
  readonly #batch = new DataView(new ArrayBuffer(BATCH.size));
  readonly #tokens: Int32Array;
  readonly #pos: Int32Array;
  readonly #outputs: Int8Array;
  // The shim's sk_batch block and what it points at.
  readonly #block = new DataView(new ArrayBuffer(SHIM_BATCH.size));
  readonly #blockPtr: Pointer;
  readonly #pointsBlock: DataView;
  readonly #groupFirst: Int32Array;
  readonly #groupCount: Int32Array;
  readonly #groupOut: Int32Array;
  readonly #groupStop: Int32Array;
  readonly #jsWanted: Uint8Array;
  /** Per point, how often the shim served it in the running pass (sk_batch.hits). */
  readonly #hits: Int32Array;
  readonly #notify: JSCallback;
  readonly #keepAlive: unknown[] = [];

  /** Slot g's sequence, or null when free. */
  readonly #slots: (BatchedSequence | null)[];
  #running = false;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #disposing = false;
  /** Keeps the process alive while a pass runs on the native thread. */
  #keepAwake: ReturnType<typeof setInterval> | null = null;
  /** Next slot to be served first in a step (round robin, so no group is always last). */
  #rotate = 0;

  constructor(host: SequenceHost, options: BatchOptions) {
    const { sequences } = options;
    if (!Number.isInteger(sequences) || sequences < 1 || sequences > MAX_SLOTS / 2) {
      throw new RangeError(`sequences must be an integer in 1..${MAX_SLOTS / 2} (twice as many of llama.cpp's ${MAX_SLOTS} seq ids are reserved), got ${sequences}`);
    }
    // A sequence freed while a pass holds its rows keeps its slot (its KV cells, its rows in the
    // pass) until that pass ends. Twice as many slots as live sequences means a caller that frees one
    // and creates the next at once (a server reusing its request slot) always finds a free slot.
    const slotCount = 2 * sequences;
    const stepTokens = options.stepTokens ?? Math.max(DEFAULT_STEP_TOKENS, sequences);
    if (!Number.isInteger(stepTokens) || stepTokens < sequences) {
      throw new RangeError(`stepTokens must be an integer >= sequences (${sequences}: one row each), got ${stepTokens}`);
    }
    const gatherMs = options.gatherMs ?? 2;
    if (!(gatherMs >= 0)) throw new RangeError(`gatherMs must be >= 0, got ${gatherMs}`);
    this.sequences = sequences;
    this.stepTokens = stepTokens;
    this.#gatherMs = gatherMs;
    this.#host = host;
    const { lib, nLayers, dModel } = host;
    this.#points = allPoints(nLayers);
    this.#nPoints = this.#points.length;

    this.#tokens = i32(stepTokens);
    this.#pos = i32(stepTokens);
    this.#outputs = new Int8Array(new ArrayBuffer(stepTokens));
    const nSeqId = i32(stepTokens).fill(1);
    // Row r's seq id is its group's slot: seq_id[r] points at slotIds[slot].
    const slotIds = i32(slotCount).map((_, g) => g);
    this.#seqIdPtrs = new BigUint64Array(new ArrayBuffer(stepTokens * 8));
    this.#slotIdBase = ptr(slotIds);
    this.#keepAlive.push(nSeqId, slotIds);
    setPtr(this.#batch, BATCH.token, ptr(this.#tokens));
    setPtr(this.#batch, BATCH.embd, null);
    setPtr(this.#batch, BATCH.pos, ptr(this.#pos));
    setPtr(this.#batch, BATCH.n_seq_id, ptr(nSeqId));
    setPtr(this.#batch, BATCH.seq_id, ptr(this.#seqIdPtrs));
    setPtr(this.#batch, BATCH.logits, ptr(this.#outputs));

    this.#pointsBlock = new DataView(new ArrayBuffer(slotCount * this.#nPoints * SHIM_POINT.size));
    this.#groupFirst = i32(slotCount);
    this.#groupCount = i32(slotCount);
    this.#groupOut = i32(slotCount);
    this.#groupStop = i32(slotCount);
    this.#jsWanted = new Uint8Array(new ArrayBuffer(this.#nPoints));
    this.#hits = i32(this.#nPoints);
    this.#slots = Array.from({ length: slotCount }, () => null);
    this.#views = Array.from({ length: slotCount * this.#nPoints }, () => null);
    this.#notify = new JSCallback((kind: number, arg: number) => this.#onNotify(kind, arg), {
      args: [FFIType.i32, FFIType.i32],
      returns: FFIType.void,
      threadsafe: true,
    });

    const b = this.#block;
    b.setBigInt64(SHIM_BATCH.n_embd, BigInt(dModel), true);
    b.setBigInt64(SHIM_BATCH.n_points, BigInt(this.#nPoints), true);
    b.setBigInt64(SHIM_BATCH.n_groups, BigInt(slotCount), true);
    setPtr(b, SHIM_BATCH.points, ptr(this.#pointsBlock));
    setPtr(b, SHIM_BATCH.notify, this.#notify.ptr);
    setPtr(b, SHIM_BATCH.group_first, ptr(this.#groupFirst));
    setPtr(b, SHIM_BATCH.group_count, ptr(this.#groupCount));
    setPtr(b, SHIM_BATCH.group_out, ptr(this.#groupOut));
    setPtr(b, SHIM_BATCH.group_stop, ptr(this.#groupStop));
    setPtr(b, SHIM_BATCH.pos, ptr(this.#pos));
    setPtr(b, SHIM_BATCH.js_wanted, ptr(this.#jsWanted));
    setPtr(b, SHIM_BATCH.decode, lib.fn.decode);
    setPtr(b, SHIM_BATCH.batch, ptr(this.#batch));
    setPtr(b, SHIM_BATCH.hits, ptr(this.#hits));
    writeGraphNames(b, SHIM_BATCH, host.graph, this.#keepAlive);
    this.#blockPtr = ptr(b);

    const params = new DataView(new ArrayBuffer(CONTEXT_PARAMS.size));
    lib.shim.sk_context_default_params(lib.fn.contextDefaultParams, ptr(params));
    params.setUint32(CONTEXT_PARAMS.n_ctx, sequences * host.contextLength, true);
    // One ubatch per llama_decode call (n_batch == n_ubatch, unified cache: llama.cpp splits the
    // batch "simply", in order), so the rows of a hooked tensor are the batch's rows in order.
    params.setUint32(CONTEXT_PARAMS.n_batch, stepTokens, true);
    params.setUint32(CONTEXT_PARAMS.n_ubatch, stepTokens, true);
    params.setUint32(CONTEXT_PARAMS.n_seq_max, slotCount, true);
    params.setUint8(CONTEXT_PARAMS.kv_unified, 1);
    params.setInt32(CONTEXT_PARAMS.n_threads, host.threads, true);
    params.setInt32(CONTEXT_PARAMS.n_threads_batch, host.threads, true);
    setPtr(params, CONTEXT_PARAMS.cb_eval, addressOf(lib.shim.sk_eval_batch));
    setPtr(params, CONTEXT_PARAMS.cb_eval_user_data, this.#blockPtr);
    lib.clearLastLogError();
    const ctx = asPointer(lib.shim.sk_init_from_model(lib.fn.initFromModel, host.model, ptr(params)));
    if (!ctx) {
      this.#notify.close();
      throw new SequenceError(
        `llama.cpp could not create a batched context for ${host.modelName} (${sequences} sequences of ${host.contextLength} tokens): ${lib.lastLogError() || "no reason logged"}`,
      );
    }
    this.#ctx = ctx;
    setPtr(b, SHIM_BATCH.ctx, ctx);
    this.#threadpool = lib.threadpool.create(host.threads);
    if (this.#threadpool) lib.llama.llama_attach_threadpool(ctx, this.#threadpool, this.#threadpool);
  }

  #nextId = 0;
  readonly #seqIdPtrs: BigUint64Array;
  readonly #slotIdBase: number;
  readonly #views: (RowView | null)[];

  /** Sequences alive now (not freed; a freed one may still hold its slot until the pass ends). */
  get liveSequences(): number {
    return this.#slots.filter((s) => s !== null && !s.freed).length;
  }

  /**
   * A sequence in a free slot, with its own hooks. Throws when all `sequences` slots are taken.
   * @example
   * ```ts
   * const seq = batch.createSequence({ hooks: chain.residual });
   * const logits = await seq.prefill(tokens);
   * seq.free();
   * ```
   */
  createSequence(options: LlamaSequenceOptions = {}): BatchedSequence {
    if (this.#ctx === null || this.#disposing) throw new SequenceError(`the batched context of ${this.#host.modelName} was disposed`);
    if (this.liveSequences >= this.sequences) {
      throw new SequenceError(`all ${this.sequences} sequences of the batched context of ${this.#host.modelName} are in use; free one first`);
    }
    // Live < sequences and at most `sequences` freed ones still held by the pass: a slot is free.
    const slot = this.#slots.indexOf(null);
    if (slot < 0) throw new SequenceError(`internal: no free slot with ${this.liveSequences} of ${this.sequences} sequences live`);
    // Control vectors are per context: every affine edit runs natively, per row group.
    const plan = planForHost(this.#host, options.hooks, { fastPath: "callback", controlVectors: false });
    const base = slot * this.#nPoints * SHIM_POINT.size;
    new Uint8Array(this.#pointsBlock.buffer, base, this.#nPoints * SHIM_POINT.size).fill(0);
    const keepAlive: unknown[] = [];
    writePointPlan(this.#pointsBlock, base, plan, keepAlive);
    const js = new Uint8Array(this.#nPoints);
    const readOnly = new Uint8Array(this.#nPoints);
    for (const j of plan.js) {
      js[j.index] = 1;
      readOnly[j.index] = j.readOnly ? 1 : 0;
    }
    for (let i = 0; i < this.#nPoints; i++) this.#views[slot * this.#nPoints + i] = null;
    // The slot's cells were removed when its last sequence was freed (see #clearSlot).
    const seq = new BatchedSequence(this, this.#nextId++, slot, options.hooks, plan.modes, js, readOnly, hookedIndices(plan), keepAlive);
    this.#slots[slot] = seq;
    return seq;
  }

  /** Free the shared context (after the pass running now, if any). Every sequence is freed. */
  dispose(): void {
    if (this.#ctx === null || this.#disposing) return;
    this.#disposing = true;
    for (const seq of this.#slots) seq?.free();
    if (!this.#running) this.#freeContext();
  }

  // --- called by BatchedSequence ------------------------------------------------------------

  /** @internal */
  get host(): SequenceHost {
    return this.#host;
  }

  /** @internal A call was queued on `seq`: start a step now, or soon. */
  wake(): void {
    if (this.#running || this.#ctx === null) return;
    const all = this.#slots.every((s) => s === null || s.freed || s.call !== null);
    if (all || this.#gatherMs === 0) {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
      // Not from inside the caller's prefill(): once its promise exists.
      queueMicrotask(() => this.#step());
    } else if (this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#step();
      }, this.#gatherMs);
    }
  }

  /** @internal `seq` is freed: drop its cache now, or when the pass running now ends (its slot stays taken until then). */
  release(seq: BatchedSequence): void {
    if (this.#slots[seq.slot] !== seq) return;
    if (this.#running && this.#groupCount[seq.slot]! > 0) return; // #finish frees it with its call
    this.#whenIdle(() => this.#clearSlot(seq.slot));
  }

  /**
   * Run `op` (which touches the KV cache) now, or when the pass running now ends: llama.cpp's
   * memory calls must not race the decode thread.
   */
  #whenIdle(op: () => void): void {
    if (this.#running) this.#deferred.push(op);
    else op();
  }
  readonly #deferred: (() => void)[] = [];

  /** @internal True while a pass holds rows of `seq`. */
  holds(seq: BatchedSequence): boolean {
    return this.#running && this.#slots[seq.slot] === seq && this.#groupCount[seq.slot]! > 0;
  }

  /** @internal Forget every cached token of `seq` (before its next rows are scheduled). */
  clear(seq: BatchedSequence): void {
    this.#whenIdle(() => {
      if (this.#ctx && this.#slots[seq.slot] === seq) this.#llama().llama_memory_seq_rm(this.#memory(), seq.slot, -1, -1);
    });
  }

  // --- the step ------------------------------------------------------------------------------

  #step(): void {
    if (this.#running || this.#ctx === null) return;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const S = this.#slots.length;
    const count = this.#groupCount;
    count.fill(0);
    // One row for every waiting sequence, then prefill chunks in slot order from the rotation
    // point, until the step's token budget is spent.
    let budget = this.stepTokens;
    const order: number[] = [];
    for (let k = 0; k < S; k++) {
      const g = (this.#rotate + k) % S;
      const call = this.#slots[g]?.call;
      if (!call) continue;
      order.push(g);
      count[g] = 1;
      budget--;
    }
    if (order.length === 0) return;
    this.#rotate = (this.#rotate + 1) % S;
    for (const g of order) {
      if (budget <= 0) break;
      const call = this.#slots[g]!.call!;
      const extra = Math.min(budget, call.tokens.length - call.done - 1);
      count[g] = 1 + extra;
      budget -= extra;
    }
    // Lay the groups out contiguously, in slot order.
    let row = 0;
    let outputs = 0;
    let hooked = 0;
    this.#jsWanted.fill(0);
    for (let g = 0; g < S; g++) {
      const n = count[g]!;
      this.#groupFirst[g] = row;
      this.#groupOut[g] = -1;
      this.#groupStop[g] = 0;
      if (n === 0) continue;
      const seq = this.#slots[g]!;
      const call = seq.call!;
      const seqPtr = BigInt(this.#slotIdBase + 4 * g);
      for (let i = 0; i < n; i++) {
        this.#tokens[row + i] = call.tokens[call.done + i]!;
        this.#pos[row + i] = seq.length + i;
        this.#outputs[row + i] = 0;
        this.#seqIdPtrs[row + i] = seqPtr;
      }
      if (call.done + n === call.tokens.length) {
        this.#outputs[row + n - 1] = 1;
        this.#groupOut[g] = outputs++;
      }
      const js = seq.jsPoints;
      for (let i = 0; i < this.#nPoints; i++) this.#jsWanted[i]! |= js[i]!;
      if (seq.mustReach.length > 0) hooked = 1;
      row += n;
    }
    this.#batch.setInt32(BATCH.n_tokens, row, true);
    this.#block.setInt32(SHIM_BATCH.n_tokens, row, true);
    this.#block.setInt32(SHIM_BATCH.n_outputs, outputs, true);
    this.#block.setInt32(SHIM_BATCH.stop, 0, true);
    this.#block.setInt32(SHIM_BATCH.hooked, hooked, true);
    this.#hits.fill(0);
    this.#running = true;
    this.#keepAwake ??= setInterval(() => {}, 1 << 30);
    this.#host.lib.clearLastLogError();
    const rc = this.#host.lib.shim.sk_batch_decode_async(this.#blockPtr);
    if (rc !== 0) {
      this.#finish(-1, new SequenceError(`could not start a decode thread (pthread_create returned ${rc})`));
    }
  }

  #onNotify(kind: number, arg: number): void {
    if (kind === NOTIFY_HOOK) {
      try {
        this.#runJsHooks(arg);
      } finally {
        this.#host.lib.shim.sk_batch_resume(this.#blockPtr);
      }
    } else if (kind === NOTIFY_DONE) {
      this.#finish(arg, null);
    }
  }

  /** Every group with JS hooks at point `idx`: its chain over a view of its own rows. */
  #runJsHooks(idx: number): void {
    const t = read.ptr(this.#blockPtr, SHIM_BATCH.js_tensor) as Pointer;
    const point = this.#points[idx]!;
    const d = this.#host.dModel;
    const nTokens = this.#block.getInt32(SHIM_BATCH.n_tokens, true);
    const rows = read.intptr(t, TENSOR.ne + 8);
    const full = rows === nTokens;
    const unhookable = unhookableTensor(t, point, d, this.#host.modelName);
    const data = read.ptr(t, TENSOR.data);
    for (let g = 0; g < this.#slots.length; g++) {
      const n = this.#groupCount[g]!;
      const seq = this.#slots[g];
      if (n === 0 || !seq || !seq.jsPoints[idx] || this.#groupStop[g]) continue;
      if (seq.freed) {
        this.#groupStop[g] = 1; // freed from a hook: nothing more to compute for it
        continue;
      }
      if (unhookable) {
        seq.fail(unhookable);
        this.#groupStop[g] = 1;
        continue;
      }
      // The last block holds only output rows: this group's is its last row, if it has one.
      if (!full && this.#groupOut[g]! < 0) continue;
      const first = this.#groupFirst[g]!;
      const tensorRow = full ? first : this.#groupOut[g]!;
      const viewRows = full ? n : 1;
      const posFrom = full ? first : first + n - 1;
      const key = g * this.#nPoints + idx;
      let view = this.#views[key];
      const addr = data + tensorRow * d * 4;
      if (!view || view.addr !== addr || view.rows !== viewRows || view.first !== posFrom) {
        view = {
          addr,
          rows: viewRows,
          first: posFrom,
          tensor: { data: new Float32Array(toArrayBuffer(addr as Pointer, 0, viewRows * d * 4)), dims: [viewRows, d] },
          positions: this.#pos.subarray(posFrom, posFrom + viewRows),
          tokens: this.#tokens.subarray(posFrom, posFrom + viewRows),
        };
        this.#views[key] = view;
      }
      if (!seq.runHooks(point, idx, view.tensor, view.positions, view.tokens)) this.#groupStop[g] = 1;
    }
  }

  /** The pass ended (llama_decode returned `rc`, or could not start: `startError`): settle every call in it. */
  #finish(rc: number, startError: Error | null): void {
    this.#running = false;
    const { lib, modelName, contextLength } = this.#host;
    const shimStopped = this.#block.getInt32(SHIM_BATCH.stop, true) !== 0;
    const nTokens = this.#block.getInt32(SHIM_BATCH.n_tokens, true);
    const reason = lib.lastLogError();
    for (let g = 0; g < this.#slots.length; g++) {
      const n = this.#groupCount[g]!;
      const seq = this.#slots[g];
      if (n === 0 || !seq) continue;
      const call = seq.call!;
      const failure =
        startError ??
        (rc !== 0
          ? new SequenceError(
              rc === 1
                ? `llama.cpp found no KV-cache slot for a batch of ${nTokens} tokens (${this.sequences} sequences of ${contextLength})`
                : `llama_decode failed with code ${rc} on a batch of ${nTokens} tokens of ${modelName}: ${reason || "no reason logged"}`,
            )
          : shimStopped
            ? new SequenceError(`a hooked tensor of ${modelName} had a row count the batch cannot place (neither its ${nTokens} tokens nor its outputs)`)
            : this.#groupStop[g]
              ? seq.takeError()
              : unreachedPointError(this.#host, seq.mustReach, this.#hits));
      if (seq.freed) {
        this.#clearSlot(g);
        seq.settle(null, new SequenceError(`sequence ${seq.id} was freed during its forward pass`));
        continue;
      }
      if (failure) {
        // Only this sequence's rows of the pass leave the cache; the others' stay.
        this.#llama().llama_memory_seq_rm(this.#memory(), g, call.start, -1);
        seq.rollback(call.start);
        seq.settle(null, failure);
        continue;
      }
      seq.advance(n);
      call.done += n;
      if (call.done === call.tokens.length) {
        const p = asPointer(this.#llama().llama_get_logits_ith(this.#ctx!, this.#groupFirst[g]! + n - 1));
        if (!p) seq.settle(null, new SequenceError(`llama.cpp returned no logits for sequence ${seq.id}`));
        else seq.settle(this.#logitsAt(p), null);
      }
    }
    this.#groupCount.fill(0);
    for (const op of this.#deferred.splice(0)) op();
    if (this.#disposing) {
      this.#freeContext();
      return;
    }
    if (this.#slots.some((s) => s?.call)) this.wake();
    else this.#sleep();
  }

  /** A view of llama.cpp's logits row at `p` (cached: the output buffer stays put between passes). */
  #logitsAt(p: Pointer): Float32Array {
    let view = this.#logitViews.get(p);
    if (!view) {
      if (this.#logitViews.size >= 4 * this.sequences) this.#logitViews.clear(); // the buffer moved
      view = new Float32Array(toArrayBuffer(p, 0, this.#host.vocabSize * 4));
      this.#logitViews.set(p, view);
    }
    return view;
  }
  readonly #logitViews = new Map<number, Float32Array>();

  #sleep(): void {
    if (this.#keepAwake !== null) clearInterval(this.#keepAwake);
    this.#keepAwake = null;
  }

  #clearSlot(g: number): void {
    if (this.#ctx) this.#llama().llama_memory_seq_rm(this.#memory(), g, -1, -1);
    this.#slots[g] = null;
  }

  #freeContext(): void {
    const ctx = this.#ctx;
    if (ctx === null) return;
    this.#ctx = null;
    this.#sleep();
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#host.lib.shim.sk_batch_stop(this.#blockPtr);
    this.#host.lib.llama.llama_free(ctx);
    if (this.#threadpool) this.#host.lib.threadpool.free(this.#threadpool);
    this.#threadpool = null;
    this.#notify.close();
    this.#host.release(this);
  }

  #llama() {
    return this.#host.lib.llama;
  }
  #memory(): Pointer {
    return asPointer(this.#llama().llama_get_memory(this.#ctx!))!;
  }
}

/** A sequence of a {@link LlamaBatch}: its calls are queued and served by the batch's steps. */
export class BatchedSequence implements Sequence {
  readonly id: number;
  /** How each hooked point is served, by point name (for tests and diagnostics). */
  readonly pointModes: ReadonlyMap<string, PointMode>;
  /** @internal The call being served, or null. */
  call: Call | null = null;
  #length = 0;
  #freed = false;
  #error: Error | null = null;
  readonly #logits: Float32Array;

  /** @internal */
  constructor(
    readonly batch: LlamaBatch,
    id: number,
    readonly slot: number,
    readonly hooks: ResidualHooks | undefined,
    modes: ReadonlyMap<string, PointMode>,
    /** @internal 1 where this sequence runs JS hooks, by point index. */
    readonly jsPoints: Uint8Array,
    readonly readOnly: Uint8Array,
    /** @internal Points the shim serves for this sequence: every pass it is in must reach them. */
    readonly mustReach: readonly number[],
    readonly keepAlive: unknown[],
  ) {
    this.id = id;
    this.pointModes = modes;
    this.#logits = f32(batch.host.vocabSize);
  }

  get length(): number {
    return this.#length;
  }

  get freed(): boolean {
    return this.#freed;
  }

  prefill(tokens: ArrayLike<number>): Promise<Float32Array> {
    const host = this.batch.host;
    try {
      if (this.#freed) throw new SequenceError(`sequence ${this.id} of ${host.modelName} was freed`);
      if (this.call) throw new SequenceError(`sequence ${this.id} of ${host.modelName} is already evaluating; await its last call first`);
      checkPrefill(tokens, { subject: `sequence ${this.id} of ${host.modelName}`, cached: this.#length, contextLength: host.contextLength, vocabSize: host.vocabSize });
    } catch (e) {
      return Promise.reject(e);
    }
    return new Promise<Float32Array>((resolve, reject) => {
      this.call = { tokens: Array.from(tokens), done: 0, start: this.#length, resolve, reject };
      this.batch.wake();
    });
  }

  decode(token: number): Promise<Float32Array> {
    return this.prefill([token]);
  }

  reset(): void {
    if (this.#freed) throw new SequenceError(`sequence ${this.id} was freed`);
    if (this.call) throw new SequenceError(`sequence ${this.id} cannot be reset while a call is evaluating`);
    this.batch.clear(this);
    this.#length = 0;
  }

  free(): void {
    if (this.#freed) return;
    this.#freed = true;
    const call = this.call;
    this.batch.release(this);
    // Not in a pass: the call (if any) will never run.
    if (call && this.call === call && !this.batch.holds(this)) this.settle(null, new SequenceError(`sequence ${this.id} was freed before its call ran`));
  }

  /** @internal The chain over this sequence's rows at one point; false when it failed (its rows are then left alone). */
  runHooks(point: HookPoint, idx: number, x: Tensor, positions: Int32Array, tokens: Int32Array): boolean {
    const hooks = this.hooks!;
    const out = hooks.run(point, x, positions, tokens);
    if (out.data !== x.data && !this.readOnly[idx]) {
      if (out.data.length !== x.data.length) {
        this.fail(new SequenceError(`a hook at ${point.site}.${point.layer} returned ${out.data.length} values for a [${x.dims[0]}, ${x.dims[1]}] residual`));
        return false;
      }
      x.data.set(out.data);
    }
    return hooks.error === null;
  }

  /** @internal */
  fail(e: Error): void {
    this.#error ??= e;
  }

  /** @internal The error that stopped this sequence's rows in the last pass. */
  takeError(): Error {
    const e = this.hooks?.error ?? this.#error ?? new SequenceError(`sequence ${this.id} was stopped`);
    this.#error = null;
    return e;
  }

  /** @internal */
  advance(n: number): void {
    this.#length += n;
  }

  /** @internal */
  rollback(length: number): void {
    this.#length = length;
  }

  /** @internal End the current call: with a copy of `logits` (llama.cpp's buffer is rewritten by the next pass), or `error`. */
  settle(logits: Float32Array | null, error: unknown): void {
    const call = this.call;
    if (!call) return;
    this.call = null;
    if (logits) {
      this.#logits.set(logits);
      call.resolve(this.#logits);
    } else call.reject(error);
  }
}
