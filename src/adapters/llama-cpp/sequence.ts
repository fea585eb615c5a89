/**
 * A llama.cpp sequence: one llama_context with its own KV cache, eval callback and control vector.
 *
 * Why one context per sequence rather than seq_ids sharing one context: the residual callback
 * (`cb_eval`), its user data and the control vector (`llama_set_adapter_cvec`) are per-context state
 * in llama.cpp, and a shared context would also batch two sequences' rows into one forward pass. With
 * one context each, a sequence's hooks and fast-path vectors cannot touch another's rows, and a
 * failing or aborted pass only rolls back its own cache. The cost is a small compute buffer and a
 * KV cache of `contextLength` per sequence, which is what a separate seq_id would need anyway.
 */
import { JSCallback, ptr, read, toArrayBuffer, FFIType, type Pointer } from "bun:ffi";
import type { ResidualHooks, Sequence } from "../../core/backend.ts";
import { checkPrefill } from "../../core/backend-kit.ts";
import { SteerkitError } from "../../core/errors.ts";
import { allPoints, pointName, toLlamaCppTensor, type HookPoint } from "../../core/sites.ts";
import type { Tensor } from "../../core/tensor.ts";
import { BATCH, CONTEXT_PARAMS, GGML_TYPE_F32, SHIM_HOOKS, SHIM_POINT, TENSOR } from "./abi.ts";
import type { ArchitectureGraph } from "./architectures.ts";
import { UnsupportedModelError } from "./validate.ts";
import { addressOf, asPointer, cString, type LlamaLibrary } from "./ffi.ts";
import { planPoints, type PointMode, type PointPlan } from "./plan.ts";

export type { PointMode };

export interface LlamaSequenceOptions {
  readonly hooks?: ResidualHooks;
  /**
   * Which native fast paths may serve affine points. "auto" (default): control vectors for purely
   * additive block outputs (resid_post L >= 1), the compiled callback for the other affine edits.
   * "callback": never control vectors. Points without an affine edit always run in JS.
   */
  readonly fastPath?: "auto" | "callback";
}

export interface SequenceHost {
  readonly lib: LlamaLibrary;
  readonly model: Pointer;
  readonly nLayers: number;
  readonly dModel: number;
  readonly vocabSize: number;
  readonly contextLength: number;
  readonly batchSize: number;
  readonly threads: number;
  readonly modelName: string;
  /** Where the residual points are in this architecture's graph. */
  readonly graph: ArchitectureGraph;
  /** GGUF general.architecture (error messages). */
  readonly architecture: string;
  /** Called once a sequence (or a batch's shared context) has freed its context. */
  release(resource: object): void;
}

const MODE_NATIVE = 1;
const MODE_JS = 2;

/** Per-point cache so the JS hook path allocates only when llama.cpp moves a tensor. */
interface JsView {
  dataPtr: number;
  rows: number;
  tensor: Tensor;
}

/** The backend failed under a sequence (no KV slot, a native call's error, use after free). */
export class SequenceError extends SteerkitError {
  override name = "SequenceError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("BACKEND_FAILED", message, options);
  }
}

/**
 * Typed arrays whose address native code keeps must own a real ArrayBuffer from the start: JSC
 * keeps small typed arrays inside the GC heap and moves their contents out the first time something
 * asks for `.buffer` or a subarray, which would leave native code holding a stale address.
 */
export function f32(n: number): Float32Array {
  return new Float32Array(new ArrayBuffer(n * 4));
}
export function i32(n: number): Int32Array {
  return new Int32Array(new ArrayBuffer(n * 4));
}

export function setPtr(view: DataView, offset: number, p: number | null): void {
  view.setBigUint64(offset, BigInt(p ?? 0), true);
}

/** A copy of `a` the shim can point at, owned by the sequence (the caller's array may move or change). */
function pinned(a: Float32Array | null): Float32Array | null {
  if (!a) return null;
  const out = f32(a.length);
  out.set(a);
  return out;
}

/**
 * Write a plan's native and JS points into sk_point blocks starting at byte `base` of `block`,
 * keeping the edit copies the shim points at alive in `keepAlive`.
 */
