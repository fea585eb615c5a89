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
import { directionArtifact, type Direction } from "../directions/artifact.ts";
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
 * transformed (scaled, normalized) by `shape`, which also gets the point's name. Without `points`,
 * a per-point direction runs at the points it has (a control vector, an extracted direction file);
 * inline vectors and single shared vectors need `points`. Inline vectors resolve synchronously.
 */
function prepareVectors(
  option: "vector" | "direction",
  value: readonly number[] | string,
  points: PointsSpec | undefined,
  ctx: PrepareContext,
  shape: (vec: Float32Array, at: string, point: string, dir: Direction) => Float32Array,
  /** `shape` depends only on the vector (not the point): a shared vector is shaped once and shared. */
  pointFree: boolean,
): PreparedVectors | Promise<PreparedVectors> {
  const { model } = ctx;
  const resolve = (spec: PointsSpec): HookPoint[] => {
    try {
      return resolvePoints(spec, model);
    } catch (e) {
      return ctx.invalid("points", (e as Error).message);
    }
  };
  const given = points === undefined ? null : resolve(points);
  const build = (dir: Direction, label: string): PreparedVectors => {
    if (dir.width !== model.dModel) ctx.invalid(option, `${label} has ${dir.width} values; the model's residual has ${model.dModel}`);
    if (given === null && dir.vector) ctx.invalid("points", `${label} is one vector for every point: say where to apply it with points`);
    const chosen = given ?? resolve([...dir.byPoint.keys()]);
    const byIndex: (Float32Array | null)[] = new Array(2 * model.nLayers + 1).fill(null);
    const shared = dir.vector && pointFree ? shape(dir.vector, label, "", dir) : null;
    for (const p of chosen) {
      const name = pointName(p);
      const own = dir.byPoint.get(name);
      if (!own && !dir.vector) ctx.invalid(option, `${label} has no vector for ${name} (it has ${[...dir.byPoint.keys()].join(", ")})`);
      byIndex[pointIndex(p, model.nLayers)] = own ? shape(own, `${label} at ${name}`, name, dir) : (shared ?? shape(dir.vector!, label, name, dir));
    }
    return { points: chosen, byIndex };
  };
  if (typeof value !== "string") {
    if (given === null) return ctx.invalid("points", `an inline ${option} needs points`);
    return build({ vector: Float32Array.from(value), byPoint: new Map(), width: value.length }, option);
  }
  return ctx.artifacts.load(directionArtifact, value).then((dir) => build(dir, `direction "${value}"`));
}

function vectorAt(prepared: PreparedVectors, point: HookPoint, model: ModelInfo): Float32Array | null {
  return prepared.byIndex[pointIndex(point, model.nLayers)] ?? null;
}

export const addVector = definePlugin({
  name: "add-vector",
  description: "Activation addition: add scale * vector to the residual stream at the given points and positions.",
  options: v.object({
    /** Where to add; optional when `vector` names a per-point direction (then: the points it has). */
    points: v.optional(PointsOption()),
    vector: VectorOrArtifact,
    scale: v.optional(v.pipe(v.number(), v.finite()), 1),
    /**
     * "mean-norm": `scale` is a multiple of the mean residual norm at each point, recorded in the
     * direction file at extraction, and the vector is used as a unit vector:
     * `x += scale * meanNorm(point) * v/|v|`. Absent: `x += scale * v`.
     */
    relativeTo: v.optional(v.literal("mean-norm")),
    /** Rows to add to: "all" (default), "prompt", "generated", or { from, to? } absolute positions. */
    positions: PositionsOption(),
  }),
  needs: ["residual:write"],
  prepare: (o, ctx) => {
    if (o.relativeTo !== undefined && typeof o.vector !== "string") {
      return ctx.invalid("relativeTo", `"${o.relativeTo}" needs a registered direction whose file records mean residual norms, not an inline vector`);
    }
    return prepareVectors("vector", o.vector, o.points, ctx, (vec, at, point, dir) => {
      let factor = o.scale;
      if (o.relativeTo === "mean-norm") {
        const mean = dir.meanNorms?.get(point);
        if (mean === undefined) {
          ctx.invalid("relativeTo", `${at} has no mean residual norm for ${point} (its file records ${dir.meanNorms ? [...dir.meanNorms.keys()].join(", ") || "none" : "none"}; extract it with steerkit directions extract)`);
        }
        let ss = 0;
        for (let i = 0; i < vec.length; i++) ss += vec[i]! * vec[i]!;
        factor = (o.scale * mean!) / Math.sqrt(ss);
      }
      const c = Float32Array.from(vec, (x) => x * factor);
      // A finite vector times a finite scale can still overflow float32: that is bad input, not NaN logits later.
      const bad = c.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) ctx.invalid("scale", `${at}[${bad}] times scale ${o.scale} overflows float32`);
      return c;
    }, o.relativeTo === undefined);
  },
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
    }, true),
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
