/**
 * The shared `points` and `positions` options: one schema, one set of keywords and one resolver
 * for every plugin, so `"all"` means the same thing in `add-vector`, `ablate-direction`, `logger`
 * and any third-party plugin that uses {@link PointsOption}.
 *
 * `points` (validated without a model; layers are checked when a model is known):
 * - `"all"`: every place the residual stream is written: `resid_pre.0`, then `resid_mid.L` and
 *   `resid_post.L` of every block (2n+1 points). This is where Arditi et al. ablate. On a model
 *   whose blocks are parallel (`ModelInfo.parallelBlocks`, e.g. phi2) there is no `resid_mid`: n+1.
 * - a list of patterns, each `site.L` (`"resid_post.3"`), `site.A-B` (layers A..B inclusive) or
 *   `site.*` (every layer of that site). `resid_pre.L` for L > 0 is `resid_post.(L-1)` (sites.ts).
 * - `"every"` is accepted as an old spelling of `"all"`.
 *
 * `positions` (which rows of the residual an edit touches, by absolute token position):
 * `"all"` (default), `"prompt"` (the prompt's rows), `"generated"` (rows of generated tokens fed
 * back), or `{ "from": p, "to"?: q }` (positions p..q-1). Core resolves them per request into a
 * {@link PositionRange}, which backends apply natively for affine edits.
 */
import * as v from "valibot";
import type { PositionRange } from "./backend.ts";
import { canonicalPoint, pointIndex, pointAt, SITE_KINDS, type HookPoint, type SiteKind } from "./sites.ts";

const PATTERN = new RegExp(`^(${SITE_KINDS.join("|")})[.: ](\\*|\\d+(?:-\\d+)?)$`);

/** One point pattern: `resid_post.3`, `resid_mid.2-5`, `resid_post.*`. */
export const PointPattern = v.pipe(
  v.string(),
  v.check((s) => PATTERN.test(s.trim()), 'expected a point such as "resid_post.3", a range "resid_post.2-5" or "resid_post.*"'),
);

/** What a `points` option holds after validation. */
export type PointsSpec = "all" | "every" | readonly string[];

/**
 * The `points` option schema. `minPoints: 0` allows an empty list (a plugin that may watch
 * nothing, such as a logits-only logger).
 * @example
 * ```ts
 * const Options = v.object({ points: PointsOption(), vector: v.array(v.number()) });
 * // in create: resolvePoints(o.points, model)
 * ```
 */
export function PointsOption(options: { minPoints?: number } = {}) {
  return v.union(
    [v.literal("all"), v.literal("every"), v.pipe(v.array(PointPattern), v.minLength(options.minPoints ?? 1))],
    'expected "all" or a list of points such as ["resid_post.3", "resid_mid.2-5", "resid_post.*"]',
  );
}

/** What {@link resolvePoints} needs to know of a model ({@link ModelInfo} has all of it). */
export interface PointsModel {
  readonly nLayers: number;
  /** Names the model in errors. */
  readonly architecture?: string;
  /** Attention and MLP are added to the stream together: no resid_mid. */
  readonly parallelBlocks?: boolean;
}

/**
 * Expand a `points` value for a model (or a number of blocks): canonical points, each once, in
 * forward order. Throws a RangeError naming the pattern when a layer does not exist, or when it
 * names resid_mid on a model with parallel blocks.
 * @example
 * resolvePoints(["resid_post.*"], model.info);   // every block's output
 */
export function resolvePoints(spec: PointsSpec, model: number | PointsModel): HookPoint[] {
  const nLayers = typeof model === "number" ? model : model.nLayers;
  const parallel = typeof model !== "number" && model.parallelBlocks === true;
  const total = 2 * nLayers + 1;
  const exists = (i: number) => !(parallel && pointAt(i, nLayers).site === "resid_mid");
  if (spec === "all" || spec === "every") return Array.from({ length: total }, (_, i) => i).filter(exists).map((i) => pointAt(i, nLayers));
  const chosen = new Uint8Array(total);
  for (const pattern of spec) {
    const m = PATTERN.exec(pattern.trim());
    if (!m) throw new SyntaxError(`cannot parse point "${pattern}": expected e.g. "resid_post.3", "resid_post.2-5" or "resid_post.*"`);
    const site = m[1] as SiteKind;
    const layers = m[2]!;
    let from: number;
    let to: number;
    if (layers === "*") {
      from = 0;
      to = nLayers - 1;
    } else {
      const [a, b] = layers.split("-").map(Number) as [number, number | undefined];
      from = a;
      to = b ?? a;
      if (to < from) throw new RangeError(`point range "${pattern}" runs backwards (${from} > ${to})`);
    }
    for (let layer = from; layer <= to; layer++) {
      let index: number;
      try {
        index = pointIndex({ site, layer }, nLayers);
      } catch (e) {
        throw new RangeError(`point "${pattern}": ${(e as Error).message}`);
      }
      if (!exists(index)) {
        const arch = typeof model !== "number" && model.architecture ? model.architecture : "this model";
        throw new RangeError(`point "${pattern}": ${arch} has no resid_mid (its blocks add attention and MLP to the stream together)`);
      }
      chosen[index] = 1;
    }
  }
  const out: HookPoint[] = [];
  for (let i = 0; i < total; i++) if (chosen[i]) out.push(pointAt(i, nLayers));
  return out;
}

/** Is `p` (any spelling) one of `points` (canonical)? */
export function includesPoint(points: readonly HookPoint[], p: HookPoint, nLayers: number): boolean {
  const c = canonicalPoint(p, nLayers);
  return points.some((q) => q.site === c.site && q.layer === c.layer);
}

/** What a `positions` option holds after validation. */
export type PositionsSpec = "all" | "prompt" | "generated" | { readonly from: number; readonly to?: number | undefined };

const Position = v.pipe(v.number(), v.integer(), v.minValue(0));

/** The `positions` option schema (default `"all"`). */
export function PositionsOption() {
  return v.optional(
    v.union(
      [
        v.picklist(["all", "prompt", "generated"]),
        v.pipe(
          v.strictObject({ from: Position, to: v.optional(Position) }),
          v.check((r) => r.to === undefined || r.to > r.from, "to must be greater than from"),
        ),
      ],
      'expected "all", "prompt", "generated" or { "from": p, "to"?: q }',
    ),
    "all",
  );
}

/** A `positions` value as absolute positions for a request whose prompt has `promptLength` tokens; null = every row. */
export function resolvePositions(spec: PositionsSpec, promptLength: number): PositionRange | null {
  if (spec === "all") return null;
  if (spec === "prompt") return { from: 0, to: promptLength };
  if (spec === "generated") return { from: promptLength, to: Infinity };
  return { from: spec.from, to: spec.to ?? Infinity };
}

/** Is `position` inside `range` (null: every position)? */
export function inPositions(range: PositionRange | null | undefined, position: number): boolean {
  return !range || (position >= range.from && position < range.to);
}