export function writePointPlan(block: DataView, base: number, plan: PointPlan, keepAlive: unknown[]): void {
  for (const e of plan.native) {
    const at = base + e.index * SHIM_POINT.size;
    const U = pinned(e.U);
    const V = pinned(e.V);
    const c = pinned(e.c);
    const scratch = f32(Math.max(1, e.rank));
    keepAlive.push(U, V, c, scratch);
    block.setInt32(at + SHIM_POINT.mode, MODE_NATIVE, true);
    block.setInt32(at + SHIM_POINT.rank, e.rank, true);
    setPtr(block, at + SHIM_POINT.U, U ? ptr(U) : null);
    setPtr(block, at + SHIM_POINT.V, V ? ptr(V) : null);
    setPtr(block, at + SHIM_POINT.c, c ? ptr(c) : null);
    setPtr(block, at + SHIM_POINT.scratch, ptr(scratch));
    block.setInt32(at + SHIM_POINT.pos_from, e.posFrom, true);
    block.setInt32(at + SHIM_POINT.pos_to, e.posTo, true);
  }
  for (const j of plan.js) block.setInt32(base + j.index * SHIM_POINT.size + SHIM_POINT.mode, MODE_JS, true);
}

/**
 * The plan of `hooks` on the host's architecture, the same rules for one context and a batch: parallel
 * blocks (phi2) refuse resid_mid; `controlVectors` is the architecture's control-vector rule, which a
 * batch turns off (a control vector is per context, a batch's rows belong to several sequences).
 */
export function planForHost(
  host: SequenceHost,
  hooks: ResidualHooks | undefined,
  options: { fastPath?: LlamaSequenceOptions["fastPath"]; controlVectors: boolean },
): PointPlan {
  return planPoints(hooks, {
    nLayers: host.nLayers,
    dModel: host.dModel,
    fastPath: options.fastPath,
    modelName: host.modelName,
    controlVectors: options.controlVectors && host.graph.controlVector,
    parallelBlocks: host.graph.parallel ? host.architecture : undefined,
  });
}

/** Points the shim serves for a plan (native and JS; control vectors are llama.cpp's own): every pass must reach them. */
export function hookedIndices(plan: PointPlan): number[] {
  return [...plan.native.map((e) => e.index), ...plan.js.map((j) => j.index)];
}

/**
 * Point the shim's sk_names (at `offsets` of `block`: sk_hooks or sk_batch) at the architecture's
 * tensor names, NUL-terminated copies kept alive in `keepAlive`.
 */
export function writeGraphNames(
  block: DataView,
  offsets: { pre_name: number; mid_prefix: number },
  graph: ArchitectureGraph,
  keepAlive: unknown[],
): void {
  const preName = cString(graph.pre);
  const midPrefix = graph.mid === null ? null : cString(`${graph.mid}-`);
  keepAlive.push(preName, midPrefix);
  setPtr(block, offsets.pre_name, ptr(preName));
  setPtr(block, offsets.mid_prefix, midPrefix ? ptr(midPrefix) : null);
}

/**
 * The error for the first of `mustReach` the shim never served in a pass (`hits` per point index), or
 * null. A hooked point the graph never produced would be a hook that silently did not run (a graph that
 * names the residual differently from architectures.ts), so the caller fails the pass instead.
 */
export function unreachedPointError(host: SequenceHost, mustReach: readonly number[], hits: Int32Array): UnsupportedModelError | null {
  const missed = mustReach.find((idx) => hits[idx] === 0);
  if (missed === undefined) return null;
  const point = allPoints(host.nLayers)[missed]!;
  return new UnsupportedModelError(
    `${host.architecture} model ${host.modelName}: llama.cpp's graph produced no tensor for ${pointName(point)} ` +
      `(looked for ${toLlamaCppTensor(point, host.nLayers, host.graph)}), so its hook could not run; the forward pass was undone`,
  );
}

/**
 * The problem with hooking tensor `t` at `point` from JS (not contiguous f32 rows of width
 * `dModel`), or null when it can be hooked.
 */
