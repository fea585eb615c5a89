/**
 * Where each architecture's residual stream is in llama.cpp's graph, read from the pinned release's
 * graph builders (src/models/<arch>.cpp). The three sites mean the same on every architecture
 * (README "Layer numbers and hook sites"): resid_pre.0 is what enters block 0, resid_mid.L the stream
 * after block L's attention (and its post-norm, in Gemma) and before its MLP, resid_post.L the block's
 * output, where llama.cpp adds a control vector (`build_cvec`, called by every builder listed here
 * right before `cb(cur, "l_out", il)`).
 *
 * Why per architecture: the tensors are named differently. resid_pre.0 is the token embeddings
 * (`embd`) where nothing touches them before block 0, but Gemma scales them by sqrt(n_embd) first
 * (`inp_scaled`) and GPT-2 adds learned positions (`inpL`); the mid-block sum is `ffn_inp-L` in most
 * builders, `sa_out-L` in Gemma's, and unnamed in phi3's (`cur = ggml_add(cur, residual)`), where the
 * shim finds it by its inputs instead (the ADD whose second input is the block's input).
 */

export interface ArchitectureGraph {
  /** The graph tensor that is resid_pre.0. */
  readonly pre: string;
  /** Prefix of the mid-block sum's name (`<mid>-L`); null when the builder leaves it unnamed. */
  readonly mid: string | null;
  /** The builder adds learned position embeddings (GPT-2): a context past the trained one would read past the table. */
  readonly learnedPositions: boolean;
}

const LLAMA_LIKE: ArchitectureGraph = { pre: "embd", mid: "ffn_inp", learnedPositions: false };

/**
 * Every architecture the adapter hooks. llama (Llama 2/3, Mistral), phi3, gemma2, gemma3, gpt2,
 * qwen2 and qwen3 are verified against llama.cpp's own tools on random-weight models
 * (test/llama-cpp/architectures.test.ts); mistral3 and smollm3 were checked in the builders' source only.
 */
export const ARCHITECTURE_GRAPHS: Readonly<Record<string, ArchitectureGraph>> = {
  llama: LLAMA_LIKE,
  mistral3: LLAMA_LIKE,
  smollm3: LLAMA_LIKE,
  qwen2: LLAMA_LIKE,
  qwen3: LLAMA_LIKE,
  phi3: { pre: "embd", mid: null, learnedPositions: false },
  gemma2: { pre: "inp_scaled", mid: "sa_out", learnedPositions: false },
  gemma3: { pre: "inp_scaled", mid: "sa_out", learnedPositions: false },
  gpt2: { pre: "inpL", mid: "ffn_inp", learnedPositions: true },
};

/**
 * The graph facts of `arch`, or undefined when the adapter does not hook it.
 * @example
 * architectureGraph("gemma2")?.pre;   // "inp_scaled": resid_pre.0 is the embeddings after the sqrt(d) scaling
 */
export function architectureGraph(arch: string): ArchitectureGraph | undefined {
  return Object.hasOwn(ARCHITECTURE_GRAPHS, arch) ? ARCHITECTURE_GRAPHS[arch] : undefined;
}

/**
 * The llama.cpp tensor that is a hook point on `arch` (for docs, `steerkit inspect` and tests).
 * @example
 * llamaCppTensorOf("phi3", "resid_mid", 2);   // "(unnamed ADD: attn_out + l_out-1)"
 */
export function llamaCppTensorOf(arch: string, site: "resid_pre" | "resid_mid" | "resid_post", layer: number): string {
  const g = architectureGraph(arch) ?? LLAMA_LIKE;
  if (site === "resid_post") return `l_out-${layer}`;
  if (site === "resid_pre") return layer === 0 ? g.pre : `l_out-${layer - 1}`;
  if (g.mid !== null) return `${g.mid}-${layer}`;
  return `(unnamed ADD: attn_out + ${layer === 0 ? g.pre : `l_out-${layer - 1}`})`;
}
