/**
 * Hook sites and layer numbers: the one convention of the whole SDK.
 *
 * Layers are 0-based: layer `L` is transformer block `L`. A hook point is a site and a layer:
 *
 * | site         | what it is                                   | TransformerLens           | HF `hidden_states` | llama.cpp tensor |
 * |--------------|----------------------------------------------|---------------------------|--------------------|------------------|
 * | `resid_pre`  | residual entering block L (L=0: embeddings)   | `blocks.L.hook_resid_pre` | `[L]`              | `embd` (L=0)     |
 * | `resid_mid`  | after block L's attention, before its MLP     | `blocks.L.hook_resid_mid` | —                  | `ffn_inp-L`      |
 * | `resid_post` | residual leaving block L (the default site)   | `blocks.L.hook_resid_post`| `[L+1]`            | `l_out-L`        |
 *
 * `resid_pre` of layer L > 0 is the same tensor as `resid_post` of layer L-1, so the SDK stores it
 * under one name: {@link canonicalPoint} turns `resid_pre L` into `resid_post L-1`. Hooks written
 * against either name run at the same place, once, in chain order.
 *
 * llama.cpp control vectors (`direction.N` tensors in a cvec GGUF) are added to `l_out-N`, the output
 * of 0-based block N, and N = 0 is refused by llama.cpp (`common/common.cpp`: "layer 1 at [0]").
 * So `direction.N` is `resid_post N`. HF's last `hidden_states` entry has the final norm applied in
 * most architectures; {@link fromHiddenStatesIndex} maps the index only and cannot undo the norm.
 * In llama.cpp's graph the token embeddings after `get_rows` reach the eval callback as `embd`;
 * `inp_embd` is the input placeholder for caller-supplied embeddings, not the residual.
 */

export type SiteKind = "resid_pre" | "resid_mid" | "resid_post";
export const SITE_KINDS: readonly SiteKind[] = ["resid_pre", "resid_mid", "resid_post"];

export interface HookPoint {
  readonly site: SiteKind;
  readonly layer: number;
}

/** The name a point prints as, e.g. `resid_post.3`. Parse it back with {@link parsePoint}. */
export function pointName(p: HookPoint): string {
  return `${p.site}.${p.layer}`;
}

/**
 * The canonical form of a point: `resid_pre L` for L > 0 becomes `resid_post L-1`.
 * Throws when the layer does not exist in a model with `nLayers` blocks.
 */
export function canonicalPoint(p: HookPoint, nLayers: number): HookPoint {
  checkLayer(p, nLayers);
  if (p.site === "resid_pre" && p.layer > 0) return { site: "resid_post", layer: p.layer - 1 };
  return { site: p.site, layer: p.layer };
}

/** A dense index for a canonical point: embeddings 0, then mid/post of each layer. */
export function pointIndex(p: HookPoint, nLayers: number): number {
  const c = canonicalPoint(p, nLayers);
  if (c.site === "resid_pre") return 0;
  return 1 + 2 * c.layer + (c.site === "resid_mid" ? 0 : 1);
}

/** The inverse of {@link pointIndex}. */
export function pointAt(index: number, nLayers: number): HookPoint {
  if (!Number.isInteger(index) || index < 0 || index > 2 * nLayers) {
    throw new RangeError(`hook point index ${index} is outside 0..${2 * nLayers}`);
  }
  if (index === 0) return { site: "resid_pre", layer: 0 };
  const layer = (index - 1) >> 1;
  return { site: (index - 1) % 2 === 0 ? "resid_mid" : "resid_post", layer };
}

/** Every canonical point of a model, in forward order. */
export function allPoints(nLayers: number): HookPoint[] {
  const out: HookPoint[] = [];
  for (let i = 0; i <= 2 * nLayers; i++) out.push(pointAt(i, nLayers));
  return out;
}

function checkLayer(p: HookPoint, nLayers: number): void {
  if (!(SITE_KINDS as readonly string[]).includes(p.site)) {
    throw new RangeError(`unknown hook site "${p.site}": expected one of ${SITE_KINDS.join(", ")}`);
  }
  if (!Number.isInteger(p.layer) || p.layer < 0 || p.layer >= nLayers) {
    throw new RangeError(`layer ${p.layer} of ${p.site} is outside 0..${nLayers - 1} (the model has ${nLayers} layers)`);
  }
}

const POINT_NAME = new RegExp(`^(${SITE_KINDS.join("|")})[.: ](\\d+)$`);

/** Parse `resid_post.3` (or `resid_post 3`, `resid_post:3`). */
export function parsePoint(name: string): HookPoint {
  const m = POINT_NAME.exec(name.trim());
  if (!m) throw new SyntaxError(`cannot parse hook point "${name}": expected e.g. "resid_post.3"`);
  return { site: m[1] as SiteKind, layer: Number(m[2]) };
}

const TRANSFORMER_LENS = new RegExp(`^blocks\\.(\\d+)\\.hook_(${SITE_KINDS.join("|")})$`);

/** TransformerLens `blocks.N.hook_resid_{pre,mid,post}` -> point. */
export function fromTransformerLens(name: string): HookPoint {
  const m = TRANSFORMER_LENS.exec(name.trim());
  if (!m) {
    throw new SyntaxError(`not a TransformerLens residual hook name: "${name}" (expected blocks.N.hook_resid_pre|mid|post)`);
  }
  return { site: m[2] as SiteKind, layer: Number(m[1]) };
}

export function toTransformerLens(p: HookPoint): string {
  return `blocks.${p.layer}.hook_${p.site}`;
}

