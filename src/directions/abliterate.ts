/**
 * Weight orthogonalization (Arditi et al. 2024, "Refusal in language models is mediated by a single
 * direction", section 4.1): project one unit direction r̂ out of every matrix that writes the
 * residual stream, `W' = W - r̂ r̂ᵀ W`, so the model can no longer write along r̂ and behaves like
 * the original model with `ablate-direction` at every point (`points: "all"`), with no hook.
 *
 * Why one direction: with a direction per point, the edits are not equivalent to any activation
 * ablation (a block's writers cannot remove a later layer's direction from what earlier blocks
 * already wrote), and Arditi et al. use one direction for all. A file with several directions needs
 * `point` to say which one (the one `steerkit directions select` ranks first).
 *
 * Layout (ggml: dims[0] = ne0 is the contiguous row length, a matmul `y = W x` reads rows of ne0
 * inputs and writes one output per row):
 * - `token_embd.weight` [d, n_vocab] (also `position_embd`, `token_types`): each row is a vector
 *   in the residual basis: `e' = e - (e·r̂) r̂`.
 * - `blk.N.attn_output.weight` [n_in, d], `blk.N.ffn_down.weight` [n_ff, d] (and MoE
 *   `ffn_down_exps` [n_ff, d, n_expert], `ffn_down_shexp`): rows are the d outputs, so the
 *   projection mixes rows: `W'[o, i] = W[o, i] - r̂[o] Σ_o' r̂[o'] W[o', i]`.
 * - Biases of those writers (`attn_output.bias`, `ffn_down.bias`): `b' = b - (b·r̂) r̂`.
 * A model with tied embeddings (no `output.weight`) gets `output.weight` = the original embedding,
 * so only what is written to the residual changes, not the unembedding. Every other tensor and
 * every metadata entry is copied byte for byte (metadata from the file's own encoding).
 *
 * Architectures are allow-listed by their tensors: a tensor not known to be a writer or a pure
 * reader is refused by name rather than guessed. Pre-norm blocks qualify whatever their norm
 * (RMSNorm, or GPT-2's LayerNorm: a reader only sees a stream that no longer has r̂); Gemma 2/3's
 * norms *after* a sub-layer (`post_attention_norm`, `post_ffw_norm`) rescale each coordinate of
 * what the sub-layer writes, so r̂ projected out of `attn_output` comes back after the norm, and
 * no weight edit equals the activation ablation there: those models are refused by that tensor.
 * Edited tensors are dequantized (any type formats/ggml-types.ts reads: F16, BF16, Q8_0, Q4_0,
 * Q5_0/1, Q4_K, Q5_K, Q6_K), projected in float64, and written at `type`; the largest difference
 * between the written values and the exact projection is reported.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import type { Direction } from "./artifact.ts";
import { SteerkitError } from "../core/errors.ts";
import { architecture, metaNumber, readGgufHeader, readRawMetadata, readTensorBytes, readTensorF32, type GgufFile, type GgufTensorInfo } from "../formats/gguf.ts";
import { encodeGgufHeader, type GgufTensorSpec } from "../formats/gguf-write.ts";
import { GGML_TYPE, ggmlTypeName } from "../formats/ggml-types.ts";
import { floatToHalf, halfToFloat } from "../formats/half.ts";
import { canonicalName } from "./points.ts";

/** Written type of edited tensors: `auto` keeps F32 and F16, writes other types (BF16, block-quantized) as F32. */
export type AbliterateType = "auto" | "f32" | "f16";
export const ABLITERATE_TYPES: readonly AbliterateType[] = ["auto", "f32", "f16"];

/** Architectures whose every tensor name below is known, and which load `output.weight` when present. */
export const ABLITERATE_ARCHITECTURES: readonly string[] = ["llama", "qwen2", "qwen3", "phi3", "gpt2"];

export interface AbliterateOptions {
  /** Which of a per-point direction file's vectors to use (a point name); not needed for one vector. */
  readonly point?: string;
  readonly type?: AbliterateType;
  readonly onProgress?: (done: number, total: number) => void;
}

export interface EditedTensor {
  readonly name: string;
  readonly from: string;
  readonly to: string;
  /** max |written - exact projection| over the tensor's values. */
  readonly maxAbsError: number;
}

export interface AbliterateReport {
  /** Where the direction came from ("direction" for a file's single vector, else its point). */
  readonly source: string;
  readonly edited: readonly EditedTensor[];
  /** Tensors copied unchanged. */
  readonly copied: number;
  /** True when `output.weight` was added as a copy of the original embedding (tied model). */
  readonly untied: boolean;
  readonly maxAbsError: number;
}

type Kind = "rows" | "columns" | "vector";

