/**
 * The reference backend: a deterministic, pure-TypeScript decoder forward pass for every
 * architecture src/convert/architectures.ts describes (llama / Mistral / Llama 3, qwen2, qwen3,
 * smollm3, mistral3, phi3, gemma2, gemma3, gpt2).
 *
 * It exists so plugins can be tested without a native runtime, and so the native adapters and the
 * converter have an oracle to be compared with. The math is each graph as llama.cpp computes it,
 * written down in src/convert/llama-gguf.ts and architectures.ts (RMSNorm or LayerNorm, RoPE over
 * adjacent pairs or halves with partial rotary, grouped-query attention with soft-cap and sliding
 * windows, SwiGLU / GeGLU / GELU MLPs, post-norms, learned positions, tied output when
 * `output.weight` is absent, final soft-cap), in float32 storage with float64 accumulation.
 * Every residual hook point of sites.ts is available at every layer, with the meaning the llama.cpp
 * adapter gives it: `resid_pre.0` is what enters block 0 (after gemma's embedding scale and gpt2's
 * position add), `resid_mid.L` the stream after block L's attention add (after gemma's post-attention
 * norm of the branch), `resid_post.L` the block's output. Affine edits are applied natively so plugin
 * authors can check that their affine form equals their JS hook.
 *
 * Speed: per sequence, every buffer is allocated once (grown by doubling when a longer prefill or
 * context needs it); the per-token path allocates only the small tensor object handed to a JS hook.
 */
import { existsSync, statSync } from "node:fs";
import type {
  AffineEdit,
  BackendAdapter,
  Capability,
  ChatMessage,
  LoadOptions,
  Model,
  ModelInfo,
  ResidualHooks,
  Sequence,
  SequenceOptions,
  TokenizeOptions,
} from "../core/backend.ts";
import { CAPABILITIES } from "../core/backend.ts";
import { checkAffineEdit, checkPrefill } from "../core/backend-kit.ts";
import { renderChat } from "../core/chat-template.ts";
import { applyAffine } from "../core/chain.ts";
import { canonicalPoint, type HookPoint, pointIndex, pointName } from "../core/sites.ts";
import type { Tensor } from "../core/tensor.ts";
import { type LayerRope, type LlamaGguf, type LlamaHParams, openLlamaGguf, readWeightF32, ropeFactors, ropeInverseFrequencies } from "../convert/llama-gguf.ts";
import type { GgufTensorInfo } from "../formats/gguf.ts";
import { GgufTokenizer } from "../formats/gguf-tokenizer.ts";
import { defaultContextLength } from "../default-model.ts";

export const REFERENCE_BACKEND_NAME = "reference";

interface LayerWeights {
  readonly attnNorm: Float32Array;
  readonly attnNormB: Float32Array | null;
  // q/k/v (views into the fused attn_qkv when the file fuses them)
  readonly wq: Float32Array;
  readonly wk: Float32Array;
  readonly wv: Float32Array;
  readonly wo: Float32Array;
  readonly bq: Float32Array | null;
  readonly bk: Float32Array | null;
  readonly bv: Float32Array | null;
  readonly bo: Float32Array | null;
  readonly postAttnNorm: Float32Array | null;
  readonly ffnNorm: Float32Array;
  readonly ffnNormB: Float32Array | null;
  /** Null for the ungated gelu MLP (gpt2); a view into ffn_up for phi3's fused gate/up. */
  readonly wGate: Float32Array | null;
  readonly wUp: Float32Array;
  readonly wDown: Float32Array;
  readonly bGate: Float32Array | null;
  readonly bUp: Float32Array | null;
  readonly bDown: Float32Array | null;
  readonly postFfnNorm: Float32Array | null;
  readonly qNorm: Float32Array | null;
  readonly kNorm: Float32Array | null;
  /** freq_scale * freq_base^(-2j/n_rot) / ff_j for each rotated pair j of this block (null: no rope). */
  readonly ropeInvFreq: Float64Array | null;
}

interface Weights {
  readonly tokenEmbd: Float32Array;
  readonly posEmbd: Float32Array | null;
  readonly outputNorm: Float32Array;
  readonly outputNormB: Float32Array | null;
  readonly output: Float32Array;
  readonly outputBias: Float32Array | null;
  readonly layers: readonly LayerWeights[];
}

