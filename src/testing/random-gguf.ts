/**
 * Seeded random-weight GGUFs for every architecture Steerkit hooks, laid out as llama.cpp's
 * `convert_hf_to_gguf.py` (the pinned release's `conversion/*.py`) writes them: the same tensor
 * names, ggml shapes, metadata keys and key types, norms as converted (Gemma's already shifted by
 * +1), tied embeddings where the real small models tie them. Tests generate them in milliseconds
 * (a few hundred KB each); the benchmark asks for realistic widths.
 *
 * Why random weights and not real models: no model can be downloaded here, and a random model
 * exercises every tensor of an architecture (fused qkv, biases, post norms, soft-capping, sliding
 * windows, learned positions) where a wrong index or a swapped norm changes the output. Values are
 * scaled so activations stay O(1) and logits are spread (clear greedy choices across backends).
 *
 * Determinism: every tensor has its own generator seeded from (seed, tensor name), and values come
 * from integer xorshift draws combined with + and * only (Irwin-Hall sums, no Math.log/cos), so the
 * bytes are the same on every machine and in every order tensors are produced. Tests compare against
 * llama.cpp's output recorded for these exact bytes (test/fixtures/architectures/llama-cpp-golden.json
 * holds each file's SHA-256): a change to what this module writes means re-recording with
 * test/fixtures/architectures/make-golden.ts.
 *
 * Vocabularies: `"stories"` is stories260K's 512-token SentencePiece vocabulary (Llama 2 / Mistral /
 * Phi-3 / Gemma style); `"bpe"` is a GPT-2 byte-level BPE vocabulary derived from it (256 byte
 * tokens, then stories' pieces as merges in score order), with each family's pre-tokenizer name and
 * special tokens (GPT-2 `<|endoftext|>`, Llama 3 `<|begin_of_text|>`..., Qwen `<|im_start|>`...).
 *
 * Per-architecture facts a backend needs that GGUF does not spell out (llama.cpp decides them from
 * the architecture name): rope type NORM for llama, mistral3 and smollm3, NEOX for phi3/gemma2/gemma3/qwen2/qwen3, none for
 * gpt2 (learned positions); Gemma scales embeddings by sqrt(n_embd); gemma2's sliding-window layers
 * are the even ones (period 2), gemma3's are il % 6 < 5 (period 6, the default: the converter
 * writes no pattern key); phi3's sliding_window key is ignored by llama.cpp (it disables SWA);
 * smollm3 skips rope in blocks with (il + 1) % 4 == 0 (llama.cpp hard-codes the step: the converter
 * writes no key for it).
 *
 * mistral3's optional features stay off, as in Mistral Small 3.1's conversion (its text config is
 * plain Mistral): no yarn rope scaling and no `attention.temperature_scale` (Ministral 3's llama-4
 * attention temperature, which the adapter, the reference and the converter refuse by name).
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname } from "node:path";
import { DEFAULT_MODEL_PATH } from "../default-model.ts";
import { readGgufHeader } from "../formats/gguf.ts";
import { encodeGgufHeader, type GgufTyped } from "../formats/gguf-write.ts";
import { float32ToHalfBits, halfBitsToFloat32 } from "../formats/half.ts";

/**
 * The architectures of issue 9, which every backend supports (GGUF `general.architecture` values).
 * mistral3 and smollm3 are llama blocks under their own names, written as llama.cpp's converter
 * writes Mistral Small 3.1 / Ministral and SmolLM3 (see TINY for what each adds).
 */
export const RANDOM_GGUF_ARCHITECTURES = ["llama", "phi3", "gemma2", "gemma3", "gpt2", "qwen2", "qwen3", "mistral3", "smollm3"] as const;
/**
 * Architectures the generator also writes, supported by fewer backends: phi2 (Phi-2), whose blocks
 * add attention and MLP to the stream together (parallel residual: there is no resid_mid).
 */
export const MORE_RANDOM_GGUF_ARCHITECTURES = ["phi2"] as const;
export type RandomGgufArchitecture = (typeof RANDOM_GGUF_ARCHITECTURES)[number] | (typeof MORE_RANDOM_GGUF_ARCHITECTURES)[number];
const KNOWN: readonly string[] = [...RANDOM_GGUF_ARCHITECTURES, ...MORE_RANDOM_GGUF_ARCHITECTURES];

