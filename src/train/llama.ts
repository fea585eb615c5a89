/**
 * Full-gradient fine-tuning of a small llama-architecture GGUF in TypeScript: forward pass,
 * backward pass and AdamW, every weight trained, per-token loss weights.
 *
 * Why a trainer of our own beside `finetune` (llama.cpp's `llama_opt_*`, src/adapters/llama-cpp/train.ts):
 * llama.cpp's training graph reads keys and values back from the KV cache, and the cache is a buffer,
 * not a node of the graph, so no gradient reaches `attn_k` / `attn_v` or flows from a position to the
 * positions before it through attention; and `token_embd` is not trained (a FIXME there). Measured on
 * stories260K: after 4,880 steps `attn_k`, `attn_v` and `token_embd` were bit-identical to the base
 * model. A model that must decide at `Assistant:` from a word several tokens back ("kicking" vs
 * "hugging") needs exactly those gradients. No npm library trains a GGUF llama on CPU, and the model
 * this is for has 260K parameters, so plain loops over Float64Arrays are fast enough (0.26 s per
 * 256-token window forward and backward on one core: under three minutes per epoch of ~150K tokens)
 * and small enough to check against finite differences (the tests do).
 *
 * The math is llama.cpp's llama graph, as the reference backend computes it (src/testing/reference-llama.ts):
 * RMSNorm, RoPE over adjacent pairs (NORM) or halves (NEOX), grouped-query causal attention, SwiGLU,
 * final RMSNorm, output matrix (or the tied embedding). Architectures with anything else (biases,
 * LayerNorm, soft-caps, post-norms, learned positions, sliding windows, fused tensors) and non-F32
 * weights are refused by name: this trains small F32 models, it is not a general trainer.
 *
 * Loss: sum over positions r of w[r] * CE(logits_r, next token) / window, averaged over the windows
 * of a step (the same scaling as `finetune`'s `lossWeights`: weights averaging 1 give the mean loss).
 */
import { writeFileSync } from "node:fs";
import { SteerkitError } from "../core/errors.ts";
import { createRng } from "../core/sampling.ts";
import { openLlamaGguf, readWeightF32, ropeFactors, ropeInverseFrequencies, type LlamaGguf, type LlamaHParams } from "../convert/llama-gguf.ts";
import { readRawMetadata, readTensorBytes, type GgufTensorInfo } from "../formats/gguf.ts";
import { GGML_TYPE } from "../formats/ggml-types.ts";
import { encodeGguf, type GgufTyped } from "../formats/gguf-write.ts";
import { checkLossWeights, type TrainingResult, type TrainingSchedule } from "./schedule.ts";

export class TrainError extends SteerkitError {
  override name = "TrainError";
  constructor(message: string) {
    super("BACKEND_FAILED", message);
  }
}

export interface TrainOptions extends TrainingSchedule {
  /** Windows per optimizer step (their gradients are averaged). Default 1. */
  readonly batch?: number;
  /** Clip the gradient to this global L2 norm before each step (0 or omitted: no clipping). */
  readonly clipNorm?: number;
  /** Loss weights of the validation windows, so their loss is the one trained on (default: every position weighs 1). */
  readonly validationLossWeights?: readonly Float32Array[];
  /** Names of tensors to keep fixed (e.g. `token_embd.weight`). */
  readonly frozen?: readonly string[];
}

export type TrainResult = TrainingResult;

interface Layer {
  attnNorm: Float64Array;
  wq: Float64Array;
  wk: Float64Array;
  wv: Float64Array;
  wo: Float64Array;
  ffnNorm: Float64Array;
  wGate: Float64Array;
  wUp: Float64Array;
  wDown: Float64Array;
}

/** The trainable tensors by GGUF name, in float64, and the shapes the math needs. */
export class LlamaWeights {
  readonly tensors = new Map<string, Float64Array>();
  readonly layers: Layer[] = [];
  readonly embd: Float64Array;
  readonly outputNorm: Float64Array;
  readonly output: Float64Array;
  readonly ropeInvFreq: Float64Array;

