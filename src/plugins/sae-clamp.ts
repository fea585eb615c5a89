/**
 * `sae-clamp`: steer with SAE latents, O'Brien et al. (2024), "Steering Language Model Refusal
 * with Sparse Autoencoders": at the SAE's point, for each chosen latent i,
 *
 *   h' = h + Σ_i (target_i − f_i(h)) · s · W_dec[i]
 *
 * where f_i(h) is the latent's activation, s the row's normalization scale (residual units; see
 * `RowScale` in sae.ts) and target_i depends on the mode: `clamp` (the paper: the value, at every
 * token), `add` (f + value), `scale` (f · value), `zero` (0). This replaces latent i in the SAE's
 * reconstruction and keeps its reconstruction error in the stream (unlike writing back the
 * reconstruction, which would also apply the SAE's error at every other latent).
 *
 * Conditional steering (`when`): edit only rows where a latent's activation (read before the edit)
 * exceeds a threshold (`from: "token"`), or every row from the first such one on (`from: "first"`;
 * the trigger may be any row the plugin sees, the edit still only touches `positions`).
 *
 * Cost: relu/jumprelu/gated read only the chosen latents' encoder rows, O(k·dIn) per row; TopK
 * `topk: "exact"` needs a full encoder pass per row (see sae/latents.ts), `"approximate"` does not.
 * Everything per model and options (the SAE, packed encoder and decoder rows, folded biases) is
 * built in `prepare`; `create` allocates a few small scratch arrays; the hook allocates nothing.
 *
 * Not affine in general: the edit depends on f(h). It is affine in one case, offered as `affine()`
 * so backends apply it natively: every latent in `add` mode, no `when`, and a normalization whose
 * row scale is a constant (`none` or `scale`): then h' = h + Σ value_i · s · W_dec[i], a constant.
 */
import * as v from "valibot";
import type { AffineForm } from "../core/plugin.ts";
import { definePlugin } from "../core/plugin.ts";
import { inPositions, PositionsOption, resolvePositions } from "../core/points.ts";
import type { HookPoint } from "../core/sites.ts";
import { latentPlan, latentReader, type LatentPlan } from "../sae/latents.ts";
import { newRowScale } from "../sae/sae.ts";
import { checkLatent, LatentIndex, resolveSae, SaeOptionEntries } from "./sae-options.ts";

const FLOAT32_MAX = 3.4028234663852886e38;

export type ClampMode = "clamp" | "add" | "scale" | "zero";

const Latent = v.pipe(
  v.strictObject({
    index: LatentIndex,
    mode: v.picklist(["clamp", "add", "scale", "zero"]),
    value: v.optional(v.pipe(v.number(), v.finite())),
  }),
  v.check((l) => (l.mode === "zero") === (l.value === undefined), '"clamp", "add" and "scale" need a value; "zero" takes none'),
);

export const SaeClampOptions = v.object({
  ...SaeOptionEntries,
  /** The latents to steer, each with its mode. */
  latents: v.pipe(v.array(Latent), v.minLength(1), v.maxLength(256)),
  /** Rows to edit: "all" (default), "prompt", "generated", or { from, to? }. */
  positions: PositionsOption(),
  /** Edit only where latent `latent` exceeds `threshold`: at those rows ("token", default) or from the first one on ("first"). */
  when: v.optional(
    v.strictObject({
      latent: LatentIndex,
      threshold: v.pipe(v.number(), v.finite()),
      from: v.optional(v.picklist(["token", "first"]), "token"),
    }),
  ),
});

const MODE = { clamp: 0, add: 1, scale: 2, zero: 3 } as const;

interface Prepared {
  readonly point: HookPoint;
  readonly plan: LatentPlan;
  /** Per steered latent: its slot in the plan's output, mode code, value, and decoder row (packed `[n, dIn]`). */
  readonly slots: Int32Array;
  readonly modes: Uint8Array;
  readonly values: Float64Array;
  readonly decoder: Float32Array;
  /** The plan slot of `when.latent`, or -1. */
  readonly whenSlot: number;
  /** Whether any target depends on f (else the read is skipped when there is no `when`). */
  readonly readsActs: boolean;
  /** The constant edit, when the plugin is affine (see the header), else null. */
  readonly affineC: Float32Array | null;
}