export interface RandomGgufOptions {
  readonly arch: RandomGgufArchitecture;
  /** uint32; default 1. Same options and seed => byte-identical file. */
  readonly seed?: number;
  /** Width of the residual stream. */
  readonly nEmbd?: number;
  readonly nLayers?: number;
  /** MLP width (gpt2: the converter writes 4·n_embd; another value is honoured). */
  readonly nFf?: number;
  readonly nHead?: number;
  /** KV heads (GQA when < nHead). gpt2 has none of its own (= nHead). */
  readonly nHeadKv?: number;
  /** Per-head width; default nEmbd / nHead. gemma2/gemma3/qwen3/mistral3 write it as `key_length`/`value_length`. */
  readonly headDim?: number;
  readonly nCtx?: number;
  /** Default: "bpe" for llama (Llama 3 style), gpt2, qwen2, qwen3, mistral3 (Tekken), smollm3; "stories" for phi3, gemma2, gemma3. */
  readonly vocab?: "stories" | "bpe";
  /** Pad the vocabulary with unused placeholder tokens up to this size (benchmarks: a real output matrix). */
  readonly vocabSize?: number;
  /** Matrices' storage type (norms, biases and 1-D tensors are always f32, as the converter writes them). */
  readonly weightType?: "f32" | "f16";
  /** Untied output matrix; default: tied for gemma2, gemma3, gpt2, qwen2, qwen3, smollm3 (as their small models). gemma2 is always tied. */
  readonly tieEmbeddings?: boolean;
  /** gemma2 / gemma3 / phi3 `attention.sliding_window`. Default 8 tokens (so tests cross it), phi3 nCtx. */
  readonly slidingWindow?: number;
  /** `rope.freq_base`. Defaults: llama 500000, qwen2/qwen3/gemma3 1e6, phi3 10000, mistral3 1e9, smollm3 5e6; gemma2 writes none (10000). */
  readonly ropeTheta?: number;
  /** gemma3 `rope.freq_base_swa` (the sliding layers' base). Default 10000. */
  readonly ropeThetaSwa?: number;
  /** `general.name`. */
  readonly name?: string;
}

/** Every dimension and setting of a random model, with the defaults applied. */
export interface RandomGgufConfig {
  readonly arch: RandomGgufArchitecture;
  readonly seed: number;
  readonly nEmbd: number;
  readonly nLayers: number;
  readonly nFf: number;
  readonly nHead: number;
  readonly nHeadKv: number;
  readonly headDim: number;
  readonly nCtx: number;
  readonly vocab: "stories" | "bpe";
  readonly vocabSize: number;
  readonly weightType: "f32" | "f16";
  readonly tieEmbeddings: boolean;
  readonly slidingWindow: number;
  readonly ropeTheta: number;
  readonly ropeThetaSwa: number;
  readonly name: string;
}

/** One tensor of a random model: name, ggml type and dims, and its values on demand. */
export interface RandomTensor {
  readonly name: string;
  /** ggml type id: 0 F32, 1 F16. */
  readonly type: 0 | 1;
  /** ggml order: dims[0] is the row length. */
  readonly dims: readonly number[];
  readonly byteLength: number;
  /** The tensor's values (f32; f16 tensors are these rounded to half). */
  values(): Float32Array;
  /** The bytes as stored in the file. */
  bytes(): Uint8Array;
}

export interface RandomGguf {
  readonly config: RandomGgufConfig;
  readonly metadata: readonly (readonly [string, GgufTyped])[];
  readonly tensors: readonly RandomTensor[];
  /** Parameters (elements of every tensor). */
  readonly params: number;
}

