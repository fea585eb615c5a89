/**
 * How each supported GGUF architecture departs from the llama block: one description per
 * architecture, read by the GGUF reader (llama-gguf.ts: which tensors and metadata keys exist), the
 * reference backend (src/testing/reference-llama.ts) and the ONNX graph writer (llama-onnx-graph.ts).
 * Neither of those branches on an architecture's name: they read these fields, so adding an
 * architecture is adding an entry here (and checking its graph builder), not editing the math.
 *
 * Every entry was read from the pinned llama.cpp's `src/models/<arch>.cpp` (hyper-parameters,
 * tensors, graph) and `src/llama-graph.cpp` (build_norm, build_qkv, build_ffn, build_attn_mha):
 *
 * - `llama` (Llama 2/3, Mistral, everything converted as llama): RMSNorm, NORM rope (adjacent
 *   pairs, on GGUF-permuted q/k), SwiGLU, optional `rope_freqs.weight` (Llama 3.1 frequency
 *   factors), optional biases. llama.cpp refuses n_rot != head_dim for llama.
 * - `mistral3`: the llama graph; its attention temperature scaling is refused by name.
 * - `smollm3`: the llama graph with no rope in every 4th block (`(il + 1) % 4 == 0`).
 * - `qwen2`: NEOX rope (halves), q/k/v biases, optional `output.bias`.
 * - `qwen3`: NEOX, per-head RMSNorm of q and k before rope (`attn_q_norm` / `attn_k_norm`).
 * - `phi3`: NEOX with partial rotary allowed (n_rot = `rope.dimension_count` may be < head_dim),
 *   q/k/v usually fused in `attn_qkv`, gate and up fused in `ffn_up` ([n_embd, 2 n_ff]:
 *   silu(first half) * second half, ggml_swiglu), q scaled by 1/sqrt(head_dim) before attention.
 *   Phi-3's sliding window is disabled by llama.cpp ("Phi SWA is currently disabled"), so full
 *   attention everywhere. Longrope (Phi-3 128k, Phi-3.5, Phi-4-mini): `rope_factors_long.weight` /
 *   `rope_factors_short.weight` divide the rope frequencies, long when the context per sequence
 *   exceeds `rope.scaling.original_context_length`, else short (llama.cpp's get_rope_factors: chosen
 *   once per context, not per position as HF does), with `rope.scaling.attn_factor` on cos and sin.
 * - `gemma2`: the embedding is scaled by sqrt(n_embd); RMSNorm (GGUF norm weights already hold
 *   HF's 1 + w: llama.cpp's converter adds the 1); post-attention and post-FFN RMSNorms
 *   (`attn_post_norm`, `ffn_post_norm`) applied to each branch before its residual add; GELU-tanh
 *   gated FFN (gelu(gate) * up); attention logits soft-capped, cap * tanh(s / cap), cap =
 *   `attention.logit_softcapping` (default 50); final logits soft-capped, cap =
 *   `final_logit_softcapping` (default 30); a sliding window on every other block starting with
 *   block 0 (pattern 2: block il slides when il % 2 == 0; window `attention.sliding_window`,
 *   default 4096); q scaled by 1/sqrt(head_dim), or 1/sqrt(n_embd / n_head) for the 46-block (27B)
 *   model; the output head is always the embedding (llama.cpp loads no output.weight).
 * - `gemma3`: gemma2 without the attention soft-cap, with per-head q/k RMSNorm before rope, an
 *   optional final soft-cap (absent = none), an optional output.weight, and sliding-window blocks
 *   only when `attention.sliding_window` is set: pattern 6 (blocks with il % 6 < 5 slide), whose
 *   rope uses base `rope.freq_base_swa` (default 10000) and no scaling while global blocks use
 *   `rope.freq_base` and the rope scaling factor; the 62-block (27B) model scales q by
 *   1/sqrt(n_embd / n_head).
 * - `gpt2`: learned absolute positions (`position_embd.weight` added to the token embedding),
 *   LayerNorm with bias (eps `attention.layer_norm_epsilon`), fused q/k/v with bias, biases on every
 *   projection, a plain GELU-tanh MLP (up, gelu, down), no rope.
 *
 * GELU: llama.cpp's CPU `ggml_gelu` is the tanh approximation 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715
 * x³))), evaluated through a table on the input rounded to F16 (GGML_GELU_FP16), so it agrees with
 * the exact tanh form to about 1e-3 relative; the reference and the ONNX graph compute the exact
 * tanh form.
 */

export type RopeKind = "norm" | "neox" | "none";
export type NormKind = "rms" | "layer";
/** swiglu: silu(gate) * up; geglu: gelu_tanh(gate) * up; gelu: gelu_tanh(up) (no gate). */
export type FfnKind = "swiglu" | "geglu" | "gelu";

export interface SlidingWindowRule {
  /** Window when the GGUF has no `attention.sliding_window`; null = no sliding window then. */
  readonly defaultWindow: number | null;
  /** Default `attention.sliding_window_pattern`: block il slides when il % pattern < pattern - 1. */
  readonly defaultPattern: number;
  /**
   * Rope of sliding blocks. "global": base `rope.freq_base_swa` if set, else the global base, and
   * the global scaling (gemma2). "own": base `rope.freq_base_swa` if set, else 10000, and no
   * scaling (gemma3: llama.cpp's defaults for the SWA rope).
   */
  readonly localRope: "global" | "own";
}