/** Residual writers, by name: how r̂ is projected out of them. */
function writerKind(name: string): Kind | null {
  if (/^(token_embd|position_embd|token_types)\.weight$/.test(name)) return "rows";
  if (/^blk\.\d+\.(attn_output|ffn_down|ffn_down_exps|ffn_down_shexp)\.weight$/.test(name)) return "columns";
  if (/^blk\.\d+\.(attn_output|ffn_down|ffn_down_shexp)\.bias$/.test(name)) return "vector";
  return null;
}

/** Tensors that only read the residual stream (or are not in it): safe to copy. */
const READERS =
  /^(output_norm\.(weight|bias)|output\.(weight|bias)|rope_freqs\.weight|rope_factors_(long|short)\.weight|blk\.\d+\.(attn_norm|ffn_norm|attn_q|attn_k|attn_v|attn_qkv|attn_q_norm|attn_k_norm|ffn_gate|ffn_up|ffn_gate_inp|ffn_gate_exps|ffn_up_exps|ffn_gate_shexp|ffn_up_shexp|ffn_gate_inp_shexp|rope_freqs)\.(weight|bias))$/;

function fail(msg: string): never {
  throw new SteerkitError("INVALID_REQUEST", `abliterate: ${msg}`);
}

/** The one unit direction to project out, in float64. */
export function chooseDirection(direction: Direction, point: string | undefined): { unit: Float64Array; source: string } {
  let vec: Float32Array | undefined;
  let source: string;
  if (point !== undefined) {
    let key: string;
    try {
      key = canonicalName(point);
    } catch (e) {
      return fail(`point: ${(e as Error).message}`);
    }
    vec = direction.byPoint.get(key) ?? direction.vector ?? undefined;
    if (!vec) fail(`the direction has no vector for ${key} (it has ${[...direction.byPoint.keys()].join(", ")})`);
    source = direction.byPoint.has(key) ? key : "direction";
  } else if (direction.vector) {
    vec = direction.vector;
    source = "direction";
  } else if (direction.byPoint.size === 1) {
    [source, vec] = [...direction.byPoint][0]!;
  } else {
    return fail(
      `the direction has ${direction.byPoint.size} vectors (${[...direction.byPoint.keys()].join(", ")}): choose one with point ` +
        `(Arditi et al. project one direction out of every layer; steerkit directions select ranks them)`,
    );
  }
  let ss = 0;
  for (const x of vec!) ss += x * x;
  const n = Math.sqrt(ss);
  if (!(n > 0) || !Number.isFinite(n)) fail(`the ${source} vector has norm ${n}; it needs a finite, non-zero norm`);
  return { unit: Float64Array.from(vec!, (x) => x / n), source: source! };
}

/** Write `src` with r̂ projected out of its residual writers to `out`. */
export function abliterate(src: string, out: string, direction: Direction, options: AbliterateOptions = {}): AbliterateReport {
  const type = options.type ?? "auto";
  if (!ABLITERATE_TYPES.includes(type)) fail(`type must be one of ${ABLITERATE_TYPES.join(", ")}, got "${type}"`);
  const file = readGgufHeader(src);
  const arch = architecture(file);
  if (!ABLITERATE_ARCHITECTURES.includes(arch)) fail(`architecture "${arch}" is not supported (supported: ${ABLITERATE_ARCHITECTURES.join(", ")})`);
  const d = metaNumber(file, `${arch}.embedding_length`);
  const { unit, source } = chooseDirection(direction, options.point);
  if (unit.length !== d) fail(`the direction has ${unit.length} values; the model's residual has ${d}`);
  for (const t of file.tensors) {
    if (writerKind(t.name) === null && !READERS.test(t.name)) {
      fail(`tensor "${t.name}" is not one abliterate knows: it cannot tell whether it writes the residual stream`);
    }
  }
  const untied = file.tensors.some((t) => t.name === "token_embd.weight") && !file.tensors.some((t) => t.name === "output.weight");

  const plan = file.tensors.map((t) => ({ t, kind: writerKind(t.name) }));
  const specs: GgufTensorSpec[] = plan.map(({ t, kind }) => {
    if (kind === null) return { name: t.name, type: t.type, dims: t.dims, byteLength: t.byteLength };
    checkShape(t, kind, d);
    const to = targetType(t, kind, type);
    return { name: t.name, type: to, dims: t.dims, byteLength: t.elementCount * (to === GGML_TYPE.F16 ? 2 : 4) };
  });
  const embd = file.tensors.find((t) => t.name === "token_embd.weight");
  if (untied) specs.push({ name: "output.weight", type: embd!.type, dims: embd!.dims, byteLength: embd!.byteLength });

  const metadata = [...file.metadata.keys()].map((key) => [key, { type: "raw" as const, bytes: readRawMetadata(file, key) }] as const);
  const { header, offsets, dataSize } = encodeGgufHeader({ version: file.version, alignment: file.alignment, metadata, tensors: specs });
  const edited: EditedTensor[] = [];
  const fd = openSync(out, "w");
  try {
    let at = 0;
    const put = (bytes: Uint8Array) => {
      let done = 0;
      while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done, at + done);
      at += bytes.length;
    };
    put(header);
    const base = header.length;
    const writeTensor = (i: number, bytes: Uint8Array) => {
      if (at < base + offsets[i]!) put(new Uint8Array(base + offsets[i]! - at));
      put(bytes);
    };
    plan.forEach(({ t, kind }, i) => {
      if (kind === null) writeTensor(i, readTensorBytes(file, t));
      else {
        const { bytes, maxAbsError } = project(readTensorF32(file, t), t, kind, unit, specs[i]!.type);
        edited.push({ name: t.name, from: ggmlTypeName(t.type), to: ggmlTypeName(specs[i]!.type), maxAbsError });
        writeTensor(i, bytes);
      }
      options.onProgress?.(i + 1, specs.length);
    });
    if (untied) writeTensor(specs.length - 1, readTensorBytes(file, embd!));
    // The data section ends padded to the alignment, as encodeGguf lays it out.
    if (at < base + dataSize) put(new Uint8Array(base + dataSize - at));
  } finally {
    closeSync(fd);
  }
  return {
    source,
    edited,
    copied: plan.filter((p) => p.kind === null).length,
    untied,
    maxAbsError: edited.reduce((m, e) => Math.max(m, e.maxAbsError), 0),
  };
}

