/**
 * A plain TypeScript forward pass of the llama math written down in src/convert/llama-gguf.ts,
 * one token at a time with a float32 KV cache. It is the converter tests' independent oracle: it
 * shares nothing with the ONNX graph but the weights, so agreement checks the graph's wiring
 * (rope pairing, grouped heads, masks) rather than restating it. Slow; for tiny models only.
 */
import { type LlamaGguf, readWeightF32 } from "../../src/convert/llama-gguf.ts";

interface Layer {
  attnNorm: Float32Array;
  wq: Float32Array;
  wk: Float32Array;
  wv: Float32Array;
  wo: Float32Array;
  ffnNorm: Float32Array;
  wGate: Float32Array;
  wUp: Float32Array;
  wDown: Float32Array;
  keys: Float32Array[];
  values: Float32Array[];
}

/** y[o] = Σ_i W[o*nIn + i] x[i]  (W in ggml order: row-major [out][in]). */
function matvec(w: Float32Array, x: Float32Array, nIn: number, nOut: number): Float32Array {
  const y = new Float32Array(nOut);
  for (let o = 0; o < nOut; o++) {
    let s = 0;
    const base = o * nIn;
    for (let i = 0; i < nIn; i++) s += w[base + i]! * x[i]!;
    y[o] = s;
  }
  return y;
}

function rmsNorm(x: Float32Array, w: Float32Array, eps: number): Float32Array {
  let ss = 0;
  for (let i = 0; i < x.length; i++) ss += x[i]! * x[i]!;
  const scale = 1 / Math.sqrt(ss / x.length + eps);
  const y = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) y[i] = x[i]! * scale * w[i]!;
  return y;
}

export class ReferenceLlama {
  private readonly layers: Layer[];
  private readonly embd: Float32Array;
  private readonly outNorm: Float32Array;
  private readonly out: Float32Array;
  private pos = 0;

  constructor(private readonly g: LlamaGguf) {
    const r = (t: Parameters<typeof readWeightF32>[1]) => readWeightF32(g, t);
    this.embd = r(g.tokenEmbd);
    this.outNorm = r(g.outputNorm);
    this.out = r(g.output);
    this.layers = g.layers.map((l) => ({
      attnNorm: r(l.attnNorm),
      wq: r(l.wq),
      wk: r(l.wk),
      wv: r(l.wv),
      wo: r(l.wo),
      ffnNorm: r(l.ffnNorm),
      wGate: r(l.wGate),
      wUp: r(l.wUp),
      wDown: r(l.wDown),
      keys: [],
      values: [],
    }));
  }

  private rope(x: Float32Array, nHeads: number, p: number): void {
    const h = this.g.hparams;
    for (let head = 0; head < nHeads; head++) {
      for (let j = 0; j < h.nRot / 2; j++) {
        const ff = h.ropeFreqFactors ? h.ropeFreqFactors[j]! : 1;
        const theta = (h.ropeFreqScale * p * Math.pow(h.ropeFreqBase, (-2 * j) / h.nRot)) / ff;
        const c = Math.cos(theta) * h.ropeAttnFactor;
        const s = Math.sin(theta) * h.ropeAttnFactor;
        const i0 = head * h.headDim + 2 * j;
        const x0 = x[i0]!;
        const x1 = x[i0 + 1]!;
        x[i0] = x0 * c - x1 * s;
        x[i0 + 1] = x0 * s + x1 * c;
      }
    }
  }

  /** Logits `[vocab]` after feeding `token` at the next position. */
  step(token: number): Float32Array {
    const h = this.g.hparams;
    const d = h.nEmbd;
    const p = this.pos++;
    let x = this.embd.slice(token * d, (token + 1) * d);
    const group = h.nHead / h.nHeadKv;
    for (const l of this.layers) {
      const a = rmsNorm(x, l.attnNorm, h.rmsEps);
      const q = matvec(l.wq, a, d, h.nHead * h.headDim);
      const k = matvec(l.wk, a, d, h.nHeadKv * h.headDim);
      const v = matvec(l.wv, a, d, h.nHeadKv * h.headDim);
      this.rope(q, h.nHead, p);
      this.rope(k, h.nHeadKv, p);
      l.keys.push(k);
      l.values.push(v);
      const attn = new Float32Array(h.nHead * h.headDim);
      const scores = new Float64Array(l.keys.length);
      for (let head = 0; head < h.nHead; head++) {
        const g = Math.floor(head / group);
        let max = -Infinity;
        for (let t = 0; t < l.keys.length; t++) {
          let s = 0;
          for (let i = 0; i < h.headDim; i++) s += q[head * h.headDim + i]! * l.keys[t]![g * h.headDim + i]!;
          scores[t] = s / Math.sqrt(h.headDim);
          max = Math.max(max, scores[t]!);
        }
        let sum = 0;
        for (let t = 0; t < scores.length; t++) sum += scores[t] = Math.exp(scores[t]! - max);
        for (let t = 0; t < scores.length; t++) {
          for (let i = 0; i < h.headDim; i++) attn[head * h.headDim + i] += (scores[t]! / sum) * l.values[t]![g * h.headDim + i]!;
        }
      }
      const o = matvec(l.wo, attn, h.nHead * h.headDim, d);
      const mid = new Float32Array(d);
      for (let i = 0; i < d; i++) mid[i] = x[i]! + o[i]!;
      const f = rmsNorm(mid, l.ffnNorm, h.rmsEps);
      const gate = matvec(l.wGate, f, d, h.nFf);
      const up = matvec(l.wUp, f, d, h.nFf);
      for (let i = 0; i < h.nFf; i++) gate[i] = (gate[i]! / (1 + Math.exp(-gate[i]!))) * up[i]!;
      const down = matvec(l.wDown, gate, h.nFf, d);
      x = new Float32Array(d);
      for (let i = 0; i < d; i++) x[i] = mid[i]! + down[i]!;
    }
    return matvec(this.out, rmsNorm(x, this.outNorm, h.rmsEps), d, h.vocabSize);
  }
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i]! > x[best]!) best = i;
  return best;
}

/** Decode ids with a SentencePiece GGUF vocabulary: `▁` is a space, `<0xNN>` are bytes, specials dropped. */
export function decodeWithVocab(tokens: readonly string[], ids: readonly number[]): string {
  const bytes: number[] = [];
  const enc = new TextEncoder();
  for (const id of ids) {
    const piece = tokens[id]!;
    if (piece === "<s>" || piece === "</s>" || piece === "<unk>") continue;
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
    if (m) bytes.push(parseInt(m[1]!, 16));
    else bytes.push(...enc.encode(piece.replaceAll("\u2581", " ")));
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