const TINY: Record<RandomGgufArchitecture, Partial<RandomGgufConfig>> = {
  // Llama 3 / Mistral: GQA 4:2, rope theta 500000, untied output.
  llama: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 2, nFf: 160 },
  // Phi-3 mini: fused qkv and gate+up, no GQA.
  phi3: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 4, nFf: 128 },
  // Gemma 2: period-2 sliding window, soft-capping, head_dim != n_embd/n_head.
  gemma2: { nEmbd: 64, nLayers: 4, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 128 },
  // Gemma 3: period 6, so layer 5 is the one global layer.
  gemma3: { nEmbd: 64, nLayers: 6, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 128 },
  gpt2: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 4, nFf: 256 },
  qwen2: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 2, nFf: 160 },
  // Qwen 3: head_dim * n_head (128) != n_embd (64), as in the real 0.6B.
  qwen3: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 160 },
  // Mistral Small 3.1 / Ministral 3: head_dim (key_length) * n_head != n_embd (128 * 32 vs 5120 in
  // the 24B), GQA, untied output, Tekken byte-level BPE vocabulary (specials first).
  mistral3: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 2, headDim: 32, nFf: 160 },
  // SmolLM3: 4 blocks so block 3 is a no-rope block ((il + 1) % 4 == 0), GQA, tied embeddings, Llama 3 vocabulary.
  smollm3: { nEmbd: 64, nLayers: 4, nHead: 4, nHeadKv: 2, nFf: 128 },
  // Phi-2: parallel attention + MLP from one LayerNorm, partial rotary (rope.dimension_count 6 of 16), biases.
  phi2: { nEmbd: 64, nLayers: 3, nHead: 4, nHeadKv: 4, nFf: 256 },
};

/**
 * Resolve options to a full config (defaults: tiny, seed 1, f32).
 * @example
 * const c = randomGgufConfig({ arch: "gemma2" });   // c.nEmbd === 64, c.headDim === 32, c.vocab === "stories"
 */
export function randomGgufConfig(options: RandomGgufOptions): RandomGgufConfig {
  const arch = options.arch;
  if (!KNOWN.includes(arch)) {
    throw new RangeError(`random GGUF: unknown architecture "${arch}" (known: ${KNOWN.join(", ")})`);
  }
  const t = TINY[arch];
  const nEmbd = options.nEmbd ?? t.nEmbd!;
  const nHead = options.nHead ?? t.nHead!;
  const explicitHeadDim = options.headDim ?? (options.nEmbd === undefined && options.nHead === undefined ? t.headDim : undefined);
  const headDim = explicitHeadDim ?? nEmbd / nHead;
  const nHeadKv = arch === "gpt2" || arch === "phi2" ? nHead : (options.nHeadKv ?? Math.min(t.nHeadKv!, nHead));
  const vocab = options.vocab ?? (arch === "phi3" || arch === "gemma2" || arch === "gemma3" ? "stories" : "bpe");
  if (arch === "phi2" && vocab !== "bpe") throw new RangeError(`random GGUF (phi2): Phi-2's vocabulary is byte-level BPE, not "${vocab}"`);
  const nCtx = options.nCtx ?? 256;
  const config: RandomGgufConfig = {
    arch,
    seed: (options.seed ?? 1) >>> 0,
    nEmbd,
    nLayers: options.nLayers ?? t.nLayers!,
    nFf: options.nFf ?? (options.nEmbd !== undefined ? (arch === "gpt2" || arch === "phi2" ? 4 * nEmbd : Math.round((8 * nEmbd) / 3 / 32) * 32) : t.nFf!),
    nHead,
    nHeadKv,
    headDim,
    nCtx,
    vocab,
    vocabSize: options.vocabSize ?? 0,
    weightType: options.weightType ?? "f32",
    tieEmbeddings: arch === "gemma2" ? true : arch === "phi2" ? false : (options.tieEmbeddings ?? (arch !== "llama" && arch !== "phi3" && arch !== "mistral3")),
    slidingWindow: options.slidingWindow ?? (arch === "phi3" ? nCtx : 8),
    ropeTheta: options.ropeTheta ?? { llama: 500000, phi3: 10000, gemma2: 10000, gemma3: 1e6, gpt2: 0, qwen2: 1e6, qwen3: 1e6, mistral3: 1e9, smollm3: 5e6, phi2: 10000 }[arch],
    ropeThetaSwa: options.ropeThetaSwa ?? 10000,
    name: options.name ?? "",
  };
  const bad = (what: string) => {
    throw new RangeError(`random GGUF (${arch}): ${what}`);
  };
  for (const k of ["nEmbd", "nLayers", "nFf", "nHead", "nHeadKv", "headDim", "nCtx", "slidingWindow"] as const) {
    if (!Number.isInteger(config[k]) || config[k] < 1) bad(`${k} must be a positive integer, got ${config[k]}`);
  }
  if (nHead % nHeadKv !== 0) bad(`nHead ${nHead} is not a multiple of nHeadKv ${nHeadKv}`);
  if (headDim % 2 !== 0) bad(`headDim ${headDim} must be even (rope rotates pairs)`);
  if ((arch === "llama" || arch === "phi3" || arch === "phi2" || arch === "gpt2" || arch === "qwen2" || arch === "smollm3") && headDim * nHead !== nEmbd) {
    bad(`${arch} needs headDim * nHead = nEmbd (${headDim} * ${nHead} != ${nEmbd}); only gemma2, gemma3, qwen3 and mistral3 store key_length`);
  }
  return { ...config, name: config.name || `random ${arch} d${nEmbd} l${config.nLayers} seed ${config.seed}` };
}

