/**
 * Per-token trace, Steerkit's extension of a completion request: `"trace": { "sae": "<name>",
 * "latent": 88 }` records the SAE latent's activation at each generated token's row, and
 * `"trace": { "direction": "<name>", "point": "resid_post.2" }` the projection of that row onto
 * the direction (its unit vector; a per-point direction's own vector at that point). The page
 * shades tokens with it; a stream carries one `steerkit.trace` chunk per token, a JSON answer a
 * `steerkit.trace` array.
 *
 * Built on the read-only recorders `sae-latents` and `logger`, configured here by the server with
 * a callback sink (their trusted-only option: a request cannot choose a sink, only ask for this
 * trace). A request's cost stays bounded: one value per generated token (max_tokens caps it), one
 * latent or one direction at one point, and artifacts only by the names the server registered.
 *
 * The row of generated token n is computed when token n is fed back to compute token n+1, so the
 * last token of a generation stopped by max_tokens has no value (the model never read it).
 */
import * as v from "valibot";
import type { ConfiguredPlugin } from "../core/plugin.ts";
import { parsePoint } from "../core/sites.ts";
import { logger } from "../plugins/logger.ts";
import { saeLatents } from "../plugins/sae-latents.ts";

const Name = v.pipe(v.string(), v.minLength(1), v.maxLength(128));
const OnePoint = v.pipe(
  v.string(),
  v.check((s) => {
    try {
      parsePoint(s);
      return true;
    } catch {
      return false;
    }
  }, 'expected one point such as "resid_post.2"'),
);

/** The `trace` field of a request. */
export const Trace = v.pipe(
  v.strictObject(
    {
      /** A registered SAE's name; with `latent`. */
      sae: v.optional(Name),
      latent: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
      /** A registered direction's name; with `point`. */
      direction: v.optional(Name),
      /** Where to read: required for a direction; for an SAE, default its own point. */
      point: v.optional(OnePoint),
    },
    'trace takes "sae" and "latent" (and optionally "point"), or "direction" and "point"',
  ),
  v.check((t) => (t.sae === undefined) !== (t.direction === undefined), 'trace needs exactly one of "sae" or "direction"'),
  v.check((t) => t.sae === undefined || t.latent !== undefined, 'a trace of an SAE needs "latent" (the latent index)'),
  v.check((t) => t.direction === undefined || t.point !== undefined, 'a trace of a direction needs "point" (e.g. "resid_post.2")'),
);
export type Trace = v.InferOutput<typeof Trace>;

/** One generated token's value: `position` is the token's position in the sequence (prompt included). */
export interface TraceValue {
  readonly position: number;
  readonly value: number;
}

/**
 * The read-only plugin that records a trace, calling `onValue` once per generated token it reads.
 * @example
 * ```ts
 * const plugins = await preparePlugins(model, [tracePlugin({ sae: "sae", latent: 88 }, (r) => values.push(r))], { artifacts });
 * ```
 */
export function tracePlugin(trace: Trace, onValue: (r: TraceValue) => void): ConfiguredPlugin {
  if (trace.sae !== undefined) {
    const key = String(trace.latent);
    return saeLatents({
      sae: trace.sae,
      latents: [trace.latent!],
      ...(trace.point !== undefined && { point: trace.point, overridePoint: true }),
      positions: "generated",
      onRecord: (r) => onValue({ position: r.position, value: r.activations[key]! }),
    });
  }
  return logger({
    points: [trace.point!],
    directions: { trace: trace.direction! },
    topK: 0,
    rows: "last",
    // Step 0 is the prefill (its last row is the prompt's last token); step n reads generated token n.
    onRecord: (r) => r.type === "residual" && r.step > 0 && onValue({ position: r.position, value: r.projections.trace! }),
  });
}
