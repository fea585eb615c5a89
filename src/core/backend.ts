/**
 * The Backend contract: what every adapter in `src/adapters/*` implements.
 *
 * Core owns sampling, logits hooks, the request lifecycle and text decoding; a backend owns the
 * forward pass, the KV cache and the residual hook points inside it. The seam between them is
 * {@link ResidualHooks}: core compiles a request's plugin chain into one, a backend calls it from
 * inside its forward pass (or applies its affine edits natively) and never sees a plugin.
 */
import type { HookPoint } from "./sites.ts";
import type { Tensor } from "./tensor.ts";

/** What a plugin may need from a backend, and what a backend offers. */
export type Capability = "residual:read" | "residual:write" | "logits:read" | "logits:write";
export const CAPABILITIES: readonly Capability[] = ["residual:read", "residual:write", "logits:read", "logits:write"];

export interface ModelInfo {
  /** Adapter name, e.g. "llama-cpp", "onnx", "test". */
  readonly backend: string;
  /** Architecture as the file names it ("llama", "gpt2", ...). */
  readonly architecture: string;
  /** A human name (GGUF general.name, HF name_or_path, file name). */
  readonly name: string;
  readonly nLayers: number;
  /** Residual width (n_embd / hidden_size). */
  readonly dModel: number;
  readonly vocabSize: number;
  /** Longest sequence (prompt + generated) a sequence accepts. */
  readonly contextLength: number;
  readonly bosToken: number | null;
  /** Tokens that end generation (EOS, EOT, ...). */
  readonly eosTokens: readonly number[];
  /** The model's own Jinja chat template, or null when it has none. */
  readonly chatTemplate: string | null;
  /**
   * Each block adds attention and MLP to the stream together (parallel residual, e.g. phi2): there is
   * no resid_mid, and points "all" leaves it out. Absent: sequential blocks.
   */
  readonly parallelBlocks?: boolean;
}

export interface ChatMessage {
  readonly role: "system" | "user" | "assistant" | (string & {});
  readonly content: string;
}

export interface TokenizeOptions {
  /** Prepend BOS when the model uses one. Default true. */
  readonly addBos?: boolean;
  /** Parse special-token text such as `<|im_start|>` into special tokens. Default false. */
  readonly special?: boolean;
}

/**
 * Absolute token positions `[from, to)`: `to` is `Infinity` for "from `from` on". Core resolves a
 * plugin's symbolic positions ("prompt", "generated", `{ from }`) against the request's prompt
 * length, so a backend only compares numbers.
 */
export interface PositionRange {
  readonly from: number;
  readonly to: number;
}

/**
 * One residual edit of the form `h' = h + (h U) V + c`, applied to every row `h` (a `[dModel]` row
 * of the residual) at one point whose position lies in `positions` (every row when null). Additive
 * steering is `c` alone; directional ablation is `U = r̂` (k = 1), `V = -r̂ᵀ`. Core composes all
 * affine plugins at a point into one edit.
 */
export interface AffineEdit {
  readonly point: HookPoint;
  /** Rank of the low-rank part (0 when there is none). */
  readonly rank: number;
  /** `[dModel, rank]` row-major, or null when rank is 0. */
  readonly U: Float32Array | null;
  /** `[rank, dModel]` row-major, or null when rank is 0. */
  readonly V: Float32Array | null;
  /** `[dModel]` bias, or null. */
  readonly c: Float32Array | null;
  /** Rows the edit applies to, by absolute position; null (or absent) for every row. */
  readonly positions?: PositionRange | null;
}

/**
 * A request's residual hooks, compiled by core. A backend must make every point in `points`
 * happen: for each, either apply `affine.get(point)` natively (when present and the backend can) or
 * call `run`. It must not do both for one point.
 */