// ---------------------------------------------------------------------------------------------
// Random values

/** FNV-1a of a string, mixed with the seed: one independent stream per tensor. */
function streamSeed(seed: number, name: string): number {
  let h = 0x811c9dc5 ^ seed;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h >>> 0) || 0x9e3779b9; // xorshift needs a non-zero state
}

/** `n` values mean + std·z, z ≈ N(0, 1) from an Irwin-Hall sum of 4 uniforms (exact IEEE ops only). */
function gaussian(seed: number, name: string, n: number, mean: number, std: number): Float32Array {
  const out = new Float32Array(n);
  let s = streamSeed(seed, name);
  const k = std * Math.sqrt(3) / 4294967296; // sum of 4 U[0,1) has variance 1/3
  for (let i = 0; i < n; i++) {
    let sum = 0;
    for (let j = 0; j < 4; j++) {
      s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
      sum += s;
    }
    out[i] = mean + (sum - 2 * 4294967296) * k;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Vocabularies

interface Vocab {
  readonly tokens: string[];
  readonly types: number[];
  readonly scores?: number[];
  readonly merges?: string[];
  readonly keys: (readonly [string, GgufTyped])[];
}

const NORMAL = 1, CONTROL = 3;

let storiesCache: { tokens: string[]; scores: number[]; types: number[] } | null = null;
function stories(): { tokens: string[]; scores: number[]; types: number[] } {
  if (!storiesCache) {
    const f = readGgufHeader(DEFAULT_MODEL_PATH);
    storiesCache = {
      tokens: f.metadata.get("tokenizer.ggml.tokens") as string[],
      scores: f.metadata.get("tokenizer.ggml.scores") as number[],
      types: f.metadata.get("tokenizer.ggml.token_type") as number[],
    };
  }
  return storiesCache;
}

/** GPT-2's bytes_to_unicode: printable bytes stand for themselves, the rest map to U+0100 onward. */
function byteChars(): string[] {
  const chars: string[] = new Array(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    chars[b] = String.fromCodePoint(printable ? b : next++);
  }
  return chars;
}

const BPE_SPECIALS: Record<string, { pre: string; specials: string[]; bos: number; eos: number; addBos: boolean; specialsFirst?: boolean }> = {
  // index into specials; specialsFirst: the special tokens take ids 0.. (Tekken), else they follow the vocabulary
  gpt2: { pre: "gpt-2", specials: ["<|endoftext|>"], bos: 0, eos: 0, addBos: false },
  llama: { pre: "llama-bpe", specials: ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], bos: 0, eos: 1, addBos: true },
  qwen2: { pre: "qwen2", specials: ["<|endoftext|>", "<|im_start|>", "<|im_end|>"], bos: 0, eos: 0, addBos: false },
  phi2: { pre: "phi-2", specials: ["<|endoftext|>"], bos: 0, eos: 0, addBos: false },
  // Mistral Small 3.1's Tekken: <unk> <s> </s> [INST] [/INST] ... at ids 0.., then the byte tokens.
  mistral3: { pre: "tekken", specials: ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], bos: 1, eos: 2, addBos: true, specialsFirst: true },
  // SmolLM3's Llama 3 vocabulary; chat turns end with <|im_end|>, and no BOS is added.
  smollm3: { pre: "llama-bpe", specials: ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"], bos: 0, eos: 3, addBos: false },
};

function bpeVocab(arch: RandomGgufArchitecture, vocabSize: number): Vocab {
  const fam = BPE_SPECIALS[arch === "qwen3" ? "qwen2" : arch] ?? BPE_SPECIALS.gpt2!;
  const chars = byteChars();
  // GPT-2 orders its 256 byte tokens printable-first (the order bytes_to_unicode builds them).
  const order = [...chars.keys()].sort((a, b) => chars[a]!.codePointAt(0)! - chars[b]!.codePointAt(0)!);
  const tokens = order.map((b) => chars[b]!);
  const have = new Set(tokens);
  const merges: string[] = [];
  const enc = new TextEncoder();
  const s = stories();
  const pieces = s.tokens
    .map((t, i) => ({ t, score: s.scores[i]!, type: s.types[i]! }))
    .filter((p) => p.type === NORMAL)
    .sort((a, b) => b.score - a.score);
  for (const { t } of pieces) {
    const mapped = [...enc.encode(t.replaceAll("\u2581", " "))].map((b) => chars[b]!).join("");
    if (mapped.length < 2 || have.has(mapped)) continue;
    // The split with the longest known left part whose right part is known too.
    const cps = [...mapped];
    for (let cut = cps.length - 1; cut >= 1; cut--) {
      const left = cps.slice(0, cut).join(""), right = cps.slice(cut).join("");
      if (have.has(left) && have.has(right)) {
        merges.push(`${left} ${right}`);
        tokens.push(mapped);
        have.add(mapped);
        break;
      }
    }
  }
  const types = tokens.map(() => NORMAL);
  for (let i = tokens.length; i < vocabSize - fam.specials.length; i++) {
    tokens.push(`<pad${i}>`);
    types.push(NORMAL);
  }
  const first = fam.specialsFirst ? 0 : tokens.length;
  tokens.splice(first, 0, ...fam.specials);
  types.splice(first, 0, ...fam.specials.map(() => CONTROL));
  return {
    tokens, types, merges,
    keys: [
      ["tokenizer.ggml.model", { type: "string", value: "gpt2" }],
      ["tokenizer.ggml.pre", { type: "string", value: fam.pre }],
      ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }],
      ["tokenizer.ggml.token_type", { type: "array", of: "i32", value: types }],
      ["tokenizer.ggml.merges", { type: "array", of: "string", value: merges }],
      ["tokenizer.ggml.bos_token_id", { type: "u32", value: first + fam.bos }],
      ["tokenizer.ggml.eos_token_id", { type: "u32", value: first + fam.eos }],
      ["tokenizer.ggml.add_bos_token", { type: "bool", value: fam.addBos }],
    ],
  };
}