  private constructor(
    readonly path: string,
    readonly gguf: LlamaGguf,
  ) {
    const h = gguf.hparams;
    const take = (t: GgufTensorInfo): Float64Array => {
      const w = Float64Array.from(readWeightF32(gguf, t));
      this.tensors.set(t.name, w);
      return w;
    };
    this.embd = take(gguf.tokenEmbd);
    this.outputNorm = take(gguf.outputNorm);
    this.output = h.tiedEmbeddings ? this.embd : take(gguf.output);
    for (const l of gguf.layers) {
      this.layers.push({
        attnNorm: take(l.attnNorm), wq: take(l.wq!), wk: take(l.wk!), wv: take(l.wv!), wo: take(l.wo),
        ffnNorm: take(l.ffnNorm), wGate: take(l.wGate!), wUp: take(l.wUp), wDown: take(l.wDown),
      });
    }
    this.ropeInvFreq = ropeInverseFrequencies(h, h.layerRope[0]!, ropeFactors(h, h.contextLength));
  }

  get hparams(): LlamaHParams {
    return this.gguf.hparams;
  }

  /**
   * Open a GGUF this trainer can train, or throw naming what it cannot.
   * @example
   * ```ts
   * const w = LlamaWeights.open("models/stories260K.gguf");
   * w.hparams.nLayers; // 5
   * ```
   */
  static open(path: string): LlamaWeights {
    const g = openLlamaGguf(path);
    const h = g.hparams;
    const p = h.profile;
    const refuse = (what: string): never => {
      throw new TrainError(`${path}: the TypeScript trainer handles plain llama blocks only; this model has ${what}`);
    };
    if (p.norm !== "rms") refuse("LayerNorm");
    if (p.rope === "none") refuse("no RoPE");
    if (p.qkNorm) refuse("q/k norms");
    if (p.ffn !== "swiglu" || p.fusedGateUp) refuse(`a ${p.fusedGateUp ? "fused gate/up" : p.ffn} MLP`);
    if (p.postNorms) refuse("post-norms");
    if (h.embedScale !== 1) refuse("an embedding scale");
    if (g.posEmbd) refuse("learned positions");
    if (h.attnSoftcap || h.finalSoftcap) refuse("logit soft-caps");
    if (h.slidingWindow.some((w) => w > 0)) refuse("sliding-window attention");
    if (!h.ropeLayers.every(Boolean) || h.layerRope.some((r) => r.freqBase !== h.layerRope[0]!.freqBase || r.freqScale !== h.layerRope[0]!.freqScale)) refuse("per-layer RoPE");
    if (h.ropeAttnFactor !== 1 || h.longrope) refuse("scaled RoPE");
    if (g.outputBias || g.outputNormB) refuse("output biases");
    for (const l of g.layers) {
      if (l.wqkv) refuse("fused q/k/v");
      if (l.bq || l.bk || l.bv || l.bo || l.bGate || l.bUp || l.bDown || l.attnNormB || l.ffnNormB) refuse("biases");
    }
    const tensors = [g.tokenEmbd, g.outputNorm, g.output, ...g.layers.flatMap((l) => [l.attnNorm, l.wq!, l.wk!, l.wv!, l.wo, l.ffnNorm, l.wGate!, l.wUp, l.wDown])];
    const notF32 = tensors.find((t) => t.type !== GGML_TYPE.F32);
    if (notF32) throw new TrainError(`${path}: tensor ${notF32.name} is not F32 (type ${notF32.type}); the trainer needs F32 weights (convert with --outtype f32)`);
    return new LlamaWeights(path, g);
  }

  /** Zeroed arrays shaped like every trainable tensor (gradients, optimizer moments). */
  zerosLike(): Map<string, Float64Array> {
    return new Map([...this.tensors].map(([k, v]) => [k, new Float64Array(v.length)]));
  }

