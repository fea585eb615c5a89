/**
 * The ONNX Runtime model: load an export, find its residual stream, and run sequences whose hooks
 * are compiled into graphs (see plan.ts) chosen from what the request's hooks declare.
 */
import type { Capability, ChatMessage, LoadOptions, Model, ModelInfo, ResidualHooks, Sequence, SequenceOptions, TokenizeOptions } from "../../core/backend.ts";
import { canonicalPoint, pointIndex, pointName, type HookPoint } from "../../core/sites.ts";
import {
  DataType,
  encodeModel,
  opsetVersion,
  readOnnxFile,
  valueInfoElemType,
  valueInfoShape,
  type OnnxFile,
  type OnnxGraph,
} from "../../formats/onnx/index.ts";
import { readExportDir, type ExportConfig } from "./export-dir.ts";
import { indexGraph } from "./graph.ts";
import { unwrapMergedDecoder } from "./merged.ts";
import { detectKvLayout, outputNewKvRows, type KvLayout } from "./kv.ts";
import { splitFusedNorms } from "./normalize.ts";
import { ort, type OrtSession } from "./ort.ts";
import { buildPlanGraphs, planKey, type AffineSpec, type PlanSpec, type SteerInputs } from "./plan.ts";
import { findResidualChain } from "./residual.ts";
import { OnnxSequence } from "./sequence.ts";
import { batchRefusal, BatchedOnnxModel, type OnnxBatchOptions } from "./batch.ts";
import { loadTextCodec, type TextCodec } from "./text.ts";
import { SteerkitError } from "../../core/errors.ts";
import type { WeightCheck } from "../../formats/gguf-scan.ts";
import { checkFiniteInitializers } from "../../formats/onnx/scan.ts";

export const ONNX_CAPABILITIES: readonly Capability[] = ["residual:read", "residual:write", "logits:read", "logits:write"];

/** ai.onnx opsets this onnxruntime-node (1.30) runs; it refuses newer ones at load. */
export const SUPPORTED_ONNX_OPSETS = { min: 7, max: 26 } as const;
const KNOWN_DOMAINS = new Set(["", "ai.onnx", "com.microsoft", "ai.onnx.ml", "com.microsoft.nchwc", "org.pytorch.aten"]);

/** A load failure; the message names the file and the reason. */
export class OnnxModelError extends SteerkitError {
  override name = "OnnxModelError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("UNSUPPORTED_MODEL", message, options);
  }
}

export interface OnnxLoadOptions extends LoadOptions {
  /** Graph optimization level for every session (default "all"). */
  readonly graphOptimizationLevel?: "disabled" | "basic" | "extended" | "all";
  /**
   * Hooked graphs kept built, per distinct hook layout (default 4). Each holds its own copy of the
   * weights, so this bounds memory; a layout still used by a live sequence is never dropped.
   */
  readonly maxCachedPlans?: number;
  /**
   * Refuse NaN / ±Inf float initializers before any session is made (formats/onnx/scan.ts): "small"
   * (default) the 1-D ones (norms, biases), "all" every one (one pass over the weights), "none" skips it.
   */
  readonly checkWeights?: WeightCheck;
}

/** A sequence's hold on a plan: keeps it cached while the sequence lives. */
export interface PlanLease {
  readonly plan: Promise<RuntimePlan>;
  release(): void;
}

interface CachedPlan {
  readonly plan: Promise<RuntimePlan>;
  users: number;
}

/** How a model's graph inputs are fed. */
export interface IoSpec {
  readonly inputIds: { name: string; type: "int32" | "int64" };
  readonly positionIds: { name: string; type: "int32" | "int64" } | null;
  readonly attentionMask: { name: string; type: "int32" | "int64" } | null;
  readonly logits: string;
  readonly logitsElemType: number;
  readonly kv: KvLayout;
  /** `present` output name -> the output holding only the step's new rows (see outputNewKvRows). */
  readonly newKvRows: ReadonlyMap<string, string>;
  /** Element type of the residual stream (float32 or float16). */
  readonly hiddenElemType: number;
}

/** The sessions of one plan, built once and shared by every sequence with the same hook shape. */
export interface RuntimePlan {
  readonly segments: readonly {
    session: OrtSession;
    inputs: readonly string[];
    outputs: readonly string[];
    cut: { point: HookPoint; tensor: string } | null;
  }[];
  readonly steer: ReadonlyMap<string, SteerInputs>;
  readonly reads: readonly { point: HookPoint; tensor: string }[];
}

