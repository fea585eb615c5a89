/**
 * SAE hook names -> Steerkit points, through the one layer convention (`src/core/sites.ts`).
 *
 * Files name where they were trained in their tool's terms: SAELens in TransformerLens names
 * (`blocks.8.hook_resid_post`), sparsify in HF module names (`layers.8`, the output of decoder layer
 * 8, i.e. HF `hidden_states[9]`, which is `resid_post.8`; SAELens's own sparsify loader maps it to
 * `blocks.8.hook_resid_post` too, `sae_lens/loading/pretrained_sae_loaders.py`). Anything that is not
 * the residual stream (MLP or attention outputs, `hook_z`, `hook_embed` before Gemma's √d scaling,
 * submodules like `layers.8.mlp`) maps to null: the user names the point, knowingly.
 */
import { canonicalPoint, fromHiddenStatesIndex, fromTransformerLens, parsePoint, pointName, type HookPoint } from "../core/sites.ts";

const HF_BLOCK_OUTPUT = /^(?:model\.|model\.model\.|transformer\.|gpt_neox\.|language_model\.model\.)?(?:layers|h)\.(\d+)$/;

/** The point a file's hook name addresses, or null when it is not a residual point (or not recognized). */
export function pointFromHookName(name: string | null): HookPoint | null {
  if (name === null) return null;
  try {
    return fromTransformerLens(name);
  } catch {
    // not a TransformerLens residual name
  }
  const m = HF_BLOCK_OUTPUT.exec(name.trim());
  if (m) return fromHiddenStatesIndex(Number(m[1]) + 1);
  return null;
}

/** A point from a user's option: `"resid_post.3"` or a HookPoint. */
export function toPoint(p: string | HookPoint): HookPoint {
  return typeof p === "string" ? parsePoint(p) : { site: p.site, layer: p.layer };
}

/** Whether two points are the same place (`resid_pre.L` = `resid_post.(L-1)`), without a model at hand. */
export function samePoint(a: HookPoint, b: HookPoint): boolean {
  const c = (p: HookPoint) => pointName(p.site === "resid_pre" && p.layer > 0 ? canonicalPoint(p, p.layer + 1) : p);
  return c(a) === c(b);
}