  /**
   * Write the weights into a copy of the source GGUF: same metadata (with `overrides`), same tensor
   * order and types (F32), new data.
   * @example
   * ```ts
   * w.save("out.gguf", { "general.name": { type: "string", value: "tuned" } });
   * ```
   */
  save(outPath: string, overrides: Record<string, GgufTyped> = {}): void {
    const base = this.gguf.file;
    const metadata: [string, GgufTyped][] = [...base.metadata.keys()]
      .filter((k) => !(k in overrides))
      .map((k) => [k, { type: "raw", bytes: readRawMetadata(base, k) }]);
    for (const [k, v] of Object.entries(overrides)) metadata.push([k, v]);
    const tensors = base.tensors.map((t) => {
      const w = this.tensors.get(t.name);
      const data = w ? new Uint8Array(Float32Array.from(w).buffer) : readTensorBytes(base, t);
      return { name: t.name, type: t.type, dims: t.dims, data };
    });
    writeFileSync(outPath, encodeGguf({ version: base.version, alignment: base.alignment, metadata, tensors }));
  }
}

// ---- dense kernels (row-major; a weight W of GGUF dims [in, out] is `out` rows of `in`) ----

/** Y[T×out] = X[T×in] Wᵀ. */
function matmul(X: Float64Array, W: Float64Array, Y: Float64Array, T: number, nIn: number, nOut: number): void {
  for (let t = 0; t < T; t++) {
    const xo = t * nIn;
    const yo = t * nOut;
    for (let o = 0; o < nOut; o++) {
      const wo = o * nIn;
      let s = 0;
      for (let i = 0; i < nIn; i++) s += X[xo + i]! * W[wo + i]!;
      Y[yo + o] = s;
    }
  }
}

/** dX[T×in] += dY[T×out] W and dW[out×in] += dYᵀ X (dW skipped when null). */
function matmulBack(dY: Float64Array, X: Float64Array, W: Float64Array, dX: Float64Array, dW: Float64Array | null, T: number, nIn: number, nOut: number): void {
  for (let t = 0; t < T; t++) {
    const xo = t * nIn;
    const yo = t * nOut;
    for (let o = 0; o < nOut; o++) {
      const g = dY[yo + o]!;
      if (g === 0) continue;
      const wo = o * nIn;
      for (let i = 0; i < nIn; i++) dX[xo + i] = dX[xo + i]! + g * W[wo + i]!;
      if (dW) for (let i = 0; i < nIn; i++) dW[wo + i] = dW[wo + i]! + g * X[xo + i]!;
    }
  }
}

/** Y = X / rms(X) ⊙ g per row; keeps 1/rms per row in `inv`. */
function rmsNorm(X: Float64Array, g: Float64Array, Y: Float64Array, inv: Float64Array, T: number, D: number, eps: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * D;
    let ss = 0;
    for (let i = 0; i < D; i++) ss += X[o + i]! * X[o + i]!;
    const s = 1 / Math.sqrt(ss / D + eps);
    inv[t] = s;
    for (let i = 0; i < D; i++) Y[o + i] = X[o + i]! * s * g[i]!;
  }
}

/** dX += RMSNorm backward of dY; dg += Σ_t dY ⊙ X/rms. */
function rmsNormBack(dY: Float64Array, X: Float64Array, g: Float64Array, inv: Float64Array, dX: Float64Array, dg: Float64Array, T: number, D: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * D;
    const s = inv[t]!;
    let dot = 0;
    for (let i = 0; i < D; i++) {
      const n = X[o + i]! * s;
      const dn = dY[o + i]! * g[i]!;
      dg[i] = dg[i]! + dY[o + i]! * n;
      dot += dn * n;
    }
    dot /= D;
    for (let i = 0; i < D; i++) dX[o + i] = dX[o + i]! + s * (dY[o + i]! * g[i]! - X[o + i]! * s * dot);
  }
}