export class OnnxRuntimeModel implements Model {
  readonly capabilities = ONNX_CAPABILITIES;
  private readonly plans = new Map<string, CachedPlan>();
  private readonly sequences = new Set<OnnxSequence>();
  private nextSequenceId = 1;
  private disposed = false;
  private readonly base: Promise<RuntimePlan>;
  /**
   * Why this export's sequences cannot be decoded together (batch.ts), or null when they can. Set
   * at load; while it is non-null `batched` is absent, so callers (the chat server) fall back to one
   * `session.run` per sequence.
   */
  batchRefusal: string | null = "not checked yet";
  /**
   * A view whose sequences (at most `sequences` alive at once) are decoded together: one
   * `session.run` with batch B per decode step, each row with its own positions, mask and steering
   * (batch.ts). Absent when the export cannot (see `batchRefusal`).
   * @example
   * ```ts
   * const model = await onnx.load(dir);
   * const batched = model.batched?.({ sequences: 8 }) ?? model;
   * const results = await Promise.all(prompts.map((prompt) => generate(batched, { prompt, maxTokens: 32 })));
   * ```
   */
  batched?: (options: OnnxBatchOptions) => BatchedOnnxModel;

  constructor(
    readonly info: ModelInfo,
    readonly config: ExportConfig,
    readonly file: OnnxFile,
    /** The export's own graph, with KV outputs cut to the new rows: the unhooked session. */
    baseGraph: OnnxGraph,
    /** The same with fused norms split: what hooked plans are built from. */
    readonly graph: OnnxGraph,
    readonly sites: ReadonlyMap<string, string>,
    readonly io: IoSpec,
    private readonly text: TextCodec,
    private readonly sessionOptions: ort.InferenceSession.SessionOptions,
    private readonly maxCachedPlans = 4,
  ) {
    // Weights in external files are handed over from our own mapping rather than left for ORT to
    // map from the path: decode measured ~2x faster on the 16-layer d=1024 bench model that way.
    const externalData = [...file.externalFiles].map(([path, data]) => ({ path, data }));
    this.base = ort.InferenceSession.create(encodeModel({ ...file.model, graph: baseGraph }), { ...sessionOptions, externalData }).then((session) => ({
      segments: [{ session, inputs: session.inputNames, outputs: session.outputNames, cut: null }],
      steer: new Map(),
      reads: [],
    }));
    // loadOnnxModel awaits ready() and reports a failure there; this only marks it observed.
    this.base.catch(() => {});
  }

  /** Resolves when the unhooked session is ready (load awaits it so errors surface there). */
  ready(): Promise<unknown> {
    return this.base;
  }

  /** Decide whether sequences can be batched (load calls it once the base session is ready). */
  async checkBatching(): Promise<void> {
    this.batchRefusal = await batchRefusal(this);
    if (this.batchRefusal === null) this.batched = (options) => new BatchedOnnxModel(this, options);
  }

  tokenize(text: string, options?: TokenizeOptions): number[] {
    return this.text.tokenize(text, options);
  }