function checkShape(t: GgufTensorInfo, kind: Kind, d: number): void {
  const dims = t.dims;
  const ok = kind === "rows" ? dims.length === 2 && dims[0] === d : kind === "vector" ? dims.length === 1 && dims[0] === d : (dims.length === 2 || dims.length === 3) && dims[1] === d;
  if (!ok) fail(`tensor "${t.name}" has shape [${dims.join(", ")}] (ggml order); as a residual writer of width ${d} it should be ${kind === "rows" ? `[${d}, n]` : kind === "vector" ? `[${d}]` : `[n, ${d}] or [n, ${d}, experts]`}`);
}

function targetType(t: GgufTensorInfo, kind: Kind, type: AbliterateType): number {
  if (kind === "vector") return GGML_TYPE.F32;
  if (type === "f32") return GGML_TYPE.F32;
  if (type === "f16") return GGML_TYPE.F16;
  return t.type === GGML_TYPE.F16 ? GGML_TYPE.F16 : GGML_TYPE.F32;
}

/** Project r̂ out of one writer (float64 arithmetic), encode at `to`, and measure the encoding's error. */
function project(w: Float32Array, t: GgufTensorInfo, kind: Kind, r: Float64Array, to: number): { bytes: Uint8Array; maxAbsError: number } {
  const d = r.length;
  const half = to === GGML_TYPE.F16;
  const out32 = half ? null : new Float32Array(w.length);
  const out16 = half ? new Uint16Array(w.length) : null;
  let maxAbsError = 0;
  const store = (k: number, exact: number) => {
    let written: number;
    if (out16) {
      const h = floatToHalf(exact);
      out16[k] = h;
      written = halfToFloat(h);
    } else {
      out32![k] = exact;
      written = out32![k]!;
    }
    const e = Math.abs(written - exact);
    if (e > maxAbsError || Number.isNaN(e)) maxAbsError = e;
  };
  if (kind === "rows" || kind === "vector") {
    for (let off = 0; off < w.length; off += d) {
      let dot = 0;
      for (let j = 0; j < d; j++) dot += w[off + j]! * r[j]!;
      for (let j = 0; j < d; j++) store(off + j, w[off + j]! - dot * r[j]!);
    }
  } else {
    const nIn = t.dims[0]!;
    const s = new Float64Array(nIn);
    for (let slice = 0; slice < w.length; slice += nIn * d) {
      s.fill(0);
      for (let o = 0; o < d; o++) {
        const ro = r[o]!;
        const row = slice + o * nIn;
        for (let i = 0; i < nIn; i++) s[i]! += ro * w[row + i]!;
      }
      for (let o = 0; o < d; o++) {
        const ro = r[o]!;
        const row = slice + o * nIn;
        for (let i = 0; i < nIn; i++) store(row + i, w[row + i]! - ro * s[i]!);
      }
    }
  }
  const bytes = out16 ? new Uint8Array(out16.buffer) : new Uint8Array(out32!.buffer);
  return { bytes, maxAbsError };
}