/** The weights as float32, and each block's rope table for a context of `contextLength` tokens (phi3 picks its longrope factors by it). */
function loadWeights(g: LlamaGguf, contextLength: number): Weights {
  const r = (t: GgufTensorInfo) => readWeightF32(g, t);
  const opt = (t: GgufTensorInfo | null) => (t ? r(t) : null);
  const h = g.hparams;
  const tokenEmbd = r(g.tokenEmbd);
  const d = h.nEmbd;
  const qDim = h.nHead * h.headDim;
  const kvDim = h.nHeadKv * h.headDim;
  // One table per distinct (base, scale): sliding-window blocks of gemma3 have their own.
  const factors = ropeFactors(h, contextLength);
  const ropeTables = new Map<string, Float64Array>();
  const ropeTable = (rope: LayerRope): Float64Array => {
    const k = `${rope.freqBase}/${rope.freqScale}`;
    let t = ropeTables.get(k);
    if (!t) ropeTables.set(k, (t = ropeInverseFrequencies(h, rope, factors)));
    return t;
  };
  return {
    tokenEmbd,
    posEmbd: opt(g.posEmbd),
    outputNorm: r(g.outputNorm),
    outputNormB: opt(g.outputNormB),
    output: h.tiedEmbeddings ? tokenEmbd : r(g.output),
    outputBias: opt(g.outputBias),
    layers: g.layers.map((l, il) => {
      // Fused tensors hold their parts as consecutive output rows: q, k, v; gate, up.
      const qkv = l.wqkv ? r(l.wqkv) : null;
      const bqkv = opt(l.bqkv);
      const rows = (w: Float32Array, from: number, n: number, width: number) => w.subarray(from * width, (from + n) * width);
      const up = r(l.wUp);
      const fusedGateUp = h.profile.fusedGateUp;
      const rope = h.layerRope[il]!;
      return {
        attnNorm: r(l.attnNorm),
        attnNormB: opt(l.attnNormB),
        wq: qkv ? rows(qkv, 0, qDim, d) : r(l.wq!),
        wk: qkv ? rows(qkv, qDim, kvDim, d) : r(l.wk!),
        wv: qkv ? rows(qkv, qDim + kvDim, kvDim, d) : r(l.wv!),
        wo: r(l.wo),
        bq: bqkv ? bqkv.subarray(0, qDim) : opt(l.bq),
        bk: bqkv ? bqkv.subarray(qDim, qDim + kvDim) : opt(l.bk),
        bv: bqkv ? bqkv.subarray(qDim + kvDim) : opt(l.bv),
        bo: opt(l.bo),
        postAttnNorm: opt(l.postAttnNorm),
        ffnNorm: r(l.ffnNorm),
        ffnNormB: opt(l.ffnNormB),
        wGate: fusedGateUp ? rows(up, 0, h.nFf, d) : opt(l.wGate),
        wUp: fusedGateUp ? rows(up, h.nFf, h.nFf, d) : up,
        wDown: r(l.wDown),
        bGate: opt(l.bGate),
        bUp: opt(l.bUp),
        bDown: opt(l.bDown),
        postFfnNorm: opt(l.postFfnNorm),
        qNorm: opt(l.qNorm),
        kNorm: opt(l.kNorm),
        ropeInvFreq: rope.rotate ? ropeTable(rope) : null,
      };
    }),
  };
}

// ---- kernels (no allocation) -----------------------------------------------------------------

/**
 * out[outOff + o] = Σ_i W[o*nIn + i] x[xOff + i] (+ b[o]); W in ggml order, row-major [out][in].
 * Four partial sums: JavaScriptCore runs this ~35% faster than the plain loop (measured here).
 */
