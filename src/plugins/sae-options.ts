/**
 * What `sae-clamp` and `sae-latents` share: the `sae` / `point` / `overridePoint` / `topk` options,
 * and resolving them in `prepare` (load the registered SAE, check it against the model, pick the
 * point). One place, so both plugins refuse the same mistakes with the same words.
 * The point rules (default, override, required) are sae/point.ts's.
 */
import * as v from "valibot";
import type { PrepareContext } from "../core/plugin.ts";
import { PointPattern } from "../core/points.ts";
import type { HookPoint } from "../core/sites.ts";
import { saeArtifact } from "../sae/artifact.ts";
import { pickSaePoint } from "../sae/point.ts";
import type { TopKMode } from "../sae/latents.ts";
import type { Sae } from "../sae/sae.ts";

/** A latent index (checked against the SAE's width in `prepare`). */
export const LatentIndex = v.pipe(v.number(), v.integer(), v.minValue(0));

export const SaeOptionEntries = {
  /** The name of a registered `sae` artifact. */
  sae: v.pipe(v.string(), v.minLength(1), v.maxLength(128)),
  /** The point to read (and edit): one point such as "resid_post.3". Default: the SAE's own point. */
  point: v.optional(PointPattern),
  /** Allow a `point` other than the one the SAE names. */
  overridePoint: v.optional(v.boolean(), false),
  /** TopK SAEs only: "exact" (default; a full encoder pass per row) or "approximate" (ReLU of each chosen pre-activation). */
  topk: v.optional(v.picklist(["exact", "approximate"])),
};

export interface SaeOptions {
  readonly sae: string;
  readonly point?: string | undefined;
  readonly overridePoint: boolean;
  readonly topk?: TopKMode | undefined;
}

export interface ResolvedSae {
  readonly sae: Sae;
  readonly point: HookPoint;
  readonly topk: TopKMode;
}

/** Load the SAE and check it against the model and the options; errors name the option. */
export async function resolveSae(o: SaeOptions, ctx: PrepareContext): Promise<ResolvedSae> {
  const sae = await ctx.artifacts.load(saeArtifact, o.sae);
  const { info } = sae;
  const { model } = ctx;
  const label = `SAE "${o.sae}"`;
  if (info.dIn !== model.dModel) ctx.invalid("sae", `${label} reads vectors of ${info.dIn} values (d_in); the model's residual has ${model.dModel}`);
  if (o.topk !== undefined && info.architecture !== "topk") ctx.invalid("topk", `applies to TopK SAEs; ${label} is ${info.architecture}`);
  const picked = pickSaePoint(info, label, o.point, o.overridePoint, model.nLayers);
  if ("error" in picked) return ctx.invalid("point", picked.error);
  const { point } = picked;
  return { sae, point, topk: o.topk ?? "exact" };
}

/** Refuse a latent index the SAE does not have, naming the option. */
export function checkLatent(ctx: PrepareContext, path: string, index: number, sae: Sae, name: string): void {
  if (index >= sae.info.dSae) ctx.invalid(path, `latent ${index} is out of range: SAE "${name}" has ${sae.info.dSae} latents (0..${sae.info.dSae - 1})`);
}
