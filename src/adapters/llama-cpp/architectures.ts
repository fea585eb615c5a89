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

import { llamaCppResidualNames } from "../../core/sites.ts";

export interface ArchitectureGraph {
  /** The graph tensor that is resid_pre.0. */
  readonly pre: string;
  /** Prefix of the mid-block sum's name (`<mid>-L`); null when the builder leaves it unnamed. */
  readonly mid: string | null;
  /** Parallel-residual blocks (phi2): there is no resid_mid; hooks there are refused. */
  readonly parallel: boolean;
  /** The builder adds learned position embeddings (GPT-2): a context past the trained one would read past the table. */
  readonly learnedPositions: boolean;
  /**
   * The builder adds llama.cpp's control vector at `l_out-L` (`build_cvec` right before `cb(cur, "l_out", il)`),
   * so an additive edit there may be served as a control vector. True for every builder listed here.
   */
  readonly controlVector: boolean;
}

const graph = (arch: string, learnedPositions = false): ArchitectureGraph => {
  const names = llamaCppResidualNames(arch);
  return { pre: names.pre, mid: names.mid, parallel: names.parallel ?? false, learnedPositions, controlVector: true };
};

/**
 * Every architecture the adapter hooks (names from core's LLAMA_CPP_RESIDUAL_NAMES). Each one —
 * llama (Llama 2/3, Mistral), mistral3 (Mistral Small 3.1; without yarn or attention temperature),
 * smollm3 (its no-rope blocks), phi3, gemma2, gemma3, gpt2, qwen2, qwen3 and phi2 (parallel blocks: no
 * resid_mid) — is verified against llama.cpp's own tools on random-weight models
 * (test/llama-cpp/architectures.test.ts).
 */
export const ARCHITECTURE_GRAPHS: Readonly<Record<string, ArchitectureGraph>> = {
  llama: graph("llama"),
  mistral3: graph("mistral3"),
  smollm3: graph("smollm3"),
  qwen2: graph("qwen2"),
  qwen3: graph("qwen3"),
  phi3: graph("phi3"),
  gemma2: graph("gemma2"),
  gemma3: graph("gemma3"),
  gpt2: graph("gpt2", true),
  phi2: graph("phi2"),
};

/**
 * The graph facts of `arch`, or undefined when the adapter does not hook it.
 * @example
 * architectureGraph("gemma2")?.pre;   // "inp_scaled": resid_pre.0 is the embeddings after the sqrt(d) scaling
 */
export function architectureGraph(arch: string): ArchitectureGraph | undefined {
  return Object.hasOwn(ARCHITECTURE_GRAPHS, arch) ? ARCHITECTURE_GRAPHS[arch] : undefined;
}
