/**
 * The checks llama.cpp makes with GGML_ASSERT / GGML_ABORT (or with a C++ exception that escapes a
 * C function and terminates the process) while it loads, tokenizes with and first evaluates a model
 * of the architectures this adapter accepts, made here first in TypeScript with a clear error.
 *
 * Why: llama.cpp reports most damage by throwing inside `llama_model_load`, which the C API turns
 * into a logged error and a null model; those are already clean (a LlamaModelError naming the
 * file). The assertions are not: they abort the process. Each check below cites the assertion it
 * stands in for; LOAD-CHECKS.md lists them all, with the ones that are unreachable and why.
 */
import { GGUF_TYPE, GgufError, type GgufFile, type GgufTensorInfo, type GgufValue } from "../../formats/gguf.ts";
import { GGML_TYPES, ggmlTypeName } from "../../formats/ggml-types.ts";
import { UnsupportedModelError } from "./validate.ts";

/** llama-hparams.h */
export const LLAMA_MAX_LAYERS = 512;
export const LLAMA_MAX_EXPERTS = 1024;

/** llama.cpp's rope scaling names (llama_rope_scaling_type_from_string); anything else asserts. */
const ROPE_SCALING = ["none", "linear", "yarn", "longrope"];

/** Tokenizer models this adapter loads (llama-vocab.cpp `load`): SentencePiece and byte-level BPE. */
const TOKENIZER_MODELS = ["llama", "gpt2", "gemma4"];

/** Types a weight matrix may have for the CPU backend's mul_mat (ggml-cpu: every float and block-quantised type). */
const NOT_MATMUL = new Set(["I8", "I16", "I32", "I64", "F64"]);

type Fail = (reason: string) => never;

/** Builders that assert the rope dimension equals the head size. */
const ROT_IS_HEAD = new Set(["llama", "mistral3", "smollm3", "qwen2", "qwen3"]);

/** Every load check, in the order llama.cpp meets them. Throws GgufError / UnsupportedModelError. */
export function checkLlamaLoad(file: GgufFile, arch: string): void {
  const fail: Fail = (reason) => {
    throw new GgufError(file.path, reason);
  };
  const vocab = checkVocab(file, fail);
  const hp = checkHparams(file, arch, fail);
  checkTensors(file, arch, hp, vocab.nTokens, fail);
}

// ---- metadata access with the stored type ---------------------------------------------------------

function typeOf(file: GgufFile, key: string): { type: number; elements?: number } | undefined {
  return file.metadataTypes?.get(key);
}

const INT_TYPES: readonly number[] = [GGUF_TYPE.UINT8, GGUF_TYPE.INT8, GGUF_TYPE.UINT16, GGUF_TYPE.INT16, GGUF_TYPE.UINT32, GGUF_TYPE.INT32, GGUF_TYPE.UINT64, GGUF_TYPE.INT64];

function asInt(v: GgufValue | undefined): number | null {
  if (typeof v === "bigint") return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : null;
  return typeof v === "number" && Number.isInteger(v) ? v : null;
}

/** A u32-like key (llama.cpp reads it into a uint32_t); `required` as llama.cpp has it. */
function u32(file: GgufFile, key: string, fail: Fail, required: boolean): number | null {
  const v = file.metadata.get(key);
  if (v === undefined) {
    if (required) fail(`metadata "${key}" is missing`);
    return null;
  }
  const n = asInt(v);
  if (n === null || n < 0 || n > 0xffffffff) fail(`metadata "${key}" must be an unsigned 32-bit integer, got ${show(v)}`);
  return n;
}

/** A scalar or per-layer array of u32 (llama.cpp get_key_or_arr); returns one value per layer. */
function perLayer(file: GgufFile, key: string, nLayer: number, fallback: number[] | null, fail: Fail): number[] | null {
  const v = file.metadata.get(key);
  if (v === undefined) return fallback;
  if (Array.isArray(v)) {
    if (v.length !== nLayer) fail(`metadata "${key}" has ${v.length} entries, expected one per layer (${nLayer})`);
    return v.map((x, i) => {
      const n = asInt(x);
      if (n === null || n < 0 || n > 0xffffffff) fail(`metadata "${key}"[${i}] must be an unsigned 32-bit integer, got ${show(x)}`);
      return n!;
    });
  }
  const n = u32(file, key, fail, false)!;
  return new Array<number>(nLayer).fill(n);
}

