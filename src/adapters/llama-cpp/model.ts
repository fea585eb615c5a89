/**
 * A GGUF model loaded into llama.cpp: model info, vocabulary, chat template and sequences.
 */
import { ptr, CString, type Pointer } from "bun:ffi";
import { availableParallelism } from "node:os";
import { basename } from "node:path";
import type { Capability, ChatMessage, LoadOptions, Model, ModelInfo, TokenizeOptions } from "../../core/backend.ts";
import { MODEL_PARAMS } from "./abi.ts";
import { renderChat } from "../../core/chat-template.ts";
import { asPointer, cString, type LlamaLibrary } from "./ffi.ts";
import { LlamaSequence, type LlamaSequenceOptions, type SequenceHost } from "./sequence.ts";
import { architectureGraph } from "./architectures.ts";
import { BatchedSequence, LlamaBatch, type BatchOptions } from "./batch.ts";
import type { WeightCheck } from "../../formats/gguf-scan.ts";
import { SteerkitError } from "../../core/errors.ts";
import { BatchedModelView } from "../../core/batched-view.ts";

export const LLAMA_CPP_CAPABILITIES: readonly Capability[] = ["residual:read", "residual:write", "logits:read", "logits:write"];

/** Context length used when neither the caller nor a smaller training context says otherwise. */
export const DEFAULT_CONTEXT_CAP = 4096;
/** Tokens per llama_decode call (and per forward pass) when prefilling. */
export const DEFAULT_BATCH_SIZE = 512;

/**
 * Threads when the caller gives none. Small models get one: their matrices take microseconds, and
 * ggml's per-op thread barriers then cost more than they save (stories260K decodes ~0.4 ms/token
 * on 1 thread and several ms on 2; far worse when another process holds the other core).
 */
export function defaultThreads(fileBytes: number): number {
  return fileBytes < 64 * 1024 * 1024 ? 1 : Math.min(4, availableParallelism());
}

export interface LlamaLoadOptions extends LoadOptions {
  /**
   * Refuse NaN / ±Inf weights before llama.cpp opens the file (formats/gguf-scan.ts): "small" (default)
   * reads the 1-D tensors (norms, biases: kilobytes), "all" reads every weight (a full read of the
   * file: ~0.4 s for 543 MB, see LOAD-CHECKS.md), "none" skips it.
   */
  readonly checkWeights?: WeightCheck;
  /** Tokens per forward pass during prefill (default 512, capped by the context length). */
  readonly batchSize?: number;
  /**
   * Where to find resid_pre.0 and the mid-block sum in llama.cpp's graph, instead of what
   * architectures.ts says for the model's architecture: for a llama.cpp build whose builder names them
   * differently (`mid: null`: the unnamed sum of the block's input and its attention output). A hooked
   * point the graph never produces fails the forward pass with UNSUPPORTED_MODEL, so a wrong name is
   * an error, never a hook that silently does not run.
   */
  readonly residualTensors?: { readonly pre?: string; readonly mid?: string | null };
}

export class LlamaModelError extends SteerkitError {
  override name = "LlamaModelError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("BACKEND_FAILED", message, options);
  }
}

export class LlamaModel implements Model {
  readonly info: ModelInfo;
  readonly capabilities = LLAMA_CPP_CAPABILITIES;
  readonly #lib: LlamaLibrary;
  #model: Pointer | null;
  readonly #vocab: Pointer;
  /** Sequences and batched contexts not yet freed (the weights go when the last one has). */
  readonly #sequences = new Set<LlamaSequence | LlamaBatch>();
  #nextId = 0;
  readonly #host: SequenceHost;
  readonly #eosPiece: string;
  #tokenBuffer = new Int32Array(1024);
  #textBuffer = new Uint8Array(4096);

