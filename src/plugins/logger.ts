/**
 * `logger`: records what the model does at the points it watches, without changing anything.
 *
 * Record format (one JSON object per line in a JSONL file; the same objects on the console or to a callback):
 *
 *   { "type": "residual", "step": 0, "phase": "prefill", "point": "resid_post.2",
 *     "position": 4, "norm": 3.51, "projections": { "refusal": -0.42 } }
 *   { "type": "logits", "step": 1, "phase": "decode",
 *     "top": [{ "token": 403, "text": " upon", "logit": 11.2, "prob": 0.91 }, ...] }
 *
 * - `step`: 0 for the prompt (prefill), n for the forward pass that feeds back the n-th generated
 *   token; a logits record of step n shows the choice of generated token n+1.
 * - `point`: canonical hook point (see sites.ts); `position`: the token position of the row.
 * - `norm`: L2 norm of the residual row; `projections[name]`: dot product with the unit vector of each
 *   given direction (the scalar Arditi et al. ablate, and SAE-style probes read); a registered
 *   direction with one vector per point is read at each point with that point's vector.
 * - `top`: the k largest next-token logits, with the token decoded, and softmax probabilities over the full vocabulary.
 * By default only the last row of each residual is recorded (`rows: "last"`): that is the row that
 * produces the next token; `"all"` records every prompt row as well.
 *
 * Trust: `file`, `console` and `onRecord` are trusted-only options, and a logger must name at
 * least one of them (none is on by default: a default sink would let a request's logger write to
 * the server's console). A request to a server can neither make the server write a file nor flood
 * its console; it gets records only through what the server itself wires to `onRecord`.
 */
import * as v from "valibot";
import { appendFileSync } from "node:fs";
import { directionArtifact } from "../directions/artifact.ts";
import type { Capability } from "../core/backend.ts";
import { definePlugin } from "../core/plugin.ts";
import { PointsOption, resolvePoints } from "../core/points.ts";
import { pointIndex, pointName } from "../core/sites.ts";

export interface ResidualRecord {
  readonly type: "residual";
  readonly step: number;
  readonly phase: "prefill" | "decode";
  readonly point: string;
  readonly position: number;
  readonly norm: number;
  readonly projections: Record<string, number>;
}

export interface LogitsRecord {
  readonly type: "logits";
  readonly step: number;
  readonly phase: "prefill" | "decode";
  readonly top: { token: number; text: string; logit: number; prob: number }[];
}

export type LogRecord = ResidualRecord | LogitsRecord;

/** A direction to project onto: its unit vector at each watched point, by canonical point index. */
interface ProjectionDirection {
  readonly name: string;
  readonly at: readonly (Float32Array | null)[];
}

export const LoggerOptions = v.object({
  /** Points to watch (the shared points option): default every block output; [] = none. */
  points: v.optional(PointsOption({ minPoints: 0 }), ["resid_post.*"]),
  /** Named directions to project each watched row onto: dModel numbers, or a registered direction's name (one vector, or one per watched point). */
  directions: v.optional(
    v.record(
      v.pipe(v.string(), v.maxLength(128)),
      v.union([v.pipe(v.array(v.pipe(v.number(), v.finite())), v.minLength(1)), v.pipe(v.string(), v.minLength(1), v.maxLength(128))]),
    ),
    {},
  ),
  /** How many top logits to record per step; 0 = do not record logits. */
  topK: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 5),
  rows: v.optional(v.picklist(["last", "all"]), "last"),
  /** Append JSONL records to this file. */
  file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Print records to the console (stderr). */
  console: v.optional(v.boolean(), false),
  /** Receive each record (from code; not expressible in a JSON recipe). */
  onRecord: v.optional(v.custom<(r: LogRecord) => void>((f) => typeof f === "function", "expected a function")),
});

