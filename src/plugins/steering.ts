/**
 * The two residual edits of Arditi et al. (2024), "Refusal in Language Models Is Mediated by a
 * Single Direction":
 * - `add-vector`: activation addition, `x += scale * r` at chosen points and positions;
 * - `ablate-direction`: directional ablation, `x -= (x·r̂) r̂` at chosen points (the paper ablates at
 *   every point the residual stream is written: `points: "all"`, the default).
 * The vector is given inline or by the name of a registered `direction` artifact (one vector for
 * every point, or one per point). Both declare their affine form, position limits included, so
 * backends apply them natively when nothing else is hooked there.
 *
 * The vectors are checked and scaled in `prepare`, once per model and options; `create` only
 * resolves the request's positions.
 */
import * as v from "valibot";
import { directionArtifact, type Direction } from "../core/artifacts.ts";
import type { ModelInfo } from "../core/backend.ts";
import type { AffineForm, PrepareContext } from "../core/plugin.ts";
import { definePlugin } from "../core/plugin.ts";
import { inPositions, PointsOption, PositionsOption, resolvePoints, resolvePositions, type PointsSpec } from "../core/points.ts";
import { pointIndex, pointName, type HookPoint } from "../core/sites.ts";

/** An inline vector, or the name of a registered `direction` artifact. */
const VectorOrArtifact = v.union(
  [v.pipe(v.array(v.pipe(v.number(), v.finite())), v.minLength(1)), v.pipe(v.string(), v.minLength(1), v.maxLength(128))],
  "expected an array of numbers or the name of a registered direction",
);

/** Per canonical point index: the vector to use there (null where the plugin does not run). */
interface PreparedVectors {
  readonly points: readonly HookPoint[];
  readonly byIndex: readonly (Float32Array | null)[];
}

/**
 * Resolve the vector option for every chosen point, checked against the model's width and
 * transformed (scaled, normalized) by `shape`. Inline vectors resolve synchronously.
 */
function prepareVectors(
  option: "vector" | "direction",
  value: readonly number[] | string,
  points: PointsSpec,
  ctx: PrepareContext,
  shape: (vec: ArrayLike<number>, at: string) => Float32Array,
): PreparedVectors | Promise<PreparedVectors> {
  const { model } = ctx;
  let chosen: HookPoint[];
  try {
    chosen = resolvePoints(points, model.nLayers);
  } catch (e) {
    return ctx.invalid("points", (e as Error).message);
  }
  const build = (dir: Direction, label: string): PreparedVectors => {
    if (dir.width !== model.dModel) ctx.invalid(option, `${label} has ${dir.width} values; the model's residual has ${model.dModel}`);
    const byIndex: (Float32Array | null)[] = new Array(2 * model.nLayers + 1).fill(null);
    const shared = dir.vector ? shape(dir.vector, label) : null;
    for (const p of chosen) {
      const name = pointName(p);
      const own = dir.byPoint.get(name);
      if (!own && !shared) ctx.invalid(option, `${label} has no vector for ${name} (it has ${[...dir.byPoint.keys()].join(", ")})`);
      byIndex[pointIndex(p, model.nLayers)] = own ? shape(own, `${label} at ${name}`) : shared;
    }
    return { points: chosen, byIndex };
  };
  if (typeof value !== "string") return build({ vector: Float32Array.from(value), byPoint: new Map(), width: value.length }, option);
  return ctx.artifacts.load(directionArtifact, value).then((dir) => build(dir, `direction "${value}"`));
}

function vectorAt(prepared: PreparedVectors, point: HookPoint, model: ModelInfo): Float32Array | null {
  return prepared.byIndex[pointIndex(point, model.nLayers)] ?? null;
}

export const addVector = definePlugin({
  name: "add-vector",
  description: "Activation addition: add scale * vector to the residual stream at the given points and positions.",
  options: v.object({
    points: PointsOption(),
    vector: VectorOrArtifact,
    scale: v.optional(v.pipe(v.number(), v.finite()), 1),
    /** Rows to add to: "all" (default), "prompt", "generated", or { from, to? } absolute positions. */
    positions: PositionsOption(),
  }),
  needs: ["residual:write"],
  prepare: (o, ctx) =>
    prepareVectors("vector", o.vector, o.points, ctx, (vec, at) => {
      const c = Float32Array.from(vec, (x) => x * o.scale);
      // A finite vector times a finite scale can still overflow float32: that is bad input, not NaN logits later.
      const bad = c.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) ctx.invalid("scale", `${at}[${bad}] times scale ${o.scale} overflows float32`);
      return c;
    }),
  create(o, { model, prepared, promptTokens }) {
    const d = model.dModel;
    const range = resolvePositions(o.positions, promptTokens.length);
    return {
      points: prepared.points,
      onResidual(x, ctx) {
        const c = vectorAt(prepared, ctx.point, model)!;
        const data = x.data;
        for (let r = 0, off = 0; off < data.length; r++, off += d) {
          if (!inPositions(range, ctx.positions[r]!)) continue;
          for (let i = 0; i < d; i++) data[off + i] = data[off + i]! + c[i]!;
        }
      },
      affine: (point): AffineForm => ({ rank: 0, U: null, V: null, c: vectorAt(prepared, point, model), positions: o.positions }),
    };
  },
});

/** -û for a prepared û (the affine form's V), made once and shared like the prepared vectors. */
const negations = new WeakMap<Float32Array, Float32Array>();
function negatedOf(u: Float32Array): Float32Array {
  let n = negations.get(u);
  if (!n) negations.set(u, (n = u.map((x) => -x)));
  return n;
}

export const ablateDirection = definePlugin({
  name: "ablate-direction",
  description: "Directional ablation: project a direction out of the residual stream, x -= (x·r̂)r̂.",
  options: v.object({
    points: v.optional(PointsOption(), "all"),
    direction: VectorOrArtifact,
    /** Rows to ablate: "all" (default), "prompt", "generated", or { from, to? }. */
    positions: PositionsOption(),
  }),
  needs: ["residual:write"],
  prepare: (o, ctx) =>
    prepareVectors("direction", o.direction, o.points, ctx, (vec, at) => {
      let ss = 0;
      for (let i = 0; i < vec.length; i++) ss += vec[i]! * vec[i]!;
      const n = Math.sqrt(ss);
      if (!(n > 0) || !Number.isFinite(n)) ctx.invalid("direction", `${at} has norm ${n}; a direction needs a finite, non-zero norm`);
      return Float32Array.from(vec, (x) => x / n);
    }),
  create(o, { model, prepared, promptTokens }) {
    const d = model.dModel;
    const range = resolvePositions(o.positions, promptTokens.length);
    return {
      points: prepared.points,
      onResidual(x, ctx) {
        const u = vectorAt(prepared, ctx.point, model)!;
        const data = x.data;
        for (let r = 0, off = 0; off < data.length; r++, off += d) {
          if (!inPositions(range, ctx.positions[r]!)) continue;
          let s = 0;
          for (let i = 0; i < d; i++) s += data[off + i]! * u[i]!;
          for (let i = 0; i < d; i++) data[off + i] = data[off + i]! - s * u[i]!;
        }
      },
      affine: (point): AffineForm => {
        const u = vectorAt(prepared, point, model)!;
        return { rank: 1, U: u, V: negatedOf(u), c: null, positions: o.positions };
      },
    };
  },
});