/** HF `output_hidden_states` index i -> point: 0 is the embeddings, i is the output of block i-1. */
export function fromHiddenStatesIndex(i: number): HookPoint {
  if (!Number.isInteger(i) || i < 0) throw new RangeError(`hidden_states index must be an integer >= 0, got ${i}`);
  return i === 0 ? { site: "resid_pre", layer: 0 } : { site: "resid_post", layer: i - 1 };
}

export function toHiddenStatesIndex(p: HookPoint): number {
  if (p.site === "resid_mid") throw new RangeError(`HF hidden_states has no mid-block entry (asked for ${pointName(p)})`);
  return p.site === "resid_pre" ? p.layer : p.layer + 1;
}

/** llama.cpp control-vector tensor `direction.N` -> point (`resid_post N`; N >= 1 as llama.cpp requires). */
export function fromLlamaCppDirection(name: string): HookPoint {
  const m = /^direction\.(\d+)$/.exec(name.trim());
  if (!m) throw new SyntaxError(`not a llama.cpp control-vector tensor name: "${name}" (expected direction.N)`);
  const n = Number(m[1]);
  if (n === 0) throw new RangeError(`llama.cpp control vectors have no direction.0 (layer numbers start at 1)`);
  return { site: "resid_post", layer: n };
}

export function toLlamaCppDirection(p: HookPoint, nLayers: number): string {
  const c = canonicalPoint(p, nLayers);
  if (c.site !== "resid_post") throw new RangeError(`llama.cpp control vectors only address block outputs, not ${pointName(p)}`);
  if (c.layer === 0) throw new RangeError(`llama.cpp control vectors cannot address block 0's output (resid_post.0)`);
  return `direction.${c.layer}`;
}

/**
 * Where llama.cpp's graph builders (src/models/<arch>.cpp of the verified release) put resid_pre.0
 * and the mid-block sum, for architectures that differ from the llama pattern (`embd`, `ffn_inp-N`):
 * Gemma scales the embeddings by sqrt(n_embd) into `inp_scaled` and names the sum `sa_out-N`; GPT-2
 * adds its learned positions into `inpL`; phi3 leaves the mid-block sum unnamed (mid: null); phi2's
 * blocks are parallel (attention and MLP read the same norm and are added together: no resid_mid).
 */
export interface LlamaCppResidualNames {
  readonly pre: string;
  readonly mid: string | null;
  /** Parallel-residual blocks: there is no point between attention and MLP (resid_mid does not exist). */
  readonly parallel?: boolean;
}

export const LLAMA_CPP_RESIDUAL_NAMES: Readonly<Record<string, LlamaCppResidualNames>> = {
  gemma2: { pre: "inp_scaled", mid: "sa_out" },
  gemma3: { pre: "inp_scaled", mid: "sa_out" },
  gpt2: { pre: "inpL", mid: "ffn_inp" },
  phi3: { pre: "embd", mid: null },
  phi2: { pre: "embd", mid: null, parallel: true },
};

/**
 * The residual tensor names of `architecture` in llama.cpp's graph (the llama pattern when absent or unlisted).
 * @example
 * llamaCppResidualNames("gemma2");   // { pre: "inp_scaled", mid: "sa_out" }
 */
export function llamaCppResidualNames(architecture?: string): LlamaCppResidualNames {
  return (architecture !== undefined && Object.hasOwn(LLAMA_CPP_RESIDUAL_NAMES, architecture) ? LLAMA_CPP_RESIDUAL_NAMES[architecture] : undefined) ?? { pre: "embd", mid: "ffn_inp" };
}

/**
 * llama.cpp graph tensor names (`l_out-N`, `ffn_inp-N`, `embd`, or the architecture's own) <-> points.
 * @example
 * fromLlamaCppTensor("sa_out-3", "gemma2");   // { site: "resid_mid", layer: 3 }
 */
export function fromLlamaCppTensor(name: string, architecture?: string): HookPoint {
  const names = llamaCppResidualNames(architecture);
  if (name === names.pre) return { site: "resid_pre", layer: 0 };
  const m = /^([a-z_]+)-(\d+)$/.exec(name);
  if (m && (m[1] === "l_out" || (m[1] === names.mid && !names.parallel))) return { site: m[1] === "l_out" ? "resid_post" : "resid_mid", layer: Number(m[2]) };
  const mid = names.mid === null ? "" : `, ${names.mid}-N`;
  throw new SyntaxError(`not a llama.cpp residual tensor name${architecture ? ` of ${architecture}` : ""}: "${name}" (expected ${names.pre}${mid} or l_out-N)`);
}

/**
 * The llama.cpp tensor of a point, for an architecture (or explicit names: `{ pre, mid }`).
 * @example
 * toLlamaCppTensor({ site: "resid_pre", layer: 0 }, 4, "gpt2");   // "inpL" (embeddings + positions)
 */
export function toLlamaCppTensor(p: HookPoint, nLayers: number, architecture?: string | LlamaCppResidualNames): string {
  const c = canonicalPoint(p, nLayers);
  const names = typeof architecture === "object" ? architecture : llamaCppResidualNames(architecture);
  if (c.site === "resid_pre") return names.pre;
  if (c.site === "resid_post") return `l_out-${c.layer}`;
  if (names.parallel) {
    const arch = typeof architecture === "string" ? architecture : "this architecture";
    throw new RangeError(`${arch} has no ${pointName(c)}: its blocks add attention and MLP to the stream together (parallel residual)`);
  }
  if (names.mid !== null) return `${names.mid}-${c.layer}`;
  const input = c.layer === 0 ? names.pre : `l_out-${c.layer - 1}`;
  return `(unnamed ADD: attention output + ${input})`;
}