export function unhookableTensor(t: Pointer, point: HookPoint, dModel: number, modelName: string): SequenceError | null {
  const type = read.i32(t, TENSOR.type);
  const ne0 = read.intptr(t, TENSOR.ne);
  const rows = read.intptr(t, TENSOR.ne + 8);
  const nb1 = read.intptr(t, TENSOR.nb + 8);
  if (type === GGML_TYPE_F32 && ne0 === dModel && (rows <= 1 || nb1 === dModel * 4)) return null;
  return new SequenceError(
    `${pointName(point)} in ${modelName} is not a contiguous f32 [rows, ${dModel}] tensor ` +
      `(type ${type}, ne0 ${ne0}, row stride ${nb1}); cannot hook it`,
  );
}

export class LlamaSequence implements Sequence {
  readonly id: number;
  #length = 0;
  #ctx: Pointer | null;
  readonly #host: SequenceHost;
  readonly #hooks: ResidualHooks | undefined;
  /** How each hooked point is served, by point name (for tests and diagnostics). */
  readonly pointModes: ReadonlyMap<string, PointMode>;

  // Batch: llama_batch by value, pointing at these arrays.
  readonly #batch = new DataView(new ArrayBuffer(BATCH.size));
  readonly #tokens: Int32Array;
  readonly #pos: Int32Array;
  readonly #nSeqId: Int32Array;
  readonly #seqIdPtrs: BigUint64Array;
  readonly #seqId0 = i32(1);
  readonly #outputs: Int8Array;
  readonly #logits: Float32Array;
  #logitsView: Float32Array | null = null;
  #logitsPtr = 0;
  #threadpool: Pointer | null = null;

  // Hooks: the shim's sk_hooks block, its points and whatever they point at, kept alive here.
  readonly #hooksBlock = new DataView(new ArrayBuffer(SHIM_HOOKS.size));
  readonly #pointsBlock: DataView | null = null;
  readonly #keepAlive: unknown[] = [];
  readonly #jsCallback: JSCallback | null = null;
  readonly #points: HookPoint[];
  readonly #views: (JsView | null)[];
  #chunkPositions: Int32Array = new Int32Array(0);
  #chunkTokenIds: Int32Array = new Int32Array(0);
  /** Per point index: only read there (a replacement a hook returns is not written back). */
  readonly #readOnly: Uint8Array;
  /** Per point, how often the shim served it in the current llama_decode (sk_hooks.hits). */
  readonly #hits: Int32Array;
  /** Points the shim must reach in every pass (native and JS ones; control vectors are llama.cpp's own). */
  #mustReach: readonly number[] = [];
  #chunkTokens = 0;

