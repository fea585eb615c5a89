/**
 * Which point an SAE is read at. An SAE was trained on one point's residuals; read elsewhere its
 * activations mean nothing. So: the SAE's own point by default; another one only when the caller
 * says it is meant (`override`); a point is required when the SAE's file names none. One function,
 * so the plugins (`sae-clamp`, `sae-latents`), discovery and the CLI refuse the same mistakes with
 * the same words.
 */
import { resolvePoints } from "../core/points.ts";
import { canonicalPoint, pointName, type HookPoint } from "../core/sites.ts";
import type { SaeInfo } from "./sae.ts";

/** The point, or an error message (the caller names the option it came from). */
export function pickSaePoint(info: SaeInfo, label: string, given: string | undefined, override: boolean, nLayers: number): { point: HookPoint } | { error: string } {
  const own = info.point ? canonicalPoint(info.point, nLayers) : null;
  if (given === undefined) {
    if (own) return { point: own };
    return { error: `${label} names no point${info.hookName ? ` (its hook "${info.hookName}" maps to none)` : ""}: give one, e.g. "resid_post.${Math.floor(nLayers / 2)}"` };
  }
  let points: HookPoint[];
  try {
    points = resolvePoints([given], nLayers);
  } catch (e) {
    return { error: (e as Error).message };
  }
  if (points.length !== 1) return { error: `"${given}" is ${points.length} points; an SAE reads one` };
  const point = points[0]!;
  if (own && (own.site !== point.site || own.layer !== point.layer) && !override) {
    return { error: `${label} was trained at ${pointName(own)}${info.hookName ? ` (${info.hookName})` : ""}, not ${pointName(point)}; set overridePoint: true to use it there anyway` };
  }
  return { point };
}