function matvec(
  w: Float32Array,
  b: Float32Array | null,
  x: Float32Array,
  xOff: number,
  nIn: number,
  nOut: number,
  out: Float32Array,
  outOff: number,
): void {
  const n4 = nIn & ~3;
  for (let o = 0; o < nOut; o++) {
    const base = o * nIn;
    let s0 = 0;
    let s1 = 0;
    let s2 = 0;
    let s3 = 0;
    let i = 0;
    for (; i < n4; i += 4) {
      s0 += w[base + i]! * x[xOff + i]!;
      s1 += w[base + i + 1]! * x[xOff + i + 1]!;
      s2 += w[base + i + 2]! * x[xOff + i + 2]!;
      s3 += w[base + i + 3]! * x[xOff + i + 3]!;
    }
    let s = s0 + s1 + (s2 + s3);
    for (; i < nIn; i++) s += w[base + i]! * x[xOff + i]!;
    out[outOff + o] = b ? b[o]! + s : s;
  }
}

/** out[off..] = x[off..] / sqrt(mean(x²) + eps) * w. */
function rmsNorm(x: Float32Array, off: number, n: number, w: Float32Array, eps: number, out: Float32Array): void {
  let ss = 0;
  for (let i = 0; i < n; i++) ss += x[off + i]! * x[off + i]!;
  const scale = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) out[off + i] = x[off + i]! * scale * w[i]!;
}

/** out[off..] = (x - mean) / sqrt(var + eps) * w + b (ggml_norm, then the weight and bias). */
function layerNorm(x: Float32Array, off: number, n: number, w: Float32Array, b: Float32Array, eps: number, out: Float32Array): void {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += x[off + i]!;
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (x[off + i]! - mean) * (x[off + i]! - mean);
  const scale = 1 / Math.sqrt(ss / n + eps);
  for (let i = 0; i < n; i++) out[off + i] = (x[off + i]! - mean) * scale * w[i]! + b[i]!;
}

/** The block's norm: LayerNorm when it has a bias (gpt2), else RMSNorm. */
function norm(x: Float32Array, off: number, n: number, w: Float32Array, b: Float32Array | null, eps: number, out: Float32Array): void {
  if (b) layerNorm(x, off, n, w, b, eps, out);
  else rmsNorm(x, off, n, w, eps, out);
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);
/** GELU, tanh approximation (ggml_gelu; HF gelu_pytorch_tanh / gelu_new). */
function gelu(x: number): number {
  return 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * x * (1 + 0.044715 * x * x)));
}

// ---- the model -------------------------------------------------------------------------------

export interface ReferenceLoadOptions extends LoadOptions {}

/** One action per canonical point index: nothing, a native affine edit, or the JS chain. */
type PointAction = null | { readonly point: HookPoint; readonly affine: AffineEdit | null; readonly readOnly: boolean };

class ReferenceModel implements Model {
  readonly capabilities: readonly Capability[] = CAPABILITIES;
  readonly info: ModelInfo;
  readonly hparams: LlamaHParams;
  private readonly sequences = new Set<ReferenceSequence>();
  private nextSequenceId = 0;
  private disposed = false;
  private readonly bosText: string | undefined;
  private readonly eosText: string | undefined;

  constructor(
    readonly weights: Weights,
    g: LlamaGguf,
    readonly tokenizer: GgufTokenizer,
    contextLength: number,
  ) {
    const h = g.hparams;
    const spec = tokenizer.spec;
    if (spec.tokens.length !== h.vocabSize) {
      throw new RangeError(`${g.file.path}: the tokenizer has ${spec.tokens.length} tokens but token_embd.weight has ${h.vocabSize} rows`);
    }
    this.hparams = h;
    this.info = {
      backend: REFERENCE_BACKEND_NAME,
      architecture: h.architecture,
      name: h.name,
      nLayers: h.nLayers,
      dModel: h.nEmbd,
      vocabSize: h.vocabSize,
      contextLength,
      bosToken: spec.bosId,
      eosTokens: spec.eogIds,
      chatTemplate: spec.chatTemplate,
    };
    this.bosText = spec.bosId !== null ? spec.tokens[spec.bosId] : undefined;
    this.eosText = spec.eosId !== null ? spec.tokens[spec.eosId] : undefined;
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    this.checkAlive();
    return this.tokenizer.encode(text, { addSpecial: options.addBos ?? true, parseSpecial: options.special ?? false });
  }