export interface ArchProfile {
  /** NORM rotates adjacent pairs (llama), NEOX rotates halves (qwen, phi3, gemma); none: gpt2. */
  readonly rope: RopeKind;
  /** Whether n_rot (`rope.dimension_count`) may be smaller than the head size. */
  readonly partialRotary: boolean;
  readonly norm: NormKind;
  /** Per-head RMSNorm of q and k before RoPE (qwen3, gemma3). */
  readonly qkNorm: boolean;
  /** Blocks `il` with `(il + 1) % step == 0` skip RoPE; 0 = every block uses it (smollm3: 4). */
  readonly noRopeLayerStep: number;
  /** Whether llama.cpp applies `rope_freqs.weight` for this architecture. */
  readonly ropeFreqs: boolean;
  /** Whether llama.cpp applies `rope_factors_long/short.weight` (phi3's longrope) for this architecture. */
  readonly longrope: boolean;
  readonly ffn: FfnKind;
  /** Gate and up stored as one `ffn_up` of 2 n_ff rows, gate first (phi3). */
  readonly fusedGateUp: boolean;
  /** `attn_post_norm` / `ffn_post_norm` on each branch before its residual add (gemma2/3). */
  readonly postNorms: boolean;
  /** Token embeddings multiplied by sqrt(n_embd) (gemma). */
  readonly embedScaleSqrtD: boolean;
  /** `position_embd.weight` added to the token embedding (gpt2). */
  readonly learnedPositions: boolean;
  /** Attention soft-cap: "always" (default 50 unless the key says otherwise), or "none". */
  readonly attnSoftcap: "always" | "none";
  /** Final-logit soft-cap: "always" (default 30), "optional" (only when the key is set), "none". */
  readonly finalSoftcap: "always" | "optional" | "none";
  readonly slidingWindow: SlidingWindowRule | null;
  /** Block count of the variant whose q scale is 1/sqrt(n_embd/n_head) instead of 1/sqrt(head_dim). */
  readonly wideQueryScaleLayers: number | null;
  /** The output head is always the token embedding (llama.cpp loads no output.weight). */
  readonly alwaysTied: boolean;
  /** HF `architectures[0]` for config.json. */
  readonly hfClass: string;
  /** HF `hidden_act` for config.json. */
  readonly hfActivation: string;
}

const LLAMA: ArchProfile = {
  rope: "norm",
  partialRotary: false,
  norm: "rms",
  qkNorm: false,
  noRopeLayerStep: 0,
  ropeFreqs: true,
  longrope: false,
  ffn: "swiglu",
  fusedGateUp: false,
  postNorms: false,
  embedScaleSqrtD: false,
  learnedPositions: false,
  attnSoftcap: "none",
  finalSoftcap: "none",
  slidingWindow: null,
  wideQueryScaleLayers: null,
  alwaysTied: false,
  hfClass: "LlamaForCausalLM",
  hfActivation: "silu",
};

const GEMMA2: ArchProfile = {
  ...LLAMA,
  rope: "neox",
  partialRotary: true,
  ropeFreqs: false,
  ffn: "geglu",
  postNorms: true,
  embedScaleSqrtD: true,
  attnSoftcap: "always",
  finalSoftcap: "always",
  slidingWindow: { defaultWindow: 4096, defaultPattern: 2, localRope: "global" },
  wideQueryScaleLayers: 46,
  alwaysTied: true,
  hfClass: "Gemma2ForCausalLM",
  hfActivation: "gelu_pytorch_tanh",
};

/** Architectures whose GGUF tensors and math this module describes. */
export const ARCHITECTURES: Readonly<Record<string, ArchProfile>> = {
  llama: LLAMA,
  mistral3: { ...LLAMA, hfClass: "MistralForCausalLM" },
  smollm3: { ...LLAMA, noRopeLayerStep: 4, ropeFreqs: false, hfClass: "SmolLM3ForCausalLM" },
  qwen2: { ...LLAMA, rope: "neox", partialRotary: true, ropeFreqs: false, hfClass: "Qwen2ForCausalLM" },
  qwen3: { ...LLAMA, rope: "neox", partialRotary: true, qkNorm: true, ropeFreqs: false, hfClass: "Qwen3ForCausalLM" },
  phi3: { ...LLAMA, rope: "neox", partialRotary: true, ropeFreqs: false, longrope: true, fusedGateUp: true, hfClass: "Phi3ForCausalLM" },
  gemma2: GEMMA2,
  gemma3: {
    ...GEMMA2,
    qkNorm: true,
    attnSoftcap: "none",
    finalSoftcap: "optional",
    slidingWindow: { defaultWindow: null, defaultPattern: 6, localRope: "own" },
    wideQueryScaleLayers: 62,
    alwaysTied: false,
    hfClass: "Gemma3ForCausalLM",
  },
  gpt2: {
    ...LLAMA,
    rope: "none",
    norm: "layer",
    ropeFreqs: false,
    ffn: "gelu",
    learnedPositions: true,
    hfClass: "GPT2LMHeadModel",
    hfActivation: "gelu_new",
  },
};
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURES);

/** The profile of `arch`, or null when it is not supported. */
export function architectureProfile(arch: string): ArchProfile | null {
  return Object.hasOwn(ARCHITECTURES, arch) ? ARCHITECTURES[arch]! : null;
}