/** Rotate each head's pairs by +θ (forward) or -θ (backward: the transpose), position t = row. */
function rope(X: Float64Array, T: number, nHeads: number, headDim: number, cos: Float64Array, sin: Float64Array, half: number, neox: boolean, sign: 1 | -1): void {
  const stride = neox ? 1 : 2;
  const partner = neox ? half : 1;
  const width = nHeads * headDim;
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const base = t * width + h * headDim;
      for (let j = 0; j < half; j++) {
        const c = cos[t * half + j]!;
        const s = sign * sin[t * half + j]!;
        const i0 = base + stride * j;
        const x0 = X[i0]!;
        const x1 = X[i0 + partner]!;
        X[i0] = x0 * c - x1 * s;
        X[i0 + partner] = x0 * s + x1 * c;
      }
    }
  }
}

/** The widths the passes index by: residual, q, kv, ffn, vocabulary, head; heads per kv head; rope layout. */
function shapes(h: LlamaHParams) {
  return {
    D: h.nEmbd, Q: h.nHead * h.headDim, KV: h.nHeadKv * h.headDim, F: h.nFf, V: h.vocabSize, hd: h.headDim,
    group: h.nHead / h.nHeadKv, neox: h.profile.rope === "neox", half: h.nRot / 2,
  };
}

interface LayerCache {
  xIn: Float64Array;
  inv1: Float64Array;
  a: Float64Array;
  q: Float64Array;
  k: Float64Array;
  v: Float64Array;
  probs: Float64Array;
  o: Float64Array;
  xMid: Float64Array;
  inv2: Float64Array;
  b: Float64Array;
  gate: Float64Array;
  up: Float64Array;
  act: Float64Array;
}

/**
 * The forward and backward pass over one window, with every buffer allocated once for `T` tokens.
 * @example
 * ```ts
 * const pass = new LlamaPass(LlamaWeights.open("models/stories260K.gguf"), 256);
 * const loss = pass.forward(tokens, weights); // tokens: window + 1 ids
 * pass.backward(grads, 1);
 * ```
 */
export class LlamaPass {
  readonly T: number;
  private readonly caches: LayerCache[];
  private readonly x: Float64Array;
  private readonly xFinal: Float64Array;
  private readonly invF: Float64Array;
  private readonly f: Float64Array;
  private readonly logits: Float64Array;
  private readonly cos: Float64Array;
  private readonly sin: Float64Array;
  private readonly rowWeight: Float64Array;
  private readonly tokens: Int32Array;
  // backward scratch
  private readonly dx: Float64Array;
  private readonly dA: Float64Array;
  private readonly dQ: Float64Array;
  private readonly dK: Float64Array;
  private readonly dV: Float64Array;
  private readonly dO: Float64Array;
  private readonly dF: Float64Array;
  private readonly dProbs: Float64Array;