  detokenize(tokens: ArrayLike<number>): string {
    this.checkAlive();
    // As the llama.cpp adapter does: drop a leading BOS first, so the SentencePiece space llama.cpp
    // would keep after it goes too and detokenize(tokenize(s)) === s on both backends.
    if (tokens.length > 0 && tokens[0] === this.info.bosToken) tokens = Array.prototype.slice.call(tokens, 1) as number[];
    return this.tokenizer.decode(tokens);
  }

  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return renderChat(this.info.chatTemplate, messages, {
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      bosToken: this.bosText,
      eosToken: this.eosText,
    });
  }

  createSequence(options: SequenceOptions = {}): Sequence {
    this.checkAlive();
    const seq = new ReferenceSequence(this, this.nextSequenceId++, options.hooks ?? null, () => this.sequences.delete(seq));
    this.sequences.add(seq);
    return seq;
  }

  dispose(): void {
    if (this.disposed) return;
    for (const s of [...this.sequences]) s.free();
    this.disposed = true;
  }

  checkAlive(): void {
    if (this.disposed) throw new Error(`reference backend: model "${this.info.name}" was disposed`);
  }
}

class ReferenceSequence implements Sequence {
  private len = 0;
  private freed = false;
  private readonly actions: PointAction[];
  private readonly affineScratch: Float64Array;

  // KV cache per layer, [capacity, kvDim] each; grown by doubling up to the context length.
  private kvCapacity = 0;
  private keys: Float32Array[] = [];
  private values: Float32Array[] = [];
  // Activations for up to `rowCapacity` rows at once.
  private rowCapacity = 0;
  private x = new Float32Array(0);
  private xb = new Float32Array(0);
  private q = new Float32Array(0);
  private k = new Float32Array(0);
  private v = new Float32Array(0);
  private attn = new Float32Array(0);
  private gate = new Float32Array(0);
  private up = new Float32Array(0);
  private positions = new Int32Array(0);
  private rowTokens = new Int32Array(0);
  private scores = new Float64Array(0);
  private readonly ropeCos: Float64Array;
  /** One head's attention output, accumulated in float64 before the 1/Σ scaling. */
  private readonly acc: Float64Array;
  private readonly ropeSin: Float64Array;
  private readonly logits: Float32Array;
  private readonly lastRow: Float32Array;

  constructor(
    private readonly model: ReferenceModel,
    readonly id: number,
    private readonly hooks: ResidualHooks | null,
    private readonly onFree: () => void,
  ) {
    const h = model.hparams;
    const nPoints = 2 * h.nLayers + 1;
    this.actions = new Array<PointAction>(nPoints).fill(null);
    let maxRank = 0;
    for (const p of hooks?.points ?? []) {
      const point = canonicalPoint(p, h.nLayers); // a RangeError naming the bad layer/site
      const affine = hooks!.affine.get(pointName(point)) ?? null;
      if (affine) {
        checkAffineEdit(affine, h.nEmbd, `reference backend: ${model.info.name}`);
        maxRank = Math.max(maxRank, affine.rank);
      }
      const readOnly = !hooks!.writes || hooks!.readOnly.has(pointName(point));
      this.actions[pointIndex(point, h.nLayers)] = { point, affine, readOnly };
    }
    this.affineScratch = new Float64Array(Math.max(1, maxRank));
    this.ropeCos = new Float64Array(h.nRot / 2);
    this.acc = new Float64Array(h.headDim);
    this.ropeSin = new Float64Array(h.nRot / 2);
    this.logits = new Float32Array(h.vocabSize);
    this.lastRow = new Float32Array(h.nEmbd);
  }

  get length(): number {
    return this.len;
  }

  async prefill(tokens: ArrayLike<number>): Promise<Float32Array> {
    return this.forward(tokens);
  }

  async decode(token: number): Promise<Float32Array> {
    return this.forward([token]);
  }

  reset(): void {
    this.checkAlive();
    this.len = 0;
  }

  free(): void {
    if (this.freed) return;
    this.freed = true;
    this.keys = [];
    this.values = [];
    this.x = this.xb = this.q = this.k = this.v = this.attn = this.gate = this.up = new Float32Array(0);
    this.kvCapacity = this.rowCapacity = 0;
    this.onFree();
  }

  private checkAlive(): void {
    if (this.freed) throw new Error(`reference backend: sequence ${this.id} was freed`);
    this.model.checkAlive();
  }