  constructor(lib: LlamaLibrary, path: string, options: LlamaLoadOptions = {}) {
    for (const key of ["contextLength", "threads", "batchSize"] as const) {
      const value = options[key];
      if (value !== undefined && (!Number.isInteger(value) || value < 1)) {
        throw new RangeError(`${key} must be a positive integer, got ${value}`);
      }
    }
    const rt = options.residualTensors;
    if (rt !== undefined) {
      const bad = (what: string) => {
        throw new RangeError(`residualTensors.${what}`);
      };
      if (rt.pre !== undefined && !(typeof rt.pre === "string" && /^[\w.-]{1,63}$/.test(rt.pre))) bad(`pre must be a tensor name (1-63 word characters), got ${JSON.stringify(rt.pre)}`);
      if (rt.mid !== undefined && rt.mid !== null && !(typeof rt.mid === "string" && /^[\w.]{1,60}$/.test(rt.mid))) {
        bad(`mid must be a tensor name prefix (1-60 word characters) or null, got ${JSON.stringify(rt.mid)}`);
      }
    }
    this.#lib = lib;
    const params = new DataView(new ArrayBuffer(MODEL_PARAMS.size));
    lib.shim.sk_model_default_params(lib.fn.modelDefaultParams, ptr(params));
    params.setInt32(MODEL_PARAMS.n_gpu_layers, 0, true); // CPU only: hooks edit tensors in host memory
    lib.clearLastLogError();
    const model = asPointer(lib.shim.sk_model_load(lib.fn.modelLoad, ptr(cString(path)), ptr(params)));
    if (!model) {
      throw new LlamaModelError(`llama.cpp could not load ${path}: ${lib.lastLogError() || "no reason logged"}`);
    }
    this.#model = model;
    const { llama } = lib;
    this.#vocab = asPointer(llama.llama_model_get_vocab(model))!;

    const nLayers = llama.llama_model_n_layer(model);
    const dModel = llama.llama_model_n_embd(model);
    const vocabSize = llama.llama_vocab_n_tokens(this.#vocab);
    const trained = llama.llama_model_n_ctx_train(model);
    const contextLength = options.contextLength ?? Math.min(trained > 0 ? trained : DEFAULT_CONTEXT_CAP, DEFAULT_CONTEXT_CAP);
    const threads = options.threads ?? defaultThreads(Bun.file(path).size);
    const batchSize = Math.min(options.batchSize ?? DEFAULT_BATCH_SIZE, contextLength);

    const bos = llama.llama_vocab_bos(this.#vocab);
    const eos = new Set<number>();
    for (const t of [llama.llama_vocab_eos(this.#vocab), llama.llama_vocab_eot(this.#vocab)]) if (t >= 0) eos.add(t);
    // Every end-of-generation token the vocabulary marks (EOS, EOT, EOM, ...): one FFI call per
    // token, once per load.
    for (let t = 0; t < vocabSize; t++) if (llama.llama_vocab_is_eog(this.#vocab, t)) eos.add(t);

    const name = this.meta("general.name") ?? basename(path);
    const architecture = this.meta("general.architecture") ?? "unknown";
    const known = architectureGraph(architecture);
    const override = options.residualTensors;
    const graph = known && override
      ? { ...known, pre: override.pre ?? known.pre, mid: override.mid === undefined ? known.mid : override.mid }
      : known;
    if (!graph) {
      this.#freeWeights();
      throw new LlamaModelError(`${path}: architecture "${architecture}" has no known residual tensors in llama.cpp's graph`);
    }
    // GPT-2 looks positions up in a table of the trained context's rows: a longer context would make
    // ggml_get_rows read past it (an assertion that aborts the process).
    if (graph.learnedPositions && contextLength > trained) {
      this.#freeWeights();
      throw new RangeError(
        `contextLength ${contextLength} is longer than ${path}'s trained context ${trained}: ${architecture} has learned positions for ${trained} tokens only`,
      );
    }
    const chatTemplate = this.meta("tokenizer.chat_template");
    this.info = {
      backend: "llama-cpp",
      architecture,
      name,
      nLayers,
      dModel,
      vocabSize,
      contextLength,
      bosToken: bos >= 0 ? bos : null,
      eosTokens: [...eos].sort((a, b) => a - b),
      chatTemplate,
      ...(graph.parallel ? { parallelBlocks: true } : {}),
    };
    const eosId = llama.llama_vocab_eos(this.#vocab);
    this.#eosPiece = eosId >= 0 ? this.#piece(eosId) : "";
    this.#host = {
      lib,
      model,
      nLayers,
      dModel,
      vocabSize,
      contextLength,
      batchSize,
      threads,
      modelName: name,
      graph,
      architecture,
      release: (seq) => {
        this.#sequences.delete(seq as LlamaSequence | LlamaBatch);
        if (this.#disposing && this.#sequences.size === 0) this.#freeWeights();
      },
    };
  }

  /** A GGUF metadata value as llama.cpp renders it, or null when absent. */
  meta(key: string): string | null {
    const model = this.#live();
    const k = cString(key);
    let n = this.#lib.llama.llama_model_meta_val_str(model, ptr(k), ptr(this.#textBuffer), this.#textBuffer.length);
    if (n < 0) return null;
    if (n >= this.#textBuffer.length) {
      this.#textBuffer = new Uint8Array(n + 1);
      n = this.#lib.llama.llama_model_meta_val_str(model, ptr(k), ptr(this.#textBuffer), this.#textBuffer.length);
    }
    return new TextDecoder().decode(this.#textBuffer.subarray(0, n));
  }

  tokenize(text: string, options: TokenizeOptions = {}): number[] {
    this.#live();
    const bytes = Buffer.from(text, "utf8");
    const addBos = options.addBos ?? true;
    const special = options.special ?? false;
    const need = bytes.length + 2;
    if (this.#tokenBuffer.length < need) this.#tokenBuffer = new Int32Array(need);
    // An empty text still needs a valid pointer.
    const textPtr = ptr(bytes.length > 0 ? bytes : new Uint8Array(1));
    let n = this.#lib.llama.llama_tokenize(this.#vocab, textPtr, bytes.length, ptr(this.#tokenBuffer), this.#tokenBuffer.length, addBos, special);
    if (n < 0) {
      if (n === -2147483648) throw new RangeError(`text of ${bytes.length} bytes tokenizes to more than 2^31 tokens`);
      this.#tokenBuffer = new Int32Array(-n);
      n = this.#lib.llama.llama_tokenize(this.#vocab, textPtr, bytes.length, ptr(this.#tokenBuffer), this.#tokenBuffer.length, addBos, special);
    }
    return Array.from(this.#tokenBuffer.subarray(0, n));
  }

  detokenize(tokens: ArrayLike<number>): string {
    this.#live();
    // A leading BOS is dropped here rather than by llama.cpp: llama_detokenize keeps the
    // SentencePiece space after a BOS it removes itself, so "<s> Once" would come back as " Once".
    // Without it the text round-trips: detokenize(tokenize(s)) === s.
    const from = tokens.length > 0 && tokens[0] === this.info.bosToken ? 1 : 0;
    const n = tokens.length - from;
    if (n <= 0) return "";
    const ids = new Int32Array(n);
    for (let i = 0; i < n; i++) ids[i] = tokens[from + i]!;
    for (let i = 0; i < n; i++) {
      if (ids[i]! < 0 || ids[i]! >= this.info.vocabSize) {
        throw new RangeError(`token ${i} is ${ids[i]}, outside the vocabulary 0..${this.info.vocabSize - 1}`);
      }
    }
    let len = this.#lib.llama.llama_detokenize(this.#vocab, ptr(ids), n, ptr(this.#textBuffer), this.#textBuffer.length, true, false);
    if (len < 0) {
      this.#textBuffer = new Uint8Array(-len);
      len = this.#lib.llama.llama_detokenize(this.#vocab, ptr(ids), n, ptr(this.#textBuffer), this.#textBuffer.length, true, false);
    }
    // ignoreBOM: a text that starts with U+FEFF keeps it (the default decoder drops it), so it round-trips.
    return new TextDecoder("utf-8", { ignoreBOM: true }).decode(this.#textBuffer.subarray(0, len));
  }

  /**
   * Render messages with the GGUF's `tokenizer.chat_template` through core's renderer
   * (@huggingface/jinja); a model without one gets core's documented plain-transcript fallback.
   * `bos_token` renders empty because tokenisation adds BOS (core's convention: never twice).
   */
  applyChatTemplate(messages: readonly ChatMessage[], options: { addGenerationPrompt?: boolean } = {}): string {
    return renderChat(this.info.chatTemplate, messages, {
      addGenerationPrompt: options.addGenerationPrompt ?? true,
      bosToken: "",
      eosToken: this.#eosPiece,
    });
  }

  createSequence(options: LlamaSequenceOptions = {}): LlamaSequence {
    this.#live();
    const seq = new LlamaSequence(this.#host, this.#nextId++, options);
    this.#sequences.add(seq);
    return seq;
  }

  /**
   * A view of this model whose sequences share one llama_context and are decoded together, each
   * with its own hooks (see batch.ts). Disposing the view frees its context, not the weights.
   * @example
   * ```ts
   * const model = loadModel(DEFAULT_MODEL_PATH);
   * const batched = model.batched({ sequences: 8 });
   * const results = await Promise.all(prompts.map((prompt) => generate(batched, { prompt, maxTokens: 32 })));
   * batched.dispose();
   * ```
   */
  batched(options: BatchOptions): BatchedLlamaModel {
    this.#live();
    const batch = new LlamaBatch(this.#host, options);
    this.#sequences.add(batch);
    return new BatchedLlamaModel(this, batch);
  }

  /** Sequences (and batched contexts) not yet freed. */
  get liveSequences(): number {
    return this.#sequences.size;
  }

  dispose(): void {
    if (this.#model === null || this.#disposing) return;
    this.#disposing = true;
    // A sequence freed from inside its own hook frees later, when its llama_decode returns; the
    // weights it is computing with go when the last sequence has gone (see `release`).
    for (const seq of [...this.#sequences]) (seq instanceof LlamaBatch ? seq.dispose() : seq.free());
    if (this.#sequences.size === 0) this.#freeWeights();
  }

  #disposing = false;

  #freeWeights(): void {
    if (this.#model === null) return;
    this.#lib.llama.llama_model_free(this.#model);
    this.#model = null;
  }

  #live(): Pointer {
    if (this.#model === null || this.#disposing) throw new LlamaModelError(`the model was disposed`);
    return this.#model;
  }

  /** A token's text with special tokens rendered (for the template's bos_token / eos_token). */
  #piece(token: number): string {
    const buf = new Uint8Array(256);
    const n = this.#lib.llama.llama_token_to_piece(this.#vocab, token, ptr(buf), buf.length, 0, true);
    return n > 0 ? new TextDecoder().decode(buf.subarray(0, n)) : "";
  }
}

/** A LlamaModel whose `createSequence` gives sequences of one shared, batched context. */
export class BatchedLlamaModel extends BatchedModelView<LlamaSequenceOptions, BatchedSequence, LlamaBatch> {
  constructor(
    override readonly model: LlamaModel,
    batch: LlamaBatch,
  ) {
    super(model, batch);
  }
}

export { CString };