export const saeClamp = definePlugin({
  name: "sae-clamp",
  description: "Steer with SAE latents (O'Brien et al. 2024): clamp, add, scale or zero chosen latents, keeping the SAE's reconstruction error.",
  options: SaeClampOptions,
  needs: ["residual:write"],
  async prepare(o, ctx): Promise<Prepared> {
    const { sae, point, topk } = await resolveSae(o, ctx);
    const d = sae.info.dIn;
    const seen = new Map<number, number>();
    o.latents.forEach((l, n) => {
      checkLatent(ctx, `latents[${n}].index`, l.index, sae, o.sae);
      const before = seen.get(l.index);
      if (before !== undefined) ctx.invalid(`latents[${n}].index`, `latent ${l.index} is already steered by latents[${before}]`);
      seen.set(l.index, n);
    });
    if (o.when) checkLatent(ctx, "when.latent", o.when.latent, sae, o.sae);

    const norm = sae.info.normalization;
    const constScale = norm.kind === "none" ? 1 : norm.kind === "scale" ? 1 / norm.factor : null;
    const n = o.latents.length;
    const decoder = new Float32Array(n * d);
    o.latents.forEach((l, c) => {
      const row = sae.decoder.subarray(l.index * d, (l.index + 1) * d);
      decoder.set(row, c * d);
      if (l.value === undefined) return;
      // value · W_dec[i] (· the constant row scale) must stay a float32: beyond it is bad input, not NaN logits later.
      let maxAbs = 0;
      for (let j = 0; j < d; j++) maxAbs = Math.max(maxAbs, Math.abs(row[j]!));
      const factor = l.mode === "scale" ? Math.abs(l.value - 1) : Math.abs(l.value);
      if (!(Math.abs(l.value) <= FLOAT32_MAX) || !(factor * maxAbs * (constScale ?? 1) <= FLOAT32_MAX)) {
        ctx.invalid(`latents[${c}].value`, `${l.value} times latent ${l.index}'s decoder row (largest entry ${maxAbs}) overflows float32`);
      }
    });

    const indices = [...o.latents.map((l) => l.index)];
    let whenSlot = -1;
    if (o.when) {
      whenSlot = indices.indexOf(o.when.latent);
      if (whenSlot < 0) whenSlot = indices.push(o.when.latent) - 1;
    }
    const plan = latentPlan(sae, indices, topk);
    const readsActs = o.when !== undefined || o.latents.some((l) => l.mode !== "add");
    let affineC: Float32Array | null = null;
    if (!readsActs && constScale !== null) {
      affineC = new Float32Array(d);
      o.latents.forEach((l, c) => {
        for (let j = 0; j < d; j++) affineC![j] = affineC![j]! + l.value! * constScale * decoder[c * d + j]!;
      });
    }
    return {
      point,
      plan,
      slots: Int32Array.from(o.latents, (_, c) => c),
      modes: Uint8Array.from(o.latents, (l) => MODE[l.mode]),
      values: Float64Array.from(o.latents, (l) => l.value ?? 0),
      decoder,
      whenSlot,
      readsActs,
      affineC,
    };
  },
  create(o, { model, prepared, promptTokens }) {
    const p = prepared;
    const d = model.dModel;
    const n = p.modes.length;
    const range = resolvePositions(o.positions, promptTokens.length);
    const reader = latentReader(p.plan);
    const acts = new Float64Array(p.plan.indices.length);
    const row = newRowScale();
    const when = o.when;
    const fromFirst = when?.from === "first";
    let first = Infinity; // position of the first row where `when` held (this request)

    return {
      points: [p.point],
      onResidual(x, ctx) {
        const data = x.data;
        for (let r = 0, off = 0; off < data.length; r++, off += d) {
          const pos = ctx.positions[r]!;
          const inRange = inPositions(range, pos);
          // With from: "first", rows outside `positions` may still be the trigger.
          if (!inRange && !(fromFirst && first === Infinity)) continue;
          if (p.readsActs) reader.read(data, off, acts, row);
          else reader.rowScale(data, off, row); // add-only: the delta is value · s, whatever f is
          if (when) {
            const on = acts[p.whenSlot]! > when.threshold;
            if (fromFirst) {
              if (on && pos < first) first = pos;
              if (pos < first) continue;
            } else if (!on) continue;
          }
          if (!inRange) continue;
          const s = row.scale;
          for (let c = 0; c < n; c++) {
            const f = acts[p.slots[c]!]!;
            const mode = p.modes[c]!;
            const value = p.values[c]!;
            const target = mode === 0 ? value : mode === 1 ? f + value : mode === 2 ? f * value : 0;
            const delta = (target - f) * s;
            if (delta === 0) continue;
            for (let j = 0, o2 = c * d; j < d; j++) data[off + j] = data[off + j]! + delta * p.decoder[o2 + j]!;
          }
        }
      },
      affine: (): AffineForm | null => (p.affineC ? { rank: 0, U: null, V: null, c: p.affineC, positions: o.positions } : null),
    };
  },
});