function storiesVocab(arch: RandomGgufArchitecture, vocabSize: number): Vocab {
  const s = stories();
  const tokens = [...s.tokens], scores = [...s.scores], types = [...s.types];
  // Phi-3's added tokens (llama.cpp looks "<|endoftext|>" up by text in a model named phi3: required).
  const specials = arch === "phi3" ? ["<|endoftext|>", "<|assistant|>", "<|system|>", "<|end|>", "<|user|>"] : [];
  for (let i = tokens.length; i < vocabSize - specials.length; i++) {
    tokens.push(`<pad${i}>`);
    scores.push(-1e6);
    types.push(NORMAL);
  }
  const firstSpecial = tokens.length;
  for (const sp of specials) {
    tokens.push(sp);
    scores.push(0);
    types.push(CONTROL);
  }
  const keys: (readonly [string, GgufTyped])[] = [
    ["tokenizer.ggml.model", { type: "string", value: "llama" }],
    ...(arch === "phi3" ? [["tokenizer.ggml.pre", { type: "string", value: "default" }] as const] : []),
    ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }],
    ["tokenizer.ggml.scores", { type: "array", of: "f32", value: scores }],
    ["tokenizer.ggml.token_type", { type: "array", of: "i32", value: types }],
    ["tokenizer.ggml.bos_token_id", { type: "u32", value: 1 }],
    ["tokenizer.ggml.eos_token_id", { type: "u32", value: arch === "phi3" ? firstSpecial : 2 }],
    ["tokenizer.ggml.unknown_token_id", { type: "u32", value: 0 }],
    ["tokenizer.ggml.add_bos_token", { type: "bool", value: true }],
    ...(arch === "gemma2" || arch === "gemma3" ? [["tokenizer.ggml.add_space_prefix", { type: "bool", value: false }] as const] : []),
  ];
  return { tokens, types, scores, keys };
}