  private ensureCapacity(rows: number, total: number): void {
    const h = this.model.hparams;
    if (rows > this.rowCapacity) {
      const n = Math.max(rows, this.rowCapacity * 2, 1);
      const d = h.nEmbd;
      this.x = new Float32Array(n * d);
      this.xb = new Float32Array(n * d);
      this.q = new Float32Array(n * h.nHead * h.headDim);
      this.k = new Float32Array(n * h.nHeadKv * h.headDim);
      this.v = new Float32Array(n * h.nHeadKv * h.headDim);
      this.attn = new Float32Array(n * h.nHead * h.headDim);
      this.gate = new Float32Array(n * h.nFf);
      this.up = new Float32Array(n * h.nFf);
      this.positions = new Int32Array(n);
      this.rowTokens = new Int32Array(n);
      this.rowCapacity = n;
    }
    if (total > this.kvCapacity) {
      const cap = Math.min(this.model.info.contextLength, Math.max(total, this.kvCapacity * 2, 64));
      const kvDim = h.nHeadKv * h.headDim;
      for (let l = 0; l < h.nLayers; l++) {
        const k = new Float32Array(cap * kvDim);
        const v = new Float32Array(cap * kvDim);
        if (this.keys[l]) {
          k.set(this.keys[l]!.subarray(0, this.len * kvDim));
          v.set(this.values[l]!.subarray(0, this.len * kvDim));
        }
        this.keys[l] = k;
        this.values[l] = v;
      }
      this.scores = new Float64Array(cap);
      this.kvCapacity = cap;
    }
  }

  /**
   * Run the point's hook (native affine or the JS chain) over rows `[0, n)` of `x`.
   * Returns false when a hook failed: the caller abandons the pass.
   */
  private hook(index: number, n: number): boolean {
    const action = this.actions[index];
    if (!action) return true;
    const d = this.model.hparams.nEmbd;
    if (action.affine) {
      applyAffine(action.affine, { data: this.x.subarray(0, n * d), dims: [n, d] }, this.affineScratch, this.positions);
      return true;
    }
    const hooks = this.hooks!;
    const view = this.x.subarray(0, n * d);
    const input: Tensor = { data: view, dims: [n, d] };
    const result = hooks.run(action.point, input, this.positions.subarray(0, n), this.rowTokens.subarray(0, n));
    if (hooks.error) return false;
    if (!action.readOnly && result.data !== view) {
      if (result.data.length !== n * d) {
        throw new RangeError(`hook at ${pointName(action.point)} returned ${result.data.length} values, expected ${n}x${d}`);
      }
      view.set(result.data);
    }
    return true;
  }