export const logger = definePlugin({
  name: "logger",
  description: "Record residual norms, projections onto directions and top-k logits per step, to JSONL, the console or a callback.",
  options: LoggerOptions,
  trustedOptions: ["file", "console", "onRecord"],
  needs: (o): Capability[] => [
    ...(typeof o.points === "string" || o.points.length > 0 ? (["residual:read"] as const) : []),
    ...(o.topK > 0 ? (["logits:read"] as const) : []),
  ],
  prepare(o, ctx) {
    const { model } = ctx;
    if (!o.console && o.file === undefined && o.onRecord === undefined) {
      ctx.invalid("console", 'the logger has nowhere to write: set "file", "console": true or onRecord');
    }
    let points;
    try {
      points = resolvePoints(o.points, model);
    } catch (e) {
      return ctx.invalid("points", (e as Error).message);
    }
    const unit = (name: string, vec: ArrayLike<number>, label = "has") => {
      if (vec.length !== model.dModel) ctx.invalid(`directions.${name}`, `${label} ${vec.length} values; the model's residual has ${model.dModel}`);
      let ss = 0;
      for (let i = 0; i < vec.length; i++) ss += vec[i]! * vec[i]!;
      if (!(ss > 0) || !Number.isFinite(ss)) ctx.invalid(`directions.${name}`, `${label} norm ${Math.sqrt(ss)}; it needs a finite, non-zero norm`);
      return Float32Array.from(vec, (x) => x / Math.sqrt(ss));
    };
    // Per direction, its unit vector at each watched point (by canonical point index): one shared
    // vector everywhere, or a per-point direction's own vector at each point.
    const everywhere = (name: string, vec: ArrayLike<number>): ProjectionDirection => {
      const u = unit(name, vec);
      const at: (Float32Array | null)[] = new Array(2 * model.nLayers + 1).fill(null);
      for (const p of points) at[pointIndex(p, model.nLayers)] = u;
      return { name, at };
    };
    const entries = Object.entries(o.directions);
    // Inline directions prepare synchronously (bad ones fail before a stream starts); named ones load.
    if (entries.every(([, value]) => typeof value !== "string")) {
      return { points, directions: entries.map(([name, vec]) => everywhere(name, vec as number[])) };
    }
    return Promise.all(
      entries.map(async ([name, value]): Promise<ProjectionDirection> => {
        if (typeof value !== "string") return everywhere(name, value);
        const dir = await ctx.artifacts.load(directionArtifact, value);
        if (dir.vector) return everywhere(name, dir.vector);
        const at: (Float32Array | null)[] = new Array(2 * model.nLayers + 1).fill(null);
        for (const p of points) {
          const own = dir.byPoint.get(pointName(p));
          if (!own) ctx.invalid(`directions.${name}`, `direction "${value}" has no vector for ${pointName(p)} (it has ${[...dir.byPoint.keys()].join(", ")})`);
          at[pointIndex(p, model.nLayers)] = unit(name, own!, `direction "${value}" at ${pointName(p)} has`);
        }
        return { name, at };
      }),
    ).then((directions) => ({ points, directions }));
  },
  create(o, { model, detokenize, prepared: { points, directions } }) {
    const toConsole = o.console;
    const lines: string[] = [];
    const emit = (r: LogRecord) => {
      o.onRecord?.(r);
      if (toConsole) console.error(JSON.stringify(r));
      if (o.file) lines.push(JSON.stringify(r));
    };
    const flush = () => {
      if (o.file && lines.length) appendFileSync(o.file, lines.join("\n") + "\n");
      lines.length = 0;
    };
    const top = new Int32Array(o.topK);

    return {
      points: points.length ? points : undefined,
      onResidual: points.length
        ? (x, ctx) => {
            const d = model.dModel;
            const rows = x.data.length / d;
            for (let r = o.rows === "last" ? rows - 1 : 0; r < rows; r++) {
              const row = x.data.subarray(r * d, (r + 1) * d);
              let ss = 0;
              for (let i = 0; i < d; i++) ss += row[i]! * row[i]!;
              const projections: Record<string, number> = {};
              for (const dir of directions) {
                const u = dir.at[pointIndex(ctx.point, model.nLayers)]!;
                let s = 0;
                for (let i = 0; i < d; i++) s += row[i]! * u[i]!;
                projections[dir.name] = s;
              }
              emit({ type: "residual", step: ctx.step, phase: ctx.phase, point: pointName(ctx.point), position: ctx.positions[r]!, norm: Math.sqrt(ss), projections });
            }
          }
        : undefined,
      onLogits:
        o.topK > 0
          ? (logits, ctx) => {
              const k = topIndices(logits, top);
              let max = -Infinity;
              for (let i = 0; i < logits.length; i++) if (logits[i]! > max) max = logits[i]!;
              let z = 0;
              for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! - max);
              const entries = [];
              for (let i = 0; i < k; i++) {
                const t = top[i]!;
                entries.push({ token: t, text: detokenize([t]), logit: logits[t]!, prob: Math.exp(logits[t]! - max) / z });
              }
              emit({ type: "logits", step: ctx.step, phase: ctx.phase, top: entries });
            }
          : undefined,
      async onRequest(_ctx, next) {
        try {
          await next();
        } finally {
          flush();
        }
      },
    };
  },
});

/** Fill `out` with the indices of the largest values, largest first; returns how many. */
function topIndices(values: Float32Array, out: Int32Array): number {
  const k = Math.min(out.length, values.length);
  let n = 0;
  for (let i = 0; i < values.length; i++) {
    const val = values[i]!;
    if (!(val === val)) continue; // NaN
    if (n < k) n++;
    else if (val <= values[out[k - 1]!]!) continue;
    let j = n - 1;
    while (j > 0 && values[out[j - 1]!]! < val) {
      out[j] = out[j - 1]!;
      j--;
    }
    out[j] = i;
  }
  return n;
}
