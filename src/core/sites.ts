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

/** llama.cpp graph tensor names (`l_out-N`, `ffn_inp-N`, `embd`) <-> points. */
export function fromLlamaCppTensor(name: string): HookPoint {
  if (name === "embd") return { site: "resid_pre", layer: 0 };
  const m = /^(l_out|ffn_inp)-(\d+)$/.exec(name);
  if (!m) throw new SyntaxError(`not a llama.cpp residual tensor name: "${name}" (expected embd, ffn_inp-N or l_out-N)`);
  return { site: m[1] === "l_out" ? "resid_post" : "resid_mid", layer: Number(m[2]) };
}

export function toLlamaCppTensor(p: HookPoint, nLayers: number): string {
  const c = canonicalPoint(p, nLayers);
  if (c.site === "resid_pre") return "embd";
  return `${c.site === "resid_post" ? "l_out" : "ffn_inp"}-${c.layer}`;
}
