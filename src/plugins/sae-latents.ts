/**
 * `sae-latents`: record chosen SAE latents' activations at every token, without changing anything
 * (read-only: `residual:read`, so backends serve its point without writing it back). This is the
 * data a UI shades tokens with, and what `sae-clamp`'s `when` conditions read.
 *
 * Record format (one JSON object per line in a JSONL file; the same objects on the console or to
 * a callback), one per row the plugin sees in `positions`:
 *
 *   { "step": 0, "position": 3, "token": 1722, "point": "resid_post.2", "activations": { "17": 0.81, "402": 0 } }
 *
 * `step` and `position` mean what they mean in the logger's records; `token` is the id of the
 * token whose row it is; `activations[index]` is the latent's activation there (0 when inactive).
 * Placed after `sae-clamp` in a chain, it reads the steered residual.
 *
 * Trust, as for the logger: `file`, `console` and `onRecord` are trusted-only, and one of them is
 * required (a request's recipe cannot make a server write files or flood its console).
 */
import * as v from "valibot";
import { appendFileSync } from "node:fs";
import { definePlugin } from "../core/plugin.ts";
import { inPositions, PositionsOption, resolvePositions } from "../core/points.ts";
import { pointName, type HookPoint } from "../core/sites.ts";
import { latentPlan, latentReader, type LatentPlan } from "../sae/latents.ts";
import { newRowScale } from "../sae/sae.ts";
import { checkLatent, LatentIndex, resolveSae, SaeOptionEntries } from "./sae-options.ts";

export interface LatentRecord {
  readonly step: number;
  readonly position: number;
  readonly token: number;
  readonly point: string;
  readonly activations: Record<string, number>;
}

export const SaeLatentsOptions = v.object({
  ...SaeOptionEntries,
  /** Latent indices to record. */
  latents: v.pipe(v.array(LatentIndex), v.minLength(1), v.maxLength(1024)),
  /** Rows to record: "all" (default), "prompt", "generated", or { from, to? }. */
  positions: PositionsOption(),
  /** Append JSONL records to this file. */
  file: v.optional(v.pipe(v.string(), v.minLength(1))),
  /** Print records to the console (stderr). */
  console: v.optional(v.boolean(), false),
  /** Receive each record (from code). */
  onRecord: v.optional(v.custom<(r: LatentRecord) => void>((f) => typeof f === "function", "expected a function")),
});

interface Prepared {
  readonly point: HookPoint;
  readonly pointName: string;
  readonly plan: LatentPlan;
  /** Latent indices as record keys. */
  readonly keys: readonly string[];
}

export const saeLatents = definePlugin({
  name: "sae-latents",
  description: "Record chosen SAE latents' activations per token (read-only), to JSONL, the console or a callback.",
  options: SaeLatentsOptions,
  trustedOptions: ["file", "console", "onRecord"],
  needs: ["residual:read"],
  async prepare(o, ctx): Promise<Prepared> {
    if (!o.console && o.file === undefined && o.onRecord === undefined) {
      ctx.invalid("console", 'sae-latents has nowhere to write: set "file", "console": true or onRecord');
    }
    const { sae, point, topk } = await resolveSae(o, ctx);
    o.latents.forEach((index, n) => checkLatent(ctx, `latents[${n}]`, index, sae, o.sae));
    const unique = [...new Set(o.latents)];
    return { point, pointName: pointName(point), plan: latentPlan(sae, unique, topk), keys: unique.map(String) };
  },
  create(o, { model, prepared: p, promptTokens }) {
    const d = model.dModel;
    const range = resolvePositions(o.positions, promptTokens.length);
    const reader = latentReader(p.plan);
    const acts = new Float64Array(p.keys.length);
    const row = newRowScale();
    const lines: string[] = [];
    const emit = (r: LatentRecord) => {
      o.onRecord?.(r);
      if (o.console) console.error(JSON.stringify(r));
      if (o.file) lines.push(JSON.stringify(r));
    };
    return {
      points: [p.point],
      // Records are objects handed to the sinks: this hook allocates one per row by design.
      onResidual(x, ctx) {
        for (let r = 0, off = 0; off < x.data.length; r++, off += d) {
          const position = ctx.positions[r]!;
          if (!inPositions(range, position)) continue;
          reader.read(x.data, off, acts, row);
          const activations: Record<string, number> = {};
          for (let c = 0; c < p.keys.length; c++) activations[p.keys[c]!] = acts[c]!;
          emit({ step: ctx.step, position, token: ctx.tokens[r]!, point: p.pointName, activations });
        }
      },
      async onRequest(_ctx, next) {
        try {
          await next();
        } finally {
          if (o.file && lines.length) appendFileSync(o.file, lines.join("\n") + "\n");
          lines.length = 0;
        }
      },
    };
  },
});