  constructor(host: SequenceHost, id: number, options: LlamaSequenceOptions = {}) {
    this.id = id;
    this.#host = host;
    this.#hooks = options.hooks;
    const { lib, dModel, nLayers, batchSize } = host;

    this.#tokens = i32(batchSize);
    this.#pos = i32(batchSize);
    this.#nSeqId = i32(batchSize).fill(1);
    this.#seqIdPtrs = new BigUint64Array(new ArrayBuffer(batchSize * 8)).fill(BigInt(ptr(this.#seqId0)));
    this.#outputs = new Int8Array(new ArrayBuffer(batchSize));
    this.#logits = f32(host.vocabSize);
    setPtr(this.#batch, BATCH.token, ptr(this.#tokens));
    setPtr(this.#batch, BATCH.embd, null);
    setPtr(this.#batch, BATCH.pos, ptr(this.#pos));
    setPtr(this.#batch, BATCH.n_seq_id, ptr(this.#nSeqId));
    setPtr(this.#batch, BATCH.seq_id, ptr(this.#seqIdPtrs));
    setPtr(this.#batch, BATCH.logits, ptr(this.#outputs));

    this.#points = allPoints(nLayers);
    this.#hits = new Int32Array(2 * nLayers + 1);
    this.#views = this.#points.map(() => null);
    this.#readOnly = new Uint8Array(this.#points.length);

    const plan = planForHost(host, options.hooks, { fastPath: options.fastPath, controlVectors: true });
    this.pointModes = plan.modes;
    for (const j of plan.js) this.#readOnly[j.index] = j.readOnly ? 1 : 0;

    // The plan as memory: sk_point blocks and copies of the edits the shim points at.
    const nPoints = 2 * nLayers + 1;
    const pointsBlock = new DataView(new ArrayBuffer(nPoints * SHIM_POINT.size));
    writePointPlan(pointsBlock, 0, plan, this.#keepAlive);
    this.#mustReach = hookedIndices(plan);
    const needCallback = plan.native.length > 0 || plan.js.length > 0;

    const params = new DataView(new ArrayBuffer(CONTEXT_PARAMS.size));
    lib.shim.sk_context_default_params(lib.fn.contextDefaultParams, ptr(params));
    params.setUint32(CONTEXT_PARAMS.n_ctx, host.contextLength, true);
    // n_batch == n_ubatch: each llama_decode call is exactly one forward pass, so the JS hook path
    // always knows which positions the rows of a hooked tensor belong to.
    params.setUint32(CONTEXT_PARAMS.n_batch, batchSize, true);
    params.setUint32(CONTEXT_PARAMS.n_ubatch, batchSize, true);
    params.setUint32(CONTEXT_PARAMS.n_seq_max, 1, true);
    params.setInt32(CONTEXT_PARAMS.n_threads, host.threads, true);
    params.setInt32(CONTEXT_PARAMS.n_threads_batch, host.threads, true);

    if (needCallback) {
      const hooksPtr = ptr(this.#hooksBlock);
      this.#hooksBlock.setBigInt64(SHIM_HOOKS.n_embd, BigInt(dModel), true);
      this.#hooksBlock.setBigInt64(SHIM_HOOKS.n_points, BigInt(nPoints), true);
      // Positions of the rows the shim edits: the batch's own pos array, n_tokens set per pass.
      setPtr(this.#hooksBlock, SHIM_HOOKS.pos, ptr(this.#pos));
      setPtr(this.#hooksBlock, SHIM_HOOKS.hits, ptr(this.#hits));
      writeGraphNames(this.#hooksBlock, SHIM_HOOKS, host.graph, this.#keepAlive);
      if (plan.js.length) {
        this.#jsCallback = new JSCallback((t: Pointer, idx: number) => this.#runJsHook(t, idx), {
          args: [FFIType.ptr, FFIType.i32],
          returns: FFIType.bool,
        });
        setPtr(this.#hooksBlock, SHIM_HOOKS.js, this.#jsCallback.ptr);
      }
      setPtr(this.#hooksBlock, SHIM_HOOKS.points, ptr(pointsBlock));
      this.#pointsBlock = pointsBlock;
      setPtr(params, CONTEXT_PARAMS.cb_eval, addressOf(lib.shim.sk_eval));
      setPtr(params, CONTEXT_PARAMS.cb_eval_user_data, hooksPtr);
      // The abort callback reads the same `stop` word the eval callback sets when a hook fails.
      setPtr(params, CONTEXT_PARAMS.abort_callback, addressOf(lib.shim.sk_abort_flag));
      setPtr(params, CONTEXT_PARAMS.abort_callback_data, hooksPtr + SHIM_HOOKS.stop);
    }

    lib.clearLastLogError();
    const ctx = asPointer(lib.shim.sk_init_from_model(lib.fn.initFromModel, host.model, ptr(params)));
    if (!ctx) {
      this.#jsCallback?.close();
      throw new SequenceError(
        `llama.cpp could not create a context for ${host.modelName} (context ${host.contextLength}): ${lib.lastLogError() || "no reason logged"}`,
      );
    }
    this.#ctx = ctx;
    this.#threadpool = lib.threadpool.create(host.threads);
    if (this.#threadpool) lib.llama.llama_attach_threadpool(ctx, this.#threadpool, this.#threadpool);
    if (plan.cvec) {
      // llama.cpp's layout: one [dModel] vector per layer from layer 1 (block 0 has none).
      const cvec = f32((nLayers - 1) * dModel);
      for (const l of plan.cvec.layers) cvec.set(l.c, (l.layer - 1) * dModel);
      const rc = lib.llama.llama_set_adapter_cvec(ctx, ptr(cvec), cvec.length, dModel, plan.cvec.first, plan.cvec.last);
      if (rc !== 0) {
        this.free();
        throw new SequenceError(`llama_set_adapter_cvec failed for ${host.modelName}: ${lib.lastLogError() || `code ${rc}`}`);
      }
      this.#keepAlive.push(cvec);
    }
  }

  get length(): number {
    return this.#length;
  }

  /** True once freed. */
  get freed(): boolean {
    return this.#ctx === null;
  }

  async prefill(tokens: ArrayLike<number>): Promise<Float32Array> {
    return this.prefillSync(tokens);
  }

  async decode(token: number): Promise<Float32Array> {
    return this.prefillSync([token]);
  }

  /** `prefill`, synchronously (llama_decode runs on the calling thread). */
  prefillSync(tokens: ArrayLike<number>): Float32Array {
    const ctx = this.#live();
    const host = this.#host;
    checkPrefill(tokens, { subject: `sequence ${this.id} of ${host.modelName}`, cached: this.#length, contextLength: host.contextLength, vocabSize: host.vocabSize });
    const start = this.#length;
    this.#busy = true;
    try {
      this.#evaluate(ctx, tokens, start);
    } finally {
      this.#busy = false;
    }
    if (this.#freeRequested) {
      this.free();
      throw new SequenceError(`sequence ${this.id} was freed during its forward pass`);
    }
    return this.#readLogits(ctx);
  }

  #busy = false;
  #freeRequested = false;

  #evaluate(ctx: Pointer, tokens: ArrayLike<number>, start: number): void {
    const host = this.#host;
    const { lib } = host;
    const n = tokens.length;
    for (let off = 0; off < n && !this.#freeRequested; off += host.batchSize) {
      const m = Math.min(host.batchSize, n - off);
      const last = off + m === n;
      for (let i = 0; i < m; i++) {
        this.#tokens[i] = tokens[off + i]!;
        this.#pos[i] = this.#length + i;
        this.#outputs[i] = last && i === m - 1 ? 1 : 0;
      }
      this.#batch.setInt32(BATCH.n_tokens, m, true);
      this.#chunkTokens = m;
      this.#chunkPositions = this.#pos.subarray(0, m);
      this.#chunkTokenIds = this.#tokens.subarray(0, m);
      this.#hooksBlock.setInt32(SHIM_HOOKS.n_tokens, m, true);
      lib.clearLastLogError();
      this.#hits.fill(0);
      const rc = lib.shim.sk_decode(lib.fn.decode, ctx, ptr(this.#batch));
      const hookError = this.#hooks?.error ?? this.#adapterError;
      // Set without a hook error or a free: the shim met a tensor whose rows it could not place.
      const shimStopped = this.#hooksBlock.getInt32(SHIM_HOOKS.stop, true) !== 0;
      if (rc !== 0 || hookError || shimStopped) {
        this.#rollback(start);
        this.#adapterError = null;
        if (this.#freeRequested) return;
        if (hookError) throw hookError;
        if (shimStopped) {
          throw new SequenceError(`a hooked tensor of ${host.modelName} had more rows than the ${m} tokens of the pass; its positions are unknown`);
        }
        throw new SequenceError(
          rc === 1
            ? `llama.cpp found no KV-cache slot for ${m} tokens in sequence ${this.id} (context ${host.contextLength})`
            : `llama_decode failed with code ${rc} on sequence ${this.id}: ${lib.lastLogError() || "no reason logged"}`,
        );
      }
      const unreached = unreachedPointError(host, this.#mustReach, this.#hits);
      if (unreached) {
        this.#rollback(start);
        throw unreached;
      }
      this.#length += m;
    }
  }

  reset(): void {
    const ctx = this.#live();
    this.#host.lib.llama.llama_memory_clear(this.#host.lib.llama.llama_get_memory(ctx), true);
    this.#length = 0;
  }

  free(): void {
    const ctx = this.#ctx;
    if (ctx === null) return;
    if (this.#busy) {
      // Called from a hook inside llama_decode: freeing the context now would pull it out from
      // under the running graph. Stop the pass and free when llama_decode returns.
      this.#freeRequested = true;
      this.#hooksBlock.setInt32(SHIM_HOOKS.stop, 1, true);
      return;
    }
    this.#ctx = null;
    this.#host.lib.llama.llama_free(ctx);
    if (this.#threadpool) this.#host.lib.threadpool.free(this.#threadpool);
    this.#threadpool = null;
    this.#jsCallback?.close();
    this.#logitsView = null;
    this.#host.release(this);
  }

  #live(): Pointer {
    if (this.#ctx === null) throw new SequenceError(`sequence ${this.id} of ${this.#host.modelName} was freed`);
    return this.#ctx;
  }

  /** Drop whatever a failed call left in the cache so the sequence stays usable. */
  #rollback(start: number): void {
    const { llama } = this.#host.lib;
    const ctx = this.#ctx!;
    llama.llama_memory_seq_rm(llama.llama_get_memory(ctx), 0, start, -1);
    this.#length = start;
    this.#hooksBlock.setInt32(SHIM_HOOKS.stop, 0, true);
  }

  #readLogits(ctx: Pointer): Float32Array {
    const p = asPointer(this.#host.lib.llama.llama_get_logits_ith(ctx, -1));
    if (!p) throw new SequenceError(`llama.cpp returned no logits for sequence ${this.id}`);
    if (this.#logitsView === null || this.#logitsPtr !== p) {
      this.#logitsView = new Float32Array(toArrayBuffer(p, 0, this.#host.vocabSize * 4));
      this.#logitsPtr = p;
    }
    // A copy: llama.cpp's buffer dies with the context, and callers may keep what they were given.
    this.#logits.set(this.#logitsView);
    return this.#logits;
  }

  /** The JS side of sk_eval: run core's chain over a hooked tensor, in place. Returns false to stop the pass. */
  #runJsHook(t: Pointer, idx: number): boolean {
    const hooks = this.#hooks!;
    const d = this.#host.dModel;
    const point = this.#points[idx]!;
    const unhookable = unhookableTensor(t, point, d, this.#host.modelName);
    if (unhookable) {
      this.#fail(unhookable);
      return false;
    }
    const rows = read.intptr(t, TENSOR.ne + 8);
    if (rows === 0) return true; // last block on a chunk that produces no logits: nothing computed
    const dataPtr = read.ptr(t, TENSOR.data);
    let view = this.#views[idx];
    if (!view || view.dataPtr !== dataPtr || view.rows !== rows) {
      view = {
        dataPtr,
        rows,
        tensor: { data: new Float32Array(toArrayBuffer(dataPtr as Pointer, 0, rows * d * 4)), dims: [rows, d] },
      };
      this.#views[idx] = view;
    }
    // The last block's tensors hold only the rows that produce logits: the last ones of the chunk.
    const skip = this.#chunkTokens - rows;
    const positions = skip === 0 ? this.#chunkPositions : this.#chunkPositions.subarray(skip);
    const tokens = skip === 0 ? this.#chunkTokenIds : this.#chunkTokenIds.subarray(skip);
    const out = hooks.run(point, view.tensor, positions, tokens);
    if (out.data !== view.tensor.data && !this.#readOnly[idx]) {
      if (out.data.length !== view.tensor.data.length) {
        this.#fail(
          new SequenceError(
            `a hook at ${pointName(point)} returned ${out.data.length} values for a [${rows}, ${d}] residual`,
          ),
        );
        return false;
      }
      view.tensor.data.set(out.data);
    }
    if (hooks.error) {
      this.#hooksBlock.setInt32(SHIM_HOOKS.stop, 1, true);
      return false;
    }
    return true;
  }

  #adapterError: Error | null = null;
  #fail(e: Error): void {
    this.#adapterError ??= e;
    this.#hooksBlock.setInt32(SHIM_HOOKS.stop, 1, true);
  }
}

