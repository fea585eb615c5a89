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
 *   given direction (the scalar Arditi et al. ablate, and SAE-style probes read).
 * - `top`: the k largest next-token logits, with the token decoded, and softmax probabilities over the full vocabulary.
 * By default only the last row of each residual is recorded (`rows: "last"`): that is the row that
 * produces the next token; `"all"` records every prompt row as well.
 */
import * as v from "valibot";
import { appendFileSync } from "node:fs";
import type { Capability } from "../core/backend.ts";
import { definePlugin } from "../core/plugin.ts";
import { parsePoint, pointName, type HookPoint } from "../core/sites.ts";
import { normalize } from "../core/tensor.ts";

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

const PointName = v.pipe(
  v.string(),
  v.check((s) => /^(resid_pre|resid_mid|resid_post)[.: ]\d+$/.test(s), 'expected a point such as "resid_post.3"'),
);

export const LoggerOptions = v.object({
  /** Points to watch, e.g. ["resid_post.2", "resid_mid.0"]; "all" = every block output; [] = none. */
  points: v.optional(v.union([v.literal("all"), v.array(PointName)]), "all"),
  /** Named directions to project each watched row onto. Each must have dModel entries. */
  directions: v.optional(v.record(v.string(), v.pipe(v.array(v.number()), v.minLength(1))), {}),
  /** How many top logits to record per step; 0 = do not record logits. */
  topK: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(100)), 5),
  rows: v.optional(v.picklist(["last", "all"]), "last"),
  /** Append JSONL records to this file. */
  file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Print records to the console (stderr). Default: true when neither `file` nor `onRecord` is given. */
  console: v.optional(v.boolean()),
  /** Receive each record (from code; not expressible in a JSON recipe). */
  onRecord: v.optional(v.custom<(r: LogRecord) => void>((f) => typeof f === "function", "expected a function")),
});

export const logger = definePlugin({
  name: "logger",
  description: "Record residual norms, projections onto directions and top-k logits per step, to JSONL, the console or a callback.",
  options: LoggerOptions,
  needs: (o): Capability[] => [
    ...(o.points === "all" || o.points.length > 0 ? (["residual:read"] as const) : []),
    ...(o.topK > 0 ? (["logits:read"] as const) : []),
  ],
  create(o, { model, detokenize }) {
    const points: HookPoint[] =
      o.points === "all" ? Array.from({ length: model.nLayers }, (_, layer) => ({ site: "resid_post", layer })) : o.points.map(parsePoint);
    const directions = Object.entries(o.directions).map(([name, vec]) => {
      if (vec.length !== model.dModel) {
        throw new RangeError(`direction "${name}" has ${vec.length} values; the model's residual has ${model.dModel}`);
      }
      return { name, unit: normalize(vec) };
    });
    const toConsole = o.console ?? (o.file === undefined && o.onRecord === undefined);
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
                let s = 0;
                for (let i = 0; i < d; i++) s += row[i]! * dir.unit[i]!;
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