// ---------------------------------------------------------------------------------------------
// Layout

/** How a tensor's values are drawn. */
interface Init { mean: number; std: number }

/**
 * The model: metadata and tensors (values produced lazily). Small models: `encodeRandomGguf`;
 * large ones: `writeRandomGguf` streams tensor by tensor.
 * @example
 * const m = randomGguf({ arch: "phi3" });
 * m.tensors.find((t) => t.name === "blk.0.attn_qkv.weight")!.dims;   // [64, 192]
 */
export function randomGguf(options: RandomGgufOptions): RandomGguf {
  const c = randomGgufConfig(options);
  const { arch, nEmbd: d, nFf: ff, headDim, nHead, nHeadKv, nLayers } = c;
  const vocab = c.vocab === "bpe" ? bpeVocab(arch, c.vocabSize) : storiesVocab(arch, c.vocabSize);
  const nVocab = vocab.tokens.length;
  const qDim = headDim * nHead, kvDim = headDim * nHeadKv;

  const u32 = (value: number): GgufTyped => ({ type: "u32", value });
  const f32 = (value: number): GgufTyped => ({ type: "f32", value });
  const a = (key: string) => `${arch}.${key}`;
  const meta: (readonly [string, GgufTyped])[] = [
    ["general.architecture", { type: "string", value: arch }],
    ["general.type", { type: "string", value: "model" }],
    ["general.name", { type: "string", value: c.name }],
    [a("block_count"), u32(nLayers)],
    [a("context_length"), u32(c.nCtx)],
    [a("embedding_length"), u32(d)],
    [a("feed_forward_length"), u32(ff)],
    [a("attention.head_count"), u32(nHead)],
  ];
  const layerNorm = arch === "gpt2" || arch === "phi2"; // LayerNorm with biases, not RMSNorm
  if (arch !== "gpt2") meta.push([a("attention.head_count_kv"), u32(nHeadKv)]);
  if (layerNorm) meta.push([a("attention.layer_norm_epsilon"), f32(1e-5)]);
  else meta.push([a("attention.layer_norm_rms_epsilon"), f32(arch.startsWith("gemma") ? 1e-6 : 1e-5)]);
  if (arch !== "gpt2" && arch !== "gemma2" && arch !== "phi2") meta.push([a("rope.freq_base"), f32(c.ropeTheta)]);
  if (arch === "gemma3") meta.push([a("rope.freq_base_swa"), f32(c.ropeThetaSwa)]);
  if (arch === "gemma2" || arch === "gemma3" || arch === "qwen3" || arch === "mistral3") {
    meta.push([a("attention.key_length"), u32(headDim)], [a("attention.value_length"), u32(headDim)]);
  }
  // LlamaModel (llama, mistral3, smollm3) writes head_dim as rope.dimension_count, and vocab_size.
  const llamaConverted = arch === "llama" || arch === "mistral3" || arch === "smollm3";
  if (llamaConverted || arch === "phi3") meta.push([a("rope.dimension_count"), u32(headDim)]);
  // Phi-2 rotates partial_rotary_factor 0.4 of each head: int(0.4 * n_embd) // n_head, as the converter computes it.
  if (arch === "phi2") meta.push([a("rope.dimension_count"), u32(Math.floor(Math.floor(0.4 * d) / nHead))]);
  if (llamaConverted) meta.push([a("vocab_size"), u32(nVocab)]);
  if (arch === "phi3") meta.push([a("rope.scaling.original_context_length"), u32(c.nCtx)]);
  if (arch === "gemma2") meta.push([a("attn_logit_softcapping"), f32(50)], [a("final_logit_softcapping"), f32(30)]);
  if (arch === "gemma2" || arch === "gemma3" || arch === "phi3") meta.push([a("attention.sliding_window"), u32(c.slidingWindow)]);
  meta.push(["general.file_type", u32(c.weightType === "f16" ? 1 : 0)], ["general.quantization_version", u32(2)]);
  meta.push(...vocab.keys);

  const W = c.weightType === "f16" ? 1 : 0;
  const specs: { name: string; dims: number[]; type: 0 | 1; init: Init }[] = [];
  const norm: Init = { mean: 1, std: 0.1 };
  const bias: Init = { mean: 0, std: 0.1 };
  const matrix = (fanIn: number): Init => ({ mean: 0, std: 1 / Math.sqrt(fanIn) });
  const add = (name: string, dims: number[], init: Init, type: 0 | 1 = dims.length === 1 ? 0 : (W as 0 | 1)) =>
    specs.push({ name, dims, type, init });

  // Embeddings small next to what blocks add (std 0.1; Gemma's 0.1 after its sqrt(d) scaling), so the
  // output is not dominated by the input token (random tied models otherwise repeat their last token).
  const gemma = arch === "gemma2" || arch === "gemma3";
  const embdStd = gemma ? 0.1 / Math.sqrt(d) : 0.1;
  add("token_embd.weight", [d, nVocab], { mean: 0, std: embdStd });
  if (arch === "gpt2") add("position_embd.weight", [d, c.nCtx], { mean: 0, std: 0.5 });
  for (let l = 0; l < nLayers; l++) {
    const b = `blk.${l}.`;
    add(`${b}attn_norm.weight`, [d], norm);
    if (layerNorm) add(`${b}attn_norm.bias`, [d], bias);
    if (arch === "phi3" || arch === "gpt2") {
      add(`${b}attn_qkv.weight`, [d, qDim + 2 * kvDim], matrix(d));
      if (arch === "gpt2") add(`${b}attn_qkv.bias`, [qDim + 2 * kvDim], bias);
    } else {
      add(`${b}attn_q.weight`, [d, qDim], matrix(d));
      if (arch === "qwen2" || arch === "phi2") add(`${b}attn_q.bias`, [qDim], bias);
      add(`${b}attn_k.weight`, [d, kvDim], matrix(d));
      if (arch === "qwen2" || arch === "phi2") add(`${b}attn_k.bias`, [kvDim], bias);
      add(`${b}attn_v.weight`, [d, kvDim], matrix(d));
      if (arch === "qwen2" || arch === "phi2") add(`${b}attn_v.bias`, [kvDim], bias);
    }
    if (arch === "gemma3" || arch === "qwen3") {
      add(`${b}attn_q_norm.weight`, [headDim], norm);
      add(`${b}attn_k_norm.weight`, [headDim], norm);
    }
    add(`${b}attn_output.weight`, [qDim, d], matrix(qDim));
    if (layerNorm) add(`${b}attn_output.bias`, [d], bias);
    if (arch === "gemma2" || arch === "gemma3") add(`${b}post_attention_norm.weight`, [d], norm);
    if (arch !== "phi2") add(`${b}ffn_norm.weight`, [d], norm); // phi2's MLP reads attn_norm's output
    if (arch === "gpt2") add(`${b}ffn_norm.bias`, [d], bias);
    if (arch === "phi3") {
      add(`${b}ffn_up.weight`, [d, 2 * ff], matrix(d)); // gate rows first, then up (HF gate_up_proj)
    } else if (layerNorm) {
      add(`${b}ffn_up.weight`, [d, ff], matrix(d));
      add(`${b}ffn_up.bias`, [ff], bias);
    } else {
      add(`${b}ffn_gate.weight`, [d, ff], matrix(d));
      add(`${b}ffn_up.weight`, [d, ff], matrix(d));
    }
    add(`${b}ffn_down.weight`, [ff, d], matrix(ff));
    if (layerNorm) add(`${b}ffn_down.bias`, [d], bias);
    if (arch === "gemma2" || arch === "gemma3") add(`${b}post_ffw_norm.weight`, [d], norm);
  }
  // Spread the logits (std ~1.6 through a tied matrix, ~3 through an untied one) so greedy choices are
  // clear well beyond float rounding: the final norm's gain is what reaches the logits alone.
  const outGain = c.tieEmbeddings ? 1.6 / (embdStd * Math.sqrt(d)) : 1;
  add("output_norm.weight", [d], { mean: outGain, std: 0.1 * outGain });
  if (layerNorm) add("output_norm.bias", [d], bias);
  if (!c.tieEmbeddings) add("output.weight", [d, nVocab], { mean: 0, std: 3 / Math.sqrt(d) });
  if (arch === "phi2") add("output.bias", [nVocab], bias);

  const tensors: RandomTensor[] = specs.map((s) => {
    const n = s.dims.reduce((x, y) => x * y, 1);
    const values = () => {
      const v = gaussian(c.seed, s.name, n, s.init.mean, s.init.std);
      return s.type === 1 ? halfBitsToFloat32(float32ToHalfBits(v)) : v;
    };
    return {
      name: s.name,
      type: s.type,
      dims: s.dims,
      byteLength: n * (s.type === 1 ? 2 : 4),
      values,
      bytes: () => {
        const v = gaussian(c.seed, s.name, n, s.init.mean, s.init.std);
        return s.type === 1 ? new Uint8Array(float32ToHalfBits(v).buffer) : new Uint8Array(v.buffer);
      },
    };
  });
  const params = tensors.reduce((acc, t) => acc + t.dims.reduce((x, y) => x * y, 1), 0);
  return { config: c, metadata: meta, tensors, params };
}