export interface ResidualHooks {
  /** Canonical hooked points (see sites.ts), in forward order. Ask the runtime for nothing else. */
  readonly points: readonly HookPoint[];
  /**
   * Points whose every hook is affine, keyed by `pointName`, with their composed edit. A backend
   * may apply these natively and skip `run` at those points. Empty when the request asked for the
   * JS path (`fastPath: false`).
   */
  readonly affine: ReadonlyMap<string, AffineEdit>;
  /** False when no hook writes anywhere: a backend may then skip writing back at every point. */
  readonly writes: boolean;
  /**
   * Canonical names of the points where every hook only reads. A backend may serve them without
   * writing back (ONNX: an extra graph output instead of a graph cut; llama.cpp: no write-back),
   * and may run them after the forward pass, since nothing downstream depends on them.
   */
  readonly readOnly: ReadonlySet<string>;
  /**
   * Run the chain at `point` over `x` (`[rows, dModel]`, row i at absolute position
   * `positions[i]`, computed from token id `tokens[i]`). Returns the tensor to write back (`x`
   * itself when edited in place).
   * A backend may pass fewer rows than the batch where later rows cannot matter: llama.cpp's last
   * block computes only the rows that produce logits, so its last-layer points see one row.
   * Never throws: a hook's error is kept in `error` and `x` is returned unchanged, so a native
   * caller stays safe; check `error` after the forward pass.
   */
  run(point: HookPoint, x: Tensor, positions: ArrayLike<number>, tokens: ArrayLike<number>): Tensor;
  /** The first error a hook raised in this request, or null. A backend may end its forward pass early when set. */
  readonly error: Error | null;
}

export interface SequenceOptions {
  readonly hooks?: ResidualHooks;
}

/**
 * A sequence: one KV cache and the tokens in it. Several may be alive at once on one model
 * (each with its own hooks); calls on one sequence must not change another's results.
 */
export interface Sequence {
  readonly id: number;
  /** Tokens currently in the KV cache. */
  readonly length: number;
  /**
   * Evaluate `tokens` after the ones already cached; resolve to the logits `[vocab]` of the last.
   * The array may be reused by the next call on this sequence: copy it to keep it.
   */
  prefill(tokens: ArrayLike<number>): Promise<Float32Array>;
  /** `prefill` of one token. */
  decode(token: number): Promise<Float32Array>;
  /** Forget every cached token (keeps the sequence usable). */
  reset(): void;
  /** Release the KV cache. Idempotent; the sequence is unusable afterwards. */
  free(): void;
}

export interface Model {
  readonly info: ModelInfo;
  /** What this loaded model supports (usually the adapter's capabilities). */
  readonly capabilities: readonly Capability[];
  tokenize(text: string, options?: TokenizeOptions): number[];
  /** Text of the tokens; special tokens (BOS/EOS) are left out. */
  detokenize(tokens: ArrayLike<number>): string;
  /** Render messages with the model's chat template (plain-completion fallback without one). */
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  createSequence(options?: SequenceOptions): Sequence;
  /**
   * Optional, for backends that batch: a view of this model whose sequences (at most `sequences`
   * alive at once) are decoded together in shared forward passes, each with its own hooks, with
   * results equal to `createSequence`'s. Disposing the view frees what it holds, not the weights.
   */
  batched?(options: BatchOptions): Model;
  /** Free the weights and every sequence. Idempotent. */
  dispose(): void;
}

export interface BatchOptions {
  /** Sequences alive at once. */
  readonly sequences: number;
}

export interface LoadOptions {
  /** CPU threads for the forward pass (adapter default when absent). */
  readonly threads?: number;
  /** Context length per sequence (defaults to the model's, capped by the adapter). */
  readonly contextLength?: number;
}

/** An adapter: a name, what it can do (known before any weights load), and a loader. */
export interface BackendAdapter<O extends LoadOptions = LoadOptions> {
  readonly name: string;
  readonly capabilities: readonly Capability[];
  /** True when `path` looks like something this adapter opens (cheap: no weights read). */
  canOpen(path: string): boolean;
  load(path: string, options?: O): Promise<Model>;
}