function f32(file: GgufFile, key: string, fail: Fail): number | null {
  const v = file.metadata.get(key);
  if (v === undefined) return null;
  if (typeof v !== "number") fail(`metadata "${key}" must be a float, got ${show(v)}`);
  if (!Number.isFinite(v as number)) fail(`metadata "${key}" is ${v}, expected a finite number`);
  return v as number;
}

function show(v: GgufValue | undefined): string {
  if (v === undefined) return "nothing";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const s = typeof v === "bigint" ? `${v}` : JSON.stringify(v);
  return `${typeof v} ${s.length > 60 ? `${s.slice(0, 60)}...` : s}`;
}

// ---- vocabulary (llama-vocab.cpp `llama_vocab::impl::load`) -------------------------------------------

interface VocabFacts {
  readonly nTokens: number;
}

function checkVocab(file: GgufFile, fail: Fail): VocabFacts {
  const model = file.metadata.get("tokenizer.ggml.model");
  if (typeof model !== "string") fail(`metadata "tokenizer.ggml.model" is missing or not a string: the file has no tokenizer`);
  if (!TOKENIZER_MODELS.includes(model as string)) {
    throw new UnsupportedModelError(
      `${file.path}: tokenizer model "${model}" is not supported by the llama.cpp adapter (supported: ${TOKENIZER_MODELS.join(", ")})`,
    );
  }
  const spm = model === "llama";

  const tokensType = typeOf(file, "tokenizer.ggml.tokens");
  const tokens = file.metadata.get("tokenizer.ggml.tokens");
  if (!Array.isArray(tokens) || (tokensType && tokensType.elements !== GGUF_TYPE.STRING)) {
    fail(`metadata "tokenizer.ggml.tokens" must be an array of strings, got ${show(tokens)}`);
  }
  const list = tokens as string[];
  const n = list.length;
  if (n === 0) fail(`metadata "tokenizer.ggml.tokens" is empty`);
  if (n > 0x7fffffff) fail(`metadata "tokenizer.ggml.tokens" has ${n} tokens, more than a token id can hold`);

  // GGML_ASSERT(id_to_token.size() == token_to_id.size()) (llama-vocab.cpp, after reading tokens):
  // two ids may not share a text. llama.cpp reads each text as a C string (up to its first NUL) and
  // renames an empty one "[EMPTY_<id>]", so compare what it compares.
  const seen = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    let text = list[i]!;
    const nul = text.indexOf("\0");
    if (nul >= 0) text = text.slice(0, nul);
    if (text.length === 0) text = `[EMPTY_${i}]`;
    const first = seen.get(text);
    if (first !== undefined) {
      fail(`metadata "tokenizer.ggml.tokens": tokens ${first} and ${i} have the same text ${JSON.stringify(text)} (llama.cpp requires every token text to be unique)`);
    }
    seen.set(text, i);
  }

  // Scores and token types: llama.cpp throws on a wrong type or a short array (clean); checked here for a clearer message.
  const scoresType = typeOf(file, "tokenizer.ggml.scores");
  const scores = file.metadata.get("tokenizer.ggml.scores");
  if (scores !== undefined) {
    if (!Array.isArray(scores) || (scoresType && scoresType.elements !== GGUF_TYPE.FLOAT32 && scoresType.elements !== GGUF_TYPE.INT32)) {
      fail(`metadata "tokenizer.ggml.scores" must be an array of float32 or int32, got ${show(scores)}`);
    }
    if ((scores as GgufValue[]).length < n) fail(`metadata "tokenizer.ggml.scores" has ${(scores as GgufValue[]).length} entries for ${n} tokens`);
  }
  const typesType = typeOf(file, "tokenizer.ggml.token_type");
  const types = file.metadata.get("tokenizer.ggml.token_type");
  if (types !== undefined) {
    if (!Array.isArray(types) || (typesType && typesType.elements !== GGUF_TYPE.INT32)) {
      fail(`metadata "tokenizer.ggml.token_type" must be an array of int32, got ${show(types)}`);
    }
    if ((types as GgufValue[]).length < n) fail(`metadata "tokenizer.ggml.token_type" has ${(types as GgufValue[]).length} entries for ${n} tokens`);
  }

  if (spm) {
    // llm_tokenizer_spm_session::resegment -> llama_vocab::byte_to_token: a character no token covers
    // is looked up as "<0xXX>" then as the bare byte with std::map::at, whose std::out_of_range
    // escapes llama_tokenize and terminates the process. Any prompt can hold any byte, so every
    // byte needs its token.
    for (let b = 0; b < 256; b++) {
      const hex = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
      if (seen.has(hex)) continue;
      if (b > 0 && b < 0x80 && seen.has(String.fromCharCode(b))) continue;
      fail(
        `SentencePiece vocabulary has no token for byte 0x${b.toString(16).padStart(2, "0")} ("${hex}"): llama.cpp's tokenizer aborts the process on text it cannot cover with byte tokens`,
      );
    }
  } else {
    const merges = file.metadata.get("tokenizer.ggml.merges");
    const mergesType = typeOf(file, "tokenizer.ggml.merges");
    if (merges !== undefined && (!Array.isArray(merges) || (mergesType && mergesType.elements !== GGUF_TYPE.STRING))) {
      fail(`metadata "tokenizer.ggml.merges" must be an array of strings, got ${show(merges)}`);
    }
  }

  // Special ids as llama.cpp resolves them: a key outside the vocabulary keeps the default, and a
  // default outside the vocabulary means none. Tokenizing with add_special then asserts
  // GGML_ASSERT(special_bos_id != LLAMA_TOKEN_NULL) / (special_eos_id ...) (llama_vocab::impl::tokenize).
  const special = (key: string, fallback: number | null): number | null => {
    const base = fallback !== null && fallback < n ? fallback : null;
    const v = file.metadata.get(key);
    if (v === undefined) return base;
    const id = asInt(v);
    if (id === null) fail(`metadata "${key}" must be a token id, got ${show(v)}`);
    return id! >= 0 && id! < n ? id : base;
  };
  const bool = (key: string): boolean | null => {
    const v = file.metadata.get(key);
    if (v === undefined) return null;
    if (typeof v !== "boolean") fail(`metadata "${key}" must be a bool, got ${show(v)}`);
    return v as boolean;
  };
  // llama.cpp's defaults: SentencePiece 1/2, "gpt2" 11/11, "gemma4" none.
  const bpeDefault = model === "gemma4" ? null : 11;
  const bos = special("tokenizer.ggml.bos_token_id", spm ? 1 : bpeDefault);
  const eos = special("tokenizer.ggml.eos_token_id", spm ? 2 : bpeDefault);
  // BPE pre-tokenizers choose their own add_bos default; assume the worst when the key is absent.
  const addBos = bool("tokenizer.ggml.add_bos_token") ?? true;
  const addEos = bool("tokenizer.ggml.add_eos_token") ?? false;
  if (addBos && bos === null) {
    fail(`tokenizer adds a BOS token (tokenizer.ggml.add_bos_token) but has no BOS token id inside the vocabulary of ${n} (llama.cpp asserts on it)`);
  }
  if (addEos && eos === null) {
    fail(`tokenizer adds an EOS token (tokenizer.ggml.add_eos_token) but has no EOS token id inside the vocabulary of ${n} (llama.cpp asserts on it)`);
  }
  return { nTokens: n };
}