const ALIGNMENT = 32;

/**
 * The whole file in memory (tiny models for tests).
 * @example
 * const bytes = encodeRandomGguf({ arch: "gpt2", seed: 7 });
 * await Bun.write("/tmp/gpt2.gguf", bytes);
 */
export function encodeRandomGguf(options: RandomGgufOptions): Uint8Array {
  const m = randomGguf(options);
  const { header, offsets, dataSize } = encodeGgufHeader({ metadata: m.metadata, tensors: m.tensors, alignment: ALIGNMENT });
  const out = new Uint8Array(header.length + dataSize);
  out.set(header);
  m.tensors.forEach((t, i) => out.set(t.bytes(), header.length + offsets[i]!));
  return out;
}

/**
 * Write a random model to `path`, streaming tensor by tensor (benchmark sizes), and return it.
 * @example
 * const m = writeRandomGguf("/tmp/qwen3.gguf", { arch: "qwen3" });
 * console.log(m.params, m.config.headDim);
 */
export function writeRandomGguf(
  path: string,
  options: RandomGgufOptions,
  /** Called after each tensor is written with the parameters written so far (progress bars). */
  onTensor?: (paramsDone: number, paramsTotal: number) => void,
): RandomGguf {
  const m = randomGguf(options);
  const { header, offsets } = encodeGgufHeader({ metadata: m.metadata, tensors: m.tensors, alignment: ALIGNMENT });
  mkdirSync(dirname(path), { recursive: true });
  const fd = openSync(path, "w");
  try {
    writeSync(fd, header);
    let at = 0, done = 0;
    m.tensors.forEach((t, i) => {
      const pad = offsets[i]! - at;
      if (pad > 0) writeSync(fd, new Uint8Array(pad));
      writeSync(fd, t.bytes());
      at = offsets[i]! + t.byteLength;
      done += t.dims.reduce((x, y) => x * y, 1);
      onTensor?.(done, m.params);
    });
    const tail = (ALIGNMENT - (at % ALIGNMENT)) % ALIGNMENT;
    if (tail > 0) writeSync(fd, new Uint8Array(tail));
  } finally {
    closeSync(fd);
  }
  return m;
}

