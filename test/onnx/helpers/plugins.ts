/**
 * Test plugins for the ONNX hook paths through core's real chain: a position-limited affine edit
 * (its `onResidual` is core's applyAffine over the resolved range, so the JS path is the reference
 * the in-graph path must equal), a residual recorder that either only reads or declares a write
 * (forcing the JS path at its points), and a logits recorder.
 */
import * as v from "valibot";
import type { AffineEdit } from "../../../src/core/backend.ts";
import { applyAffine } from "../../../src/core/chain.ts";
import { definePlugin, type AffineForm } from "../../../src/core/plugin.ts";
import { PositionsOption, resolvePositions } from "../../../src/core/points.ts";
import { parsePoint, pointName } from "../../../src/core/sites.ts";

const Floats = v.array(v.number());
const Sink = <T>() => v.custom<(x: T) => void>((f) => typeof f === "function", "expected a function");

/** `h' = h + (h r)(-r) + c` at one point, on the rows in `positions`: `c` alone, `r` alone (rank 1) or both. */
export const positionedEdit = definePlugin({
  name: "test-positioned-edit",
  options: v.object({ point: v.string(), positions: PositionsOption(), c: v.optional(Floats), r: v.optional(Floats) }),
  needs: ["residual:write"],
  create(o, { model, promptTokens }) {
    const point = parsePoint(o.point);
    const d = model.dModel;
    const c = o.c ? Float32Array.from(o.c) : null;
    const U = o.r ? Float32Array.from(o.r) : null;
    const V = U ? U.map((x) => -x) : null;
    if ((c && c.length !== d) || (U && U.length !== d)) throw new RangeError(`vectors must have ${d} values`);
    const form: AffineForm = { rank: U ? 1 : 0, U, V, c, positions: o.positions };
    const edit: AffineEdit = { point, rank: form.rank, U, V, c, positions: resolvePositions(o.positions, promptTokens.length) };
    const scratch = new Float64Array(1);
    return {
      points: [point],
      onResidual(x, ctx) {
        applyAffine(edit, x, scratch, ctx.positions);
      },
      affine: () => form,
    };
  },
});

export interface ResidualRecord {
  readonly point: string;
  readonly positions: number[];
  readonly data: Float32Array;
}

/**
 * Copies of the residual at `points`. `write: true` declares residual:write without editing: the
 * backend must then run it on the JS path (a graph cut on ONNX); otherwise it is read-only.
 */
export const recordResidual = definePlugin({
  name: "test-record-residual",
  options: v.object({ points: v.array(v.string()), write: v.optional(v.boolean(), false), sink: Sink<ResidualRecord>() }),
  needs: (o) => (o.write ? ["residual:write"] : ["residual:read"]),
  create: (o) => ({
    points: o.points.map(parsePoint),
    onResidual(x, ctx) {
      o.sink({ point: pointName(ctx.point), positions: Array.from(ctx.positions), data: Float32Array.from(x.data) });
    },
  }),
});

/** Copies of the next-token logits of every step. */
export const recordLogits = definePlugin({
  name: "test-record-logits",
  options: v.object({ sink: Sink<Float32Array>() }),
  needs: ["logits:read"],
  create: (o) => ({
    onLogits(logits) {
      o.sink(Float32Array.from(logits));
    },
  }),
});