  constructor(
    readonly w: LlamaWeights,
    T: number,
  ) {
    this.T = T;
    const h = w.hparams;
    const D = h.nEmbd;
    const Q = h.nHead * h.headDim;
    const KV = h.nHeadKv * h.headDim;
    const F = h.nFf;
    const f64 = (n: number) => new Float64Array(n);
    this.caches = w.layers.map(() => ({
      xIn: f64(T * D), inv1: f64(T), a: f64(T * D), q: f64(T * Q), k: f64(T * KV), v: f64(T * KV), probs: f64(h.nHead * T * T), o: f64(T * Q),
      xMid: f64(T * D), inv2: f64(T), b: f64(T * D), gate: f64(T * F), up: f64(T * F), act: f64(T * F),
    }));
    this.x = f64(T * D);
    this.xFinal = f64(T * D);
    this.invF = f64(T);
    this.f = f64(T * D);
    this.logits = f64(T * h.vocabSize);
    const half = h.nRot / 2;
    this.cos = f64(T * half);
    this.sin = f64(T * half);
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < half; j++) {
        const theta = t * w.ropeInvFreq[j]!;
        this.cos[t * half + j] = Math.cos(theta);
        this.sin[t * half + j] = Math.sin(theta);
      }
    }
    this.rowWeight = f64(T);
    this.tokens = new Int32Array(T + 1);
    this.dx = f64(T * D);
    this.dA = f64(T * D);
    this.dQ = f64(T * Q);
    this.dK = f64(T * KV);
    this.dV = f64(T * KV);
    this.dO = f64(T * Q);
    this.dF = f64(T * F);
    this.dProbs = f64(T);
  }

  /**
   * Run `tokens` (T + 1 ids: inputs 0..T-1, labels 1..T) and return the weighted loss
   * `Σ w[r]·CE_r / T`; afterwards `logits` rows hold the softmax of each position.
   */
  forward(tokens: Int32Array, weights?: Float32Array): number {
    const { T, w } = this;
    const h = w.hparams;
    const { D, Q, KV, F, V, hd, group, neox, half } = shapes(h);
    const scale = h.queryScale;
    const eps = h.normEps;
    if (tokens.length !== T + 1) throw new TrainError(`a window has ${tokens.length} tokens, expected ${T + 1}`);
    for (let i = 0; i <= T; i++) {
      const id = tokens[i]!;
      if (!(id >= 0 && id < V)) throw new TrainError(`token ${id} at position ${i} is outside the vocabulary (0..${V - 1})`);
    }
    this.tokens.set(tokens);
    for (let t = 0; t < T; t++) this.rowWeight[t] = weights ? weights[t]! : 1;
    const x = this.x;
    for (let t = 0; t < T; t++) x.set(w.embd.subarray(tokens[t]! * D, tokens[t]! * D + D), t * D);

    for (let il = 0; il < w.layers.length; il++) {
      const L = w.layers[il]!;
      const c = this.caches[il]!;
      c.xIn.set(x);
      rmsNorm(x, L.attnNorm, c.a, c.inv1, T, D, eps);
      matmul(c.a, L.wq, c.q, T, D, Q);
      matmul(c.a, L.wk, c.k, T, D, KV);
      matmul(c.a, L.wv, c.v, T, D, KV);
      rope(c.q, T, h.nHead, hd, this.cos, this.sin, half, neox, 1);
      rope(c.k, T, h.nHeadKv, hd, this.cos, this.sin, half, neox, 1);
      c.o.fill(0);
      for (let head = 0; head < h.nHead; head++) {
        const ko = Math.floor(head / group) * hd;
        for (let i = 0; i < T; i++) {
          const qo = i * Q + head * hd;
          const po = (head * T + i) * T;
          let max = -Infinity;
          for (let t = 0; t <= i; t++) {
            let s = 0;
            const kt = t * KV + ko;
            for (let e = 0; e < hd; e++) s += c.q[qo + e]! * c.k[kt + e]!;
            s *= scale;
            c.probs[po + t] = s;
            if (s > max) max = s;
          }
          let sum = 0;
          for (let t = 0; t <= i; t++) {
            const p = Math.exp(c.probs[po + t]! - max);
            c.probs[po + t] = p;
            sum += p;
          }
          const inv = 1 / sum;
          for (let t = 0; t <= i; t++) {
            const p = (c.probs[po + t] = c.probs[po + t]! * inv);
            const vt = t * KV + ko;
            for (let e = 0; e < hd; e++) c.o[qo + e] = c.o[qo + e]! + p * c.v[vt + e]!;
          }
        }
      }
      matmul(c.o, L.wo, this.dA, T, Q, D); // dA as scratch for the branch
      for (let i = 0; i < T * D; i++) x[i] = x[i]! + this.dA[i]!;
      c.xMid.set(x);
      rmsNorm(x, L.ffnNorm, c.b, c.inv2, T, D, eps);
      matmul(c.b, L.wGate, c.gate, T, D, F);
      matmul(c.b, L.wUp, c.up, T, D, F);
      for (let i = 0; i < T * F; i++) {
        const g = c.gate[i]!;
        c.act[i] = (g / (1 + Math.exp(-g))) * c.up[i]!;
      }
      matmul(c.act, L.wDown, this.dA, T, F, D);
      for (let i = 0; i < T * D; i++) x[i] = x[i]! + this.dA[i]!;
    }
    this.xFinal.set(x);
    rmsNorm(x, w.outputNorm, this.f, this.invF, T, D, eps);
    matmul(this.f, w.output, this.logits, T, D, V);
    let loss = 0;
    for (let t = 0; t < T; t++) {
      const o = t * V;
      let max = -Infinity;
      for (let j = 0; j < V; j++) if (this.logits[o + j]! > max) max = this.logits[o + j]!;
      let sum = 0;
      for (let j = 0; j < V; j++) {
        const e = Math.exp(this.logits[o + j]! - max);
        this.logits[o + j] = e;
        sum += e;
      }
      for (let j = 0; j < V; j++) this.logits[o + j] = this.logits[o + j]! / sum;
      loss -= this.rowWeight[t]! * Math.log(Math.max(this.logits[o + tokens[t + 1]!]!, 1e-300));
    }
    return loss / T;
  }

  /** The next-token probabilities of the last forward, T rows of vocabSize (overwritten by `backward`). */
  probabilities(): Float64Array {
    return this.logits;
  }

  /**
   * Add the gradient of the last forward's loss, times `scale`, into `grads` (by tensor name; a tensor
   * missing from `grads` is not differentiated into). Once per forward: it reuses the forward's buffers.
   */
  backward(grads: Map<string, Float64Array>, scale: number): void {
    const { T, w } = this;
    const h = w.hparams;
    const { D, Q, KV, F, V, hd, group, neox, half } = shapes(h);
    const qs = h.queryScale;
    const g = w.gguf;
    const grad = (t: GgufTensorInfo) => grads.get(t.name) ?? null;

    // d logits = w_r (p - onehot) * scale / T, in place over the probabilities.
    const dLogits = this.logits;
    for (let t = 0; t < T; t++) {
      const k = (this.rowWeight[t]! * scale) / T;
      const o = t * V;
      if (k === 0) {
        dLogits.fill(0, o, o + V);
        continue;
      }
      for (let j = 0; j < V; j++) dLogits[o + j] = dLogits[o + j]! * k;
      dLogits[o + this.tokens[t + 1]!] = dLogits[o + this.tokens[t + 1]!]! - k;
    }
    const dx = this.dx;
    const dA = this.dA;
    dA.fill(0);
    matmulBack(dLogits, this.f, w.output, dA, grad(g.output), T, D, V);
    dx.fill(0);
    rmsNormBack(dA, this.xFinal, w.outputNorm, this.invF, dx, grad(g.outputNorm) ?? new Float64Array(D), T, D);

    for (let il = w.layers.length - 1; il >= 0; il--) {
      const L = w.layers[il]!;
      const G = g.layers[il]!;
      const c = this.caches[il]!;
      // FFN branch: x_out = x_mid + act Wdownᵀ
      const dAct = this.dF;
      dAct.fill(0);
      matmulBack(dx, c.act, L.wDown, dAct, grad(G.wDown), T, F, D);
      const dGate = c.gate; // reuse: gate/up are not needed after this
      const dUp = c.up;
      for (let i = 0; i < T * F; i++) {
        const gv = c.gate[i]!;
        const sg = 1 / (1 + Math.exp(-gv));
        const silu = gv * sg;
        const u = c.up[i]!;
        const da = dAct[i]!;
        dUp[i] = da * silu;
        dGate[i] = da * u * sg * (1 + gv * (1 - sg));
      }
      dA.fill(0);
      matmulBack(dGate, c.b, L.wGate, dA, grad(G.wGate!), T, D, F);
      matmulBack(dUp, c.b, L.wUp, dA, grad(G.wUp), T, D, F);
      rmsNormBack(dA, c.xMid, L.ffnNorm, c.inv2, dx, grad(G.ffnNorm) ?? new Float64Array(D), T, D);

      // Attention branch: x_mid = x_in + o Woᵀ
      const dO = this.dO;
      dO.fill(0);
      matmulBack(dx, c.o, L.wo, dO, grad(G.wo), T, Q, D);
      const dQ = this.dQ;
      const dK = this.dK;
      const dV = this.dV;
      dQ.fill(0);
      dK.fill(0);
      dV.fill(0);
      const dP = this.dProbs;
      for (let head = 0; head < h.nHead; head++) {
        const ko = Math.floor(head / group) * hd;
        for (let i = 0; i < T; i++) {
          const qo = i * Q + head * hd;
          const po = (head * T + i) * T;
          let dot = 0;
          for (let t = 0; t <= i; t++) {
            const vt = t * KV + ko;
            let s = 0;
            for (let e = 0; e < hd; e++) s += dO[qo + e]! * c.v[vt + e]!;
            dP[t] = s;
            const p = c.probs[po + t]!;
            dot += p * s;
            for (let e = 0; e < hd; e++) dV[vt + e] = dV[vt + e]! + p * dO[qo + e]!;
          }
          for (let t = 0; t <= i; t++) {
            const dS = c.probs[po + t]! * (dP[t]! - dot) * qs;
            if (dS === 0) continue;
            const kt = t * KV + ko;
            for (let e = 0; e < hd; e++) {
              dQ[qo + e] = dQ[qo + e]! + dS * c.k[kt + e]!;
              dK[kt + e] = dK[kt + e]! + dS * c.q[qo + e]!;
            }
          }
        }
      }
      rope(dQ, T, h.nHead, hd, this.cos, this.sin, half, neox, -1);
      rope(dK, T, h.nHeadKv, hd, this.cos, this.sin, half, neox, -1);
      dA.fill(0);
      matmulBack(dQ, c.a, L.wq, dA, grad(G.wq!), T, D, Q);
      matmulBack(dK, c.a, L.wk, dA, grad(G.wk!), T, D, KV);
      matmulBack(dV, c.a, L.wv, dA, grad(G.wv!), T, D, KV);
      rmsNormBack(dA, c.xIn, L.attnNorm, c.inv1, dx, grad(G.attnNorm) ?? new Float64Array(D), T, D);
    }
    const dE = grad(g.tokenEmbd);
    if (dE) {
      for (let t = 0; t < T; t++) {
        const eo = this.tokens[t]! * D;
        for (let i = 0; i < D; i++) dE[eo + i] = dE[eo + i]! + dx[t * D + i]!;
      }
    }
  }
}

