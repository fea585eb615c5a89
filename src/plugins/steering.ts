/**
 * The two residual edits of Arditi et al. (2024), "Refusal in Language Models Is Mediated by a
 * Single Direction":
 * - `add-vector`: activation addition, `x += scale * r` at chosen points;
 * - `ablate-direction`: directional ablation, `x -= (x·r̂) r̂` at chosen points (the paper ablates at
 *   every point the residual stream is written: `points: "every"`).
 * Both declare their affine form, so backends apply them natively when nothing else is hooked there.
 */
import * as v from "valibot";
import { definePlugin, type AffineForm } from "../core/plugin.ts";
import { allPoints, parsePoint, type HookPoint } from "../core/sites.ts";
import { normalize } from "../core/tensor.ts";

const PointName = v.pipe(
  v.string(),
  v.check((s) => /^(resid_pre|resid_mid|resid_post)[.: ]\d+$/.test(s), 'expected a point such as "resid_post.3"'),
);
const Vector = v.pipe(v.array(v.pipe(v.number(), v.finite())), v.minLength(1));

function checkWidth(what: string, vec: readonly number[], dModel: number): void {
  if (vec.length !== dModel) throw new RangeError(`${what} has ${vec.length} values; the model's residual has ${dModel}`);
}

function resolvePoints(spec: "every" | readonly string[], nLayers: number): HookPoint[] {
  return spec === "every" ? allPoints(nLayers) : spec.map(parsePoint);
}

export const addVector = definePlugin({
  name: "add-vector",
  description: "Activation addition: add scale * vector to the residual stream at the given points.",
  options: v.object({
    points: v.union([v.literal("every"), v.pipe(v.array(PointName), v.minLength(1))]),
    vector: Vector,
    scale: v.optional(v.pipe(v.number(), v.finite()), 1),
    /** Add only at positions >= this (e.g. only to generated tokens); 0 = every position. */
    fromPosition: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0)), 0),
  }),
  needs: ["residual:write"],
  create(o, { model }) {
    checkWidth("vector", o.vector, model.dModel);
    const c = Float32Array.from(o.vector, (x) => x * o.scale);
    const d = model.dModel;
    return {
      points: resolvePoints(o.points, model.nLayers),
      onResidual(x, ctx) {
        const data = x.data;
        for (let r = 0, off = 0; off < data.length; r++, off += d) {
          if (ctx.positions[r]! < o.fromPosition) continue;
          for (let i = 0; i < d; i++) data[off + i] = data[off + i]! + c[i]!;
        }
      },
      // Position-dependent addition is not affine in h alone; those requests take the JS path.
      affine: (): AffineForm | null => (o.fromPosition === 0 ? { rank: 0, U: null, V: null, c } : null),
    };
  },
});

export const ablateDirection = definePlugin({
  name: "ablate-direction",
  description: "Directional ablation: project a direction out of the residual stream, x -= (x·r̂)r̂.",
  options: v.object({
    points: v.optional(v.union([v.literal("every"), v.pipe(v.array(PointName), v.minLength(1))]), "every"),
    direction: Vector,
  }),
  needs: ["residual:write"],
  create(o, { model }) {
    checkWidth("direction", o.direction, model.dModel);
    const u = normalize(o.direction);
    const minusU = u.map((x) => -x);
    const d = model.dModel;
    return {
      points: resolvePoints(o.points, model.nLayers),
      onResidual(x) {
        const data = x.data;
        for (let off = 0; off < data.length; off += d) {
          let s = 0;
          for (let i = 0; i < d; i++) s += data[off + i]! * u[i]!;
          for (let i = 0; i < d; i++) data[off + i] = data[off + i]! - s * u[i]!;
        }
      },
      affine: (): AffineForm => ({ rank: 1, U: u, V: minusU, c: null }),
    };
  },
});