  private forward(tokens: ArrayLike<number>): Float32Array {
    this.checkAlive();
    const model = this.model;
    const h = model.hparams;
    const w = model.weights;
    const n = tokens.length;
    const start = this.len;
    checkPrefill(tokens, { subject: `reference backend: sequence ${this.id} of ${model.info.name}`, cached: start, contextLength: model.info.contextLength, vocabSize: h.vocabSize });
    this.ensureCapacity(n, start + n);

    const d = h.nEmbd;
    const headDim = h.headDim;
    const qDim = h.nHead * headDim;
    const kvDim = h.nHeadKv * headDim;
    const group = h.nHead / h.nHeadKv;
    const nFf = h.nFf;
    const eps = h.normEps;
    const scale = h.queryScale;
    const softcap = h.attnSoftcap;
    const { x, xb, q, k, v, attn, gate, up, positions, scores, ropeCos, ropeSin, acc } = this;
    const halfRot = h.nRot / 2;
    const neox = h.profile.rope === "neox";
    const attnFactor = h.ropeAttnFactor;
    const ffn = h.profile.ffn;

    // resid_pre.0: token embedding (times gemma's sqrt(n_embd), in float32 as ggml_scale does) plus
    // gpt2's learned position.
    for (let i = 0; i < n; i++) {
      const pos = start + i;
      positions[i] = pos;
      this.rowTokens[i] = tokens[i]!;
      const row = tokens[i]! * d;
      for (let e = 0; e < d; e++) x[i * d + e] = w.tokenEmbd[row + e]! * h.embedScale;
      if (w.posEmbd) for (let e = 0; e < d; e++) x[i * d + e] = x[i * d + e]! + w.posEmbd[pos * d + e]!;
    }
    if (!this.hook(0, n)) return this.abandon();

    for (let l = 0; l < h.nLayers; l++) {
      const L = w.layers[l]!;
      const K = this.keys[l]!;
      const V = this.values[l]!;
      const window = h.slidingWindow[l]!;
      // Attention projections, q/k norms, RoPE, and the KV cache writes for every row first.
      for (let i = 0; i < n; i++) {
        norm(x, i * d, d, L.attnNorm, L.attnNormB, eps, xb);
        matvec(L.wq, L.bq, xb, i * d, d, qDim, q, i * qDim);
        matvec(L.wk, L.bk, xb, i * d, d, kvDim, k, i * kvDim);
        matvec(L.wv, L.bv, xb, i * d, d, kvDim, v, i * kvDim);
        if (L.qNorm && L.kNorm) {
          for (let head = 0; head < h.nHead; head++) rmsNorm(q, i * qDim + head * headDim, headDim, L.qNorm, eps, q);
          for (let head = 0; head < h.nHeadKv; head++) rmsNorm(k, i * kvDim + head * headDim, headDim, L.kNorm, eps, k);
        }
        const pos = start + i;
        if (L.ropeInvFreq) {
          for (let j = 0; j < halfRot; j++) {
            const theta = pos * L.ropeInvFreq[j]!;
            ropeCos[j] = Math.cos(theta) * attnFactor;
            ropeSin[j] = Math.sin(theta) * attnFactor;
          }
          rope(q, i * qDim, h.nHead, headDim, halfRot, neox, ropeCos, ropeSin);
          rope(k, i * kvDim, h.nHeadKv, headDim, halfRot, neox, ropeCos, ropeSin);
        }
        for (let e = 0, src = i * kvDim, dst = pos * kvDim; e < kvDim; e++) {
          K[dst + e] = k[src + e]!;
          V[dst + e] = v[src + e]!;
        }
      }
      // Causal attention: row i sees cached positions 0..start+i (the last `window` of them in a sliding block).
      for (let i = 0; i < n; i++) {
        const last = start + i;
        const first = window > 0 ? Math.max(0, last - window + 1) : 0;
        for (let head = 0; head < h.nHead; head++) {
          const qo = i * qDim + head * headDim;
          const ko = Math.floor(head / group) * headDim;
          let max = -Infinity;
          for (let t = first; t <= last; t++) {
            let s = 0;
            const kt = t * kvDim + ko;
            for (let e = 0; e < headDim; e++) s += q[qo + e]! * K[kt + e]!;
            s *= scale;
            if (softcap > 0) s = softcap * Math.tanh(s / softcap);
            scores[t] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let t = first; t <= last; t++) {
            const p = Math.exp(scores[t]! - max);
            scores[t] = p;
            sum += p;
          }
          const ao = i * qDim + head * headDim;
          acc.fill(0);
          for (let t = first; t <= last; t++) {
            const p = scores[t]!;
            const vt = t * kvDim + ko;
            for (let e = 0; e < headDim; e++) acc[e] = acc[e]! + p * V[vt + e]!;
          }
          const inv = 1 / sum;
          for (let e = 0; e < headDim; e++) attn[ao + e] = acc[e]! * inv;
        }
        // x += post_norm(attn Woᵀ (+ bo)), through xb as scratch
        matvec(L.wo, L.bo, attn, i * qDim, qDim, d, xb, i * d);
        if (L.postAttnNorm) rmsNorm(xb, i * d, d, L.postAttnNorm, eps, xb);
        for (let e = 0; e < d; e++) x[i * d + e] = x[i * d + e]! + xb[i * d + e]!;
      }
      if (!this.hook(1 + 2 * l, n)) return this.abandon();

      // MLP: silu(gate) * up, gelu(gate) * up, or gelu(up) (gpt2)
      for (let i = 0; i < n; i++) {
        norm(x, i * d, d, L.ffnNorm, L.ffnNormB, eps, xb);
        matvec(L.wUp, L.bUp, xb, i * d, d, nFf, up, i * nFf);
        const hidden = L.wGate ? gate : up;
        if (L.wGate) {
          matvec(L.wGate, L.bGate, xb, i * d, d, nFf, gate, i * nFf);
          for (let f = i * nFf, end = f + nFf; f < end; f++) {
            const g = gate[f]!;
            gate[f] = (ffn === "swiglu" ? g / (1 + Math.exp(-g)) : gelu(g)) * up[f]!;
          }
        } else {
          for (let f = i * nFf, end = f + nFf; f < end; f++) up[f] = gelu(up[f]!);
        }
        matvec(L.wDown, L.bDown, hidden, i * nFf, nFf, d, xb, i * d);
        if (L.postFfnNorm) rmsNorm(xb, i * d, d, L.postFfnNorm, eps, xb);
        for (let e = 0; e < d; e++) x[i * d + e] = x[i * d + e]! + xb[i * d + e]!;
      }
      if (!this.hook(2 + 2 * l, n)) return this.abandon();
    }

    // Logits of the last row only.
    const row = this.lastRow;
    norm(x, (n - 1) * d, d, w.outputNorm, w.outputNormB, eps, xb);
    row.set(xb.subarray((n - 1) * d, n * d));
    const logits = this.logits;
    matvec(w.output, w.outputBias, row, 0, d, h.vocabSize, logits, 0);
    const cap = h.finalSoftcap;
    if (cap > 0) for (let t = 0; t < logits.length; t++) logits[t] = cap * Math.tanh(logits[t]! / cap);
    this.len = start + n;
    return logits;
  }