/**
 * Fine-tune every weight of a small F32 llama GGUF on token windows; returns the trained weights
 * (save them with `weights.save`).
 * @example
 * ```ts
 * const { weights, result } = trainLlama("models/stories260K.gguf", windows, [], { window: 256, epochs: 2, learningRate: 1e-3, seed: 1 });
 * weights.save("tuned.gguf");
 * ```
 */
export function trainLlama(
  modelPath: string,
  windows: readonly Int32Array[],
  validation: readonly Int32Array[],
  options: TrainOptions,
): { weights: LlamaWeights; result: TrainResult } {
  const n = options.window;
  const batch = options.batch ?? 1;
  for (const key of ["window", "epochs"] as const) {
    if (!Number.isInteger(options[key]) || options[key] < 1) throw new TrainError(`${key} must be a positive integer, got ${options[key]}`);
  }
  if (!Number.isInteger(batch) || batch < 1) throw new TrainError(`batch must be a positive integer, got ${batch}`);
  if (windows.length === 0) throw new TrainError("no training windows");
  for (const [name, set] of [["windows", windows], ["validation", validation]] as const) {
    set.forEach((win, i) => {
      if (win.length !== n + 1) throw new TrainError(`${name}[${i}] has ${win.length} tokens, expected window + 1 = ${n + 1}`);
    });
  }
  const lw = options.lossWeights;
  const vw = options.validationLossWeights;
  const fail = (m: string): never => {
    throw new TrainError(m);
  };
  checkLossWeights("lossWeights", lw, windows.length, n, fail);
  checkLossWeights("validationLossWeights", vw, validation.length, n, fail);
  const weights = LlamaWeights.open(modelPath);
  for (const name of options.frozen ?? []) {
    if (!weights.tensors.has(name)) throw new TrainError(`frozen: ${modelPath} has no trainable tensor ${name}`);
  }
  const started = performance.now();
  const pass = new LlamaPass(weights, n);
  const grads = weights.zerosLike();
  for (const name of options.frozen ?? []) grads.delete(name);
  const m = weights.zerosLike();
  const v = weights.zerosLike();
  const stepsPerEpoch = Math.ceil(windows.length / batch);
  const steps = stepsPerEpoch * options.epochs;
  const lr0 = options.learningRate;
  const lr1 = options.learningRateEnd ?? lr0;
  const wd = options.weightDecay ?? 0;
  const [b1, b2, adamEps] = [0.9, 0.999, 1e-8];
  const rng = createRng(options.seed);
  const trainLoss: number[] = [];
  const validationLoss: number[] = [];
  let step = 0;
  for (let epoch = 0; epoch < options.epochs; epoch++) {
    const order = windows.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    let epochLoss = 0;
    for (let s = 0; s < stepsPerEpoch; s++) {
      const members = order.slice(s * batch, (s + 1) * batch);
      for (const g of grads.values()) g.fill(0);
      let stepLoss = 0;
      for (const i of members) {
        stepLoss += pass.forward(windows[i]!, lw?.[i]);
        pass.backward(grads, 1 / members.length);
      }
      stepLoss /= members.length;
      epochLoss += stepLoss * members.length;
      if (options.clipNorm) {
        let ss = 0;
        for (const g of grads.values()) for (let i = 0; i < g.length; i++) ss += g[i]! * g[i]!;
        const norm = Math.sqrt(ss);
        if (norm > options.clipNorm) for (const g of grads.values()) for (let i = 0; i < g.length; i++) g[i] = g[i]! * (options.clipNorm / norm);
      }
      const lr = lr0 + (lr1 - lr0) * (steps > 1 ? step / (steps - 1) : 0);
      step++;
      const c1 = 1 - Math.pow(b1, step);
      const c2 = 1 - Math.pow(b2, step);
      for (const [name, g] of grads) {
        const p = weights.tensors.get(name)!;
        const mm = m.get(name)!;
        const vv = v.get(name)!;
        for (let i = 0; i < p.length; i++) {
          const gi = g[i]!;
          mm[i] = b1 * mm[i]! + (1 - b1) * gi;
          vv[i] = b2 * vv[i]! + (1 - b2) * gi * gi;
          p[i] = p[i]! - lr * ((mm[i]! / c1) / (Math.sqrt(vv[i]! / c2) + adamEps) + wd * p[i]!);
        }
      }
      options.onStep?.(step, steps, stepLoss);
    }
    trainLoss.push(epochLoss / windows.length);
    if (validation.length) {
      let vl = 0;
      validation.forEach((win, i) => (vl += pass.forward(win, vw?.[i])));
      validationLoss.push(vl / validation.length);
    }
  }
  return { weights, result: { steps, trainLoss, validationLoss, seconds: (performance.now() - started) / 1000 } };
}
