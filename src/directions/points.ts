/**
 * Point names as direction files store them: canonical, so `resid_pre.3` and `resid_post.2` (the same
 * tensor, see core/sites.ts) are one key. Without a model the layer cannot be range-checked; plugins
 * check it against the model they run on.
 */
import { parsePoint, pointName } from "../core/sites.ts";

/** `resid_pre.L` (L > 0) -> `resid_post.(L-1)`; other names as `pointName` prints them. Throws on a non-point. */
export function canonicalName(name: string): string {
  const p = parsePoint(name);
  return pointName(p.site === "resid_pre" && p.layer > 0 ? { site: "resid_post", layer: p.layer - 1 } : p);
}