// ---- hyperparameters (llama-model.cpp `load_hparams`, src/models/<arch>.cpp) -----------------------------

interface Hparams {
  readonly nEmbd: number;
  readonly nLayer: number;
  readonly nHead: number[];
  readonly nHeadKv: number[];
  readonly nFf: number[];
  readonly headK: number;
  readonly headV: number;
  readonly nRot: number;
  readonly nExpert: number;
}

function checkHparams(file: GgufFile, arch: string, fail: Fail): Hparams {
  const k = (name: string) => `${arch}.${name}`;
  u32(file, k("context_length"), fail, true);
  const nEmbd = u32(file, k("embedding_length"), fail, true)!;
  if (nEmbd === 0) fail(`metadata "${k("embedding_length")}" is 0`);
  const nLayer = u32(file, k("block_count"), fail, true)!;
  // GGML_ASSERT(hparams.n_layer_all > 0 && hparams.n_layer_all <= LLAMA_MAX_LAYERS)
  if (nLayer < 1 || nLayer > LLAMA_MAX_LAYERS) fail(`metadata "${k("block_count")}" is ${nLayer}, expected 1..${LLAMA_MAX_LAYERS}`);
  // GGML_ASSERT(hparams.n_layer_nextn <= hparams.n_layer_all)
  const nextn = u32(file, k("nextn_predict_layers"), fail, false);
  if (nextn !== null && nextn > nLayer) fail(`metadata "${k("nextn_predict_layers")}" is ${nextn}, more than the ${nLayer} layers`);

  // The expert asserts of load_hparams: counts bounded, used <= count, groups consistent.
  const nExpert = u32(file, k("expert_count"), fail, false) ?? 0;
  const used = perLayer(file, k("expert_used_count"), nLayer, null, fail) ?? [0];
  const usedMax = Math.max(...used);
  const groups = u32(file, k("expert_group_count"), fail, false) ?? 0;
  const groupUsed = u32(file, k("expert_group_used_count"), fail, false) ?? 0;
  if (nExpert > LLAMA_MAX_EXPERTS) fail(`metadata "${k("expert_count")}" is ${nExpert}, more than llama.cpp's ${LLAMA_MAX_EXPERTS}`);
  if (usedMax > nExpert) fail(`metadata "${k("expert_used_count")}" is ${usedMax}, more than "${k("expert_count")}" (${nExpert})`);
  if (nExpert > 0) {
    if (usedMax === 0) fail(`metadata "${k("expert_used_count")}" is 0 with ${nExpert} experts`);
    if (groups >= nExpert) fail(`metadata "${k("expert_group_count")}" is ${groups}, expected fewer than the ${nExpert} experts`);
    if (groups > 1 && (nExpert % groups !== 0 || groupUsed === 0 || groupUsed >= groups)) {
      fail(`expert groups are inconsistent: ${nExpert} experts, ${groups} groups, ${groupUsed} groups used`);
    }
  } else if (groups !== 0) fail(`metadata "${k("expert_group_count")}" is ${groups} without experts`);

  const nFf = perLayer(file, k("feed_forward_length"), nLayer, null, fail);
  const nHead = perLayer(file, k("attention.head_count"), nLayer, null, fail);
  if (!nHead) fail(`metadata "${k("attention.head_count")}" is missing`);
  const nHeadKv = perLayer(file, k("attention.head_count_kv"), nLayer, nHead, fail)!;
  const head0 = nHead![0]!;
  // create_tensor: GGML_ASSERT(t_meta.ne[dim] >= 1) for every expected dimension, so every size
  // the tensor shapes are computed from must be positive.
  for (let il = 0; il < nLayer; il++) {
    const h = nHead![il]!;
    const kv = nHeadKv[il]!;
    if (h === 0) fail(`metadata "${k("attention.head_count")}" is 0 at layer ${il}`);
    if (kv === 0) fail(`metadata "${k("attention.head_count_kv")}" is 0 at layer ${il}`);
    // ggml_mul_mat broadcasts K/V heads over Q heads: GGML_ASSERT(q heads % kv heads == 0).
    if (h % kv !== 0) fail(`layer ${il} has ${h} attention heads and ${kv} KV heads; heads must be a multiple of KV heads`);
    if (nFf !== null && nFf[il] === 0 && nExpert === 0) fail(`metadata "${k("feed_forward_length")}" is 0 at layer ${il}`);
  }
  if (nFf === null && nExpert === 0) fail(`metadata "${k("feed_forward_length")}" is missing`);
  const keyLength = u32(file, k("attention.key_length"), fail, false);
  const valueLength = u32(file, k("attention.value_length"), fail, false);
  if (keyLength === null && nEmbd % head0 !== 0) fail(`"${k("embedding_length")}" ${nEmbd} is not a multiple of the ${head0} attention heads`);
  const headK = keyLength ?? Math.floor(nEmbd / head0);
  const headV = valueLength ?? Math.floor(nEmbd / head0);
  if (headK === 0 || headV === 0) fail(`attention head size is 0 (embedding ${nEmbd}, ${head0} heads)`);
  const nRot = u32(file, k("rope.dimension_count"), fail, false) ?? headK;
  // src/models/<arch>.cpp graph build: GGML_ASSERT(n_embd_head == n_embd_head_k) (every builder here but
  // Gemma's, which uses the key size for both and is only ever converted with equal sizes) and, in the
  // llama-like builders, GGML_ASSERT(n_embd_head == n_rot), n_embd_head being the value head size.
  if (headV !== headK) fail(`attention key length ${headK} and value length ${headV} differ; the ${arch} graph expects them equal`);
  if (ROT_IS_HEAD.has(arch) && nRot !== headK) fail(`metadata "${k("rope.dimension_count")}" is ${nRot}, expected the head size ${headK} (the ${arch} graph asserts it)`);
  if (arch === "phi2" && (nRot === 0 || nRot > headK || nRot % 2 !== 0)) {
    // Phi-2 rotates part of each head (partial_rotary_factor): an even count, at most the head size.
    fail(`metadata "${k("rope.dimension_count")}" is ${nRot}, expected an even number of rotated dimensions in 2..${headK} (the head size)`);
  }
  if (arch === "gpt2") {
    // The position table has context_length rows; llama.cpp creates it from that key.
    const nCtx = u32(file, k("context_length"), fail, true)!;
    if (nCtx === 0) fail(`metadata "${k("context_length")}" is 0: a ${arch} model needs one learned position per token`);
  }
  if (arch === "gemma2" || arch === "gemma3") {
    // A window of 0 masks even the current token: every attention row is -inf and the output NaN.
    const swa = u32(file, k("attention.sliding_window"), fail, false);
    if (swa === 0) fail(`metadata "${k("attention.sliding_window")}" is 0: every sliding-window layer would attend to nothing`);
    // Soft-capping divides by the cap (tanh(x / cap) * cap): 0 makes the logits NaN.
    for (const key of ["attn_logit_softcapping", "final_logit_softcapping"]) {
      const cap = f32(file, k(key), fail);
      if (cap !== null && !(cap > 0) && !(arch === "gemma3" && cap === 0)) fail(`metadata "${k(key)}" is ${cap}, expected a positive cap`);
    }
  }

  // GGML_ASSERT(hparams.rope_scaling_type_train != LLAMA_ROPE_SCALING_TYPE_UNSPECIFIED)
  const scaling = file.metadata.get(k("rope.scaling.type"));
  if (scaling !== undefined && (typeof scaling !== "string" || !ROPE_SCALING.includes(scaling))) {
    fail(`metadata "${k("rope.scaling.type")}" is ${show(scaling)}, expected one of ${ROPE_SCALING.join(", ")}`);
  }
  // Numbers that make every activation NaN or infinite are bad input, not a model.
  // GPT-2 uses LayerNorm (its own epsilon key), the others RMSNorm; llama.cpp requires the one it reads.
  const epsKey = k(arch === "gpt2" || arch === "phi2" ? "attention.layer_norm_epsilon" : "attention.layer_norm_rms_epsilon");
  const eps = f32(file, epsKey, fail);
  if (eps === null) fail(`metadata "${epsKey}" is missing`);
  if (eps! < 0 || eps! >= 1) fail(`metadata "${epsKey}" is ${eps}, expected a small non-negative number`);
  const base = f32(file, k("rope.freq_base"), fail);
  if (base !== null && !(base > 0)) fail(`metadata "${k("rope.freq_base")}" is ${base}, expected a positive number`);
  const factor = f32(file, k("rope.scaling.factor"), fail);
  if (factor !== null && factor < 0) fail(`metadata "${k("rope.scaling.factor")}" is ${factor}, expected a non-negative number`);
  return { nEmbd, nLayer, nHead: nHead!, nHeadKv, nFf: nFf ?? new Array<number>(nLayer).fill(0), headK, headV, nRot, nExpert };
}