  /** A hook failed: the tokens of this call are not kept (the KV rows past `len` are dead). */
  private abandon(): Float32Array {
    this.logits.fill(0);
    return this.logits;
  }
}

/**
 * Rotate the first 2·halfRot lanes of each head: adjacent pairs (x[2j], x[2j+1]) as ggml's
 * LLAMA_ROPE_TYPE_NORM does, or halves (x[j], x[j + halfRot]) as NEOX does; lanes past n_rot
 * (partial rotary) pass through.
 */
function rope(
  x: Float32Array,
  off: number,
  nHeads: number,
  headDim: number,
  halfRot: number,
  neox: boolean,
  cos: Float64Array,
  sin: Float64Array,
): void {
  const stride = neox ? 1 : 2;
  const partner = neox ? halfRot : 1;
  for (let head = 0; head < nHeads; head++) {
    const base = off + head * headDim;
    for (let j = 0; j < halfRot; j++) {
      const i0 = base + stride * j;
      const x0 = x[i0]!;
      const x1 = x[i0 + partner]!;
      x[i0] = x0 * cos[j]! - x1 * sin[j]!;
      x[i0 + partner] = x0 * sin[j]! + x1 * cos[j]!;
    }
  }
}

/** Load a llama GGUF into the reference backend (synchronous; the adapter's `load` wraps it). */
export function loadReferenceLlama(path: string, options: ReferenceLoadOptions = {}): Model & { readonly hparams: LlamaHParams } {
  const g = openLlamaGguf(path); // refuses, by name, any architecture or tensor architectures.ts does not describe
  const tokenizer = GgufTokenizer.fromGguf(g.file);
  const trained = g.hparams.contextLength;
  const requested = options.contextLength ?? defaultContextLength(path);
  if (requested !== undefined && (!Number.isInteger(requested) || requested <= 0)) {
    throw new RangeError(`reference backend: contextLength must be a positive integer, got ${requested}`);
  }
  const contextLength = Math.min(requested ?? trained, trained);
  return new ReferenceModel(loadWeights(g, contextLength), g, tokenizer, contextLength);
}

/** The reference backend as an adapter (name "reference"; every capability). */
export const referenceLlama: BackendAdapter<ReferenceLoadOptions> = {
  name: REFERENCE_BACKEND_NAME,
  capabilities: CAPABILITIES,
  canOpen(path: string): boolean {
    try {
      return path.toLowerCase().endsWith(".gguf") && existsSync(path) && statSync(path).isFile();
    } catch {
      return false;
    }
  },
  async load(path: string, options?: ReferenceLoadOptions): Promise<Model> {
    return loadReferenceLlama(path, options);
  },
};