  detokenize(tokens: ArrayLike<number>): string {
    return this.text.detokenize(tokens);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string {
    return this.text.applyChatTemplate(messages, options?.addGenerationPrompt ?? true);
  }

  createSequence(options: SequenceOptions = {}): Sequence {
    if (this.disposed) throw new Error(`${this.config.modelFile}: model was disposed`);
    const seq = new OnnxSequence(this.nextSequenceId++, this, options.hooks ?? null, () => this.sequences.delete(seq));
    this.sequences.add(seq);
    return seq;
  }

  /** The hook layout a request needs: which points run in JS, in-graph, or are only read. */
  planSpec(hooks: ResidualHooks | null): PlanSpec {
    if (!hooks || hooks.points.length === 0) return { split: [], affine: [], read: [] };
    // Canonical, unique, in forward order (core promises this; a hand-built hooks object may not).
    const byIndex = new Map(hooks.points.map((p) => [pointIndex(p, this.info.nLayers), canonicalPoint(p, this.info.nLayers)]));
    const points = [...byIndex].sort((a, b) => a[0] - b[0]).map(([, p]) => p);
    const affine: AffineSpec[] = [];
    const split: HookPoint[] = [];
    const read: HookPoint[] = [];
    for (const p of points) {
      const name = pointName(p);
      const edit = hooks.affine.get(name);
      if (edit) affine.push({ point: p, lowRank: edit.rank > 0, positioned: !!edit.positions });
      // Read-only points cost an output each, not a cut, even beside points that write.
      else if (!hooks.writes || hooks.readOnly.has(name)) read.push(p);
      else split.push(p);
    }
    return { split, affine, read };
  }

  /** Sessions for a plan, built on first use and cached per hook layout. */
  plan(spec: PlanSpec): Promise<RuntimePlan> {
    const lease = this.acquirePlan(spec);
    lease.release();
    return lease.plan;
  }

  /** Like {@link plan}, holding the plan in the cache until `release`. */
  acquirePlan(spec: PlanSpec): PlanLease {
    if (spec.split.length === 0 && spec.affine.length === 0 && spec.read.length === 0) return { plan: this.base, release() {} };
    const key = planKey(spec);
    let entry = this.plans.get(key);
    if (entry) this.plans.delete(key); // re-insert: the Map's order is the LRU order
    else {
      const plan = this.buildPlan(spec);
      entry = { plan, users: 0 };
      plan.catch(() => this.plans.get(key)?.plan === plan && this.plans.delete(key));
    }
    this.plans.set(key, entry);
    entry.users++;
    this.evictPlans();
    let released = false;
    return {
      plan: entry.plan,
      release: () => {
        if (released) return;
        released = true;
        entry.users--;
        this.evictPlans();
      },
    };
  }

  /** Number of hooked plans currently cached (for tests). */
  get cachedPlans(): number {
    return this.plans.size;
  }

  private evictPlans(): void {
    for (const [key, entry] of this.plans) {
      if (this.plans.size <= this.maxCachedPlans) return;
      if (entry.users > 0) continue;
      this.plans.delete(key);
      void releasePlan(entry.plan);
    }
  }

  private async buildPlan(spec: PlanSpec): Promise<RuntimePlan> {
    const graphs = buildPlanGraphs(this.file.model, this.graph, this.sites, this.info.dModel, this.io.hiddenElemType, spec);
    const externalData = [...this.file.externalFiles].map(([path, data]) => ({ path, data }));
    // Segments run one after another, each with its own thread pool: a pool that keeps spinning
    // after its segment ends steals a core from the next one (this machine class has two).
    const spinning = graphs.segments.length > 1 && process.env.STEERKIT_ORT_SPIN !== "1" ? { extra: { session: { intra_op: { allow_spinning: "0" } } } } : {};
    const segments = [];
    for (const s of graphs.segments) {
      const session = await ort.InferenceSession.create(encodeModel(s.model), { ...this.sessionOptions, ...spinning, externalData });
      segments.push({ session, inputs: s.inputs, outputs: s.outputs, cut: s.cut });
    }
    return { segments, steer: graphs.steer, reads: graphs.reads };
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    for (const s of [...this.sequences]) s.free();
    void releasePlan(this.base);
    for (const p of this.plans.values()) void releasePlan(p.plan);
    this.plans.clear();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }
}

function releasePlan(p: Promise<RuntimePlan>): Promise<unknown> {
  return p.then((plan) => Promise.all(plan.segments.map((s) => s.session.release()))).catch(() => {});
}

function intType(graph: OnnxGraph, name: string, file: string): "int32" | "int64" {
  const v = graph.inputs.find((i) => i.name === name)!;
  const t = valueInfoElemType(v);
  if (t === DataType.INT64) return "int64";
  if (t === DataType.INT32) return "int32";
  throw new OnnxModelError(`${file}: input "${name}" has element type ${t}, expected int32 or int64`);
}

export async function loadOnnxModel(path: string, options: OnnxLoadOptions = {}): Promise<OnnxRuntimeModel> {
  const cfg = readExportDir(path);
  const fail = (reason: string): never => {
    throw new OnnxModelError(`${cfg.modelFile}: ${reason}`);
  };
  const file = readOnnxFile(cfg.modelFile);
  checkFiniteInitializers(file, options.checkWeights ?? "small");
  const m = file.model;
  let g: OnnxGraph;
  try {
    g = unwrapMergedDecoder(m.graph!); // Optimum's decoder_model_merged.onnx: its with-past branch
  } catch (e) {
    return fail((e as Error).message);
  }

  for (const o of m.opsetImports) {
    const domain = o.domain ?? "";
    if (!KNOWN_DOMAINS.has(domain)) fail(`imports operator domain "${domain}", which onnxruntime does not provide`);
  }
  const opset = opsetVersion(m, "");
  if (opset !== undefined && (opset < SUPPORTED_ONNX_OPSETS.min || opset > SUPPORTED_ONNX_OPSETS.max)) {
    fail(`uses ai.onnx opset ${opset}; onnxruntime-node 1.30 runs opsets ${SUPPORTED_ONNX_OPSETS.min}..${SUPPORTED_ONNX_OPSETS.max}`);
  }

  const inputNames = new Set(g.inputs.map((v) => v.name ?? ""));
  const idName = ["input_ids", "input_ids_0"].find((n) => inputNames.has(n));
  let kv: KvLayout | null;
  try {
    kv = detectKvLayout(g, { kvHeads: cfg.kvHeads, headDim: cfg.headDim });
  } catch (e) {
    return fail((e as Error).message);
  }
  if (!kv) {
    const outs = g.outputs.map((v) => v.name).join(", ");
    return fail(
      `no KV-cache inputs (past_key_values.N.key/value or past_N): not a decoder export with a cache ` +
        `(an encoder-only model or a decoder exported without past?); inputs: ${[...inputNames].join(", ")}; outputs: ${outs}`,
    );
  }
  if (!idName) return fail(`no input_ids input (inputs: ${[...inputNames].join(", ")})`);
  const known = new Set([idName, "position_ids", "attention_mask", ...kv.entries.map((e) => e.input)]);
  const unknown = [...inputNames].filter((n) => !known.has(n) && !g.initializers.some((t) => t.name === n));
  if (unknown.length) fail(`has inputs this adapter does not know how to feed: ${unknown.join(", ")}`);
  const logitsInfo = g.outputs.find((v) => v.name === "logits") ?? g.outputs[0];
  if (!logitsInfo || logitsInfo.name?.startsWith("present")) return fail(`no logits output`);

  let normalized: OnnxGraph;
  let sites: ReadonlyMap<string, string>;
  const { graph: baseGraph, newRows } = outputNewKvRows(g, kv);
  try {
    normalized = splitFusedNorms(baseGraph);
    sites = findResidualChain(normalized, kv.layerOfInput, kv.nLayers).sites;
  } catch (e) {
    return fail((e as Error).message);
  }

  const dModel = cfg.hiddenSize ?? embeddingWidth(normalized, sites.get("resid_pre.0")!) ?? fail(`cannot tell the residual width (no hidden_size in the config and no embedding table found)`);
  const logitsShape = valueInfoShape(logitsInfo);
  const lastDim = logitsShape?.[logitsShape.length - 1];
  const vocabSize = typeof lastDim === "number" ? lastDim : (cfg.vocabSize ?? fail(`cannot tell the vocabulary size`));
  const text = loadTextCodec(cfg);
  const modelContext = cfg.contextLength ?? 2048;
  const info: ModelInfo = {
    backend: "onnx",
    architecture: cfg.architecture,
    name: cfg.name,
    nLayers: kv.nLayers,
    dModel,
    vocabSize,
    contextLength: Math.min(modelContext, options.contextLength ?? modelContext),
    bosToken: text.bosToken,
    eosTokens: text.eosTokens,
    chatTemplate: text.chatTemplate,
  };
  const kvElem = kv.entries[0]!.elemType;
  const io: IoSpec = {
    inputIds: { name: idName, type: intType(g, idName, cfg.modelFile) },
    positionIds: inputNames.has("position_ids") ? { name: "position_ids", type: intType(g, "position_ids", cfg.modelFile) } : null,
    attentionMask: inputNames.has("attention_mask") ? { name: "attention_mask", type: intType(g, "attention_mask", cfg.modelFile) } : null,
    logits: logitsInfo.name!,
    logitsElemType: valueInfoElemType(logitsInfo) ?? DataType.FLOAT,
    kv,
    newKvRows: newRows,
    hiddenElemType: kvElem === DataType.FLOAT16 ? DataType.FLOAT16 : DataType.FLOAT,
  };
  const sessionOptions: ort.InferenceSession.SessionOptions = {
    ...(options.threads !== undefined ? { intraOpNumThreads: options.threads } : {}),
    interOpNumThreads: 1,
    graphOptimizationLevel: options.graphOptimizationLevel ?? "all",
    executionMode: "sequential",
    logSeverityLevel: 3,
  };
  const model = new OnnxRuntimeModel(info, cfg, file, baseGraph, normalized, sites, io, text, sessionOptions, options.maxCachedPlans ?? 4);
  try {
    await model.ready();
  } catch (e) {
    return fail(`onnxruntime cannot load it: ${(e as Error).message}`);
  }
  await model.checkBatching();
  return model;
}

/** Width of the embedding table that feeds resid_pre.0 (its Gather's 2-D weight). */
function embeddingWidth(graph: OnnxGraph, embedding: string): number | undefined {
  const ix = indexGraph(graph);
  const stack = [embedding];
  const seen = new Set<string>();
  while (stack.length) {
    const t = stack.pop()!;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = ix.producer.get(t);
    if (p === undefined) continue;
    const n = graph.nodes[p]!;
    if (n.opType === "Gather") {
      const table = graph.initializers.find((i) => i.name === n.inputs[0]);
      if (table && table.dims.length === 2) return table.dims[1];
    }
    for (const x of n.inputs) if (x !== "") stack.push(x);
  }
  return undefined;
}