// ---- tensors (src/models/<arch>.cpp `load_arch_tensors`, llama-model-loader.cpp `create_tensor`) --------

interface Expected {
  readonly dims: readonly number[];
  readonly required: boolean;
  /** A 1-D weight used with ggml_mul/ggml_add (norms, biases): must be F32 for the CPU ops. */
  readonly vector: boolean;
}

function expectedTensors(arch: string, hp: Hparams, nVocab: number, nCtx: number, fusedQkv: ReadonlySet<number>): Map<string, Expected> {
  const m = new Map<string, Expected>();
  const add = (name: string, dims: number[], required = true) => m.set(name, { dims, required, vector: dims.length === 1 });
  const gemma = arch === "gemma2" || arch === "gemma3";
  const llamaLike = arch === "llama" || arch === "mistral3" || arch === "smollm3";
  add("token_embd.weight", [hp.nEmbd, nVocab]);
  if (arch === "gpt2") add("position_embd.weight", [hp.nEmbd, nCtx]);
  const layerNorm = arch === "gpt2" || arch === "phi2";
  add("output_norm.weight", [hp.nEmbd]);
  if (layerNorm) add("output_norm.bias", [hp.nEmbd]);
  // gemma2 always reuses the token embeddings as the output matrix: llama.cpp loads no output.weight.
  // phi2 requires its own output matrix and bias.
  if (arch !== "gemma2") add("output.weight", [hp.nEmbd, nVocab], arch === "phi2");
  if (arch === "qwen2") add("output.bias", [nVocab], false);
  if (arch === "phi2") add("output.bias", [nVocab]);
  if (llamaLike) {
    for (const f of ["rope_freqs", "rope_factors_long", "rope_factors_short"]) add(`${f}.weight`, [hp.nRot / 2], false);
  }
  if (arch === "phi3") for (const f of ["rope_factors_long", "rope_factors_short"]) add(`${f}.weight`, [hp.nRot / 2], false);
  for (let i = 0; i < hp.nLayer; i++) {
    const b = `blk.${i}.`;
    // qwen2 and phi3 size Q and the attention output by n_embd; the others by head size x heads.
    const q = arch === "qwen2" || arch === "phi3" || arch === "phi2" || arch === "gpt2" ? hp.nEmbd : hp.headK * hp.nHead[i]!;
    const kk = hp.headK * hp.nHeadKv[i]!;
    const v = hp.headV * hp.nHeadKv[i]!;
    add(`${b}attn_norm.weight`, [hp.nEmbd]);
    if (layerNorm) add(`${b}attn_norm.bias`, [hp.nEmbd]);
    // create_tensor_qkv: one fused attn_qkv, or separate q, k, v (biases optional either way). GPT-2
    // loads only the fused form, with its bias; phi3 marks both forms optional, so the graph would
    // multiply by a null matrix when neither is there: one of them is required here.
    const fused = fusedQkv.has(i) || arch === "gpt2";
    add(`${b}attn_qkv.weight`, [hp.nEmbd, q + kk + v], arch === "gpt2");
    add(`${b}attn_qkv.bias`, [q + kk + v], arch === "gpt2");
    if (arch !== "gpt2") {
      add(`${b}attn_q.weight`, [hp.nEmbd, q], !fused);
      add(`${b}attn_k.weight`, [hp.nEmbd, kk], !fused);
      add(`${b}attn_v.weight`, [hp.nEmbd, v], !fused);
      add(`${b}attn_q.bias`, [q], false);
      add(`${b}attn_k.bias`, [kk], false);
      add(`${b}attn_v.bias`, [v], false);
    }
    add(`${b}attn_output.weight`, [q, hp.nEmbd]);
    if (llamaLike) add(`${b}attn_output.bias`, [hp.nEmbd], false);
    if (layerNorm) add(`${b}attn_output.bias`, [hp.nEmbd]);
    if (arch === "qwen3" || arch === "gemma3") {
      add(`${b}attn_q_norm.weight`, [hp.headK]);
      add(`${b}attn_k_norm.weight`, [hp.headK]);
    }
    if (gemma) add(`${b}post_attention_norm.weight`, [hp.nEmbd]);
    if (arch !== "phi2") add(`${b}ffn_norm.weight`, [hp.nEmbd]); // phi2's MLP reads the attention norm
    if (arch === "gpt2") add(`${b}ffn_norm.bias`, [hp.nEmbd]);
    if (hp.nExpert === 0) {
      const ff = hp.nFf[i]!;
      if (arch === "phi3") {
        add(`${b}ffn_up.weight`, [hp.nEmbd, 2 * ff]); // gate and up, fused
        add(`${b}ffn_down.weight`, [ff, hp.nEmbd]);
      } else if (layerNorm) {
        add(`${b}ffn_up.weight`, [hp.nEmbd, ff]);
        add(`${b}ffn_up.bias`, [ff]);
        add(`${b}ffn_down.weight`, [ff, hp.nEmbd]);
        add(`${b}ffn_down.bias`, [hp.nEmbd]);
      } else {
        add(`${b}ffn_gate.weight`, [hp.nEmbd, ff]);
        add(`${b}ffn_down.weight`, [ff, hp.nEmbd]);
        add(`${b}ffn_up.weight`, [hp.nEmbd, ff]);
        if (llamaLike) {
          add(`${b}ffn_gate.bias`, [ff], false);
          add(`${b}ffn_down.bias`, [hp.nEmbd], false);
          add(`${b}ffn_up.bias`, [ff], false);
        }
      }
    }
    if (gemma) add(`${b}post_ffw_norm.weight`, [hp.nEmbd]);
  }
  return m;
}

function checkTensors(file: GgufFile, arch: string, hp: Hparams, nVocab: number, fail: Fail): void {
  if (hp.nExpert > 0) {
    // Mixture-of-experts llama files: the expert tensors are not checked here, so refuse rather than guess.
    throw new UnsupportedModelError(`${file.path}: mixture-of-experts models (${arch}.expert_count = ${hp.nExpert}) are not supported by the llama.cpp adapter`);
  }
  const byName = new Map<string, GgufTensorInfo>(file.tensors.map((t) => [t.name, t]));
  const fused = new Set<number>();
  for (let i = 0; i < hp.nLayer; i++) if (byName.has(`blk.${i}.attn_qkv.weight`)) fused.add(i);
  const nCtx = Number(file.metadata.get(`${arch}.context_length`) ?? 0);
  const expected = expectedTensors(arch, hp, nVocab, nCtx, fused);
  for (const [name, e] of expected) {
    const t = byName.get(name);
    if (!t) {
      if (e.required) fail(`tensor "${name}" is missing (a ${arch} model with ${hp.nLayer} layers needs it)`);
      continue;
    }
    const dims = [...t.dims];
    while (dims.length > e.dims.length && dims[dims.length - 1] === 1) dims.pop();
    if (dims.length !== e.dims.length || dims.some((d, i) => d !== e.dims[i])) {
      fail(`tensor "${name}" has shape [${t.dims.join(", ")}], expected [${e.dims.join(", ")}] from the hyperparameters`);
    }
    const type = GGML_TYPES.get(t.type)!.name;
    if (e.vector && type !== "F32") fail(`tensor "${name}" is ${type}; norm and bias vectors must be F32`);
    if (!e.vector && NOT_MATMUL.has(type)) fail(`tensor "${name}" is ${ggmlTypeName(t.type)}, not a type llama.cpp can multiply with`);
  }
  for (const t of file.tensors) {
    // llama.cpp throws "wrong number of tensors" for extras (clean); named here for a clearer error.
    if (!expected.has(t.name)) fail(`tensor "${t.name}" is not part of a ${arch} model with ${hp.nLayer} layers`);
  }
}
