/**
 * How a llama.cpp sequence serves each hooked point, decided from a request's ResidualHooks alone.
 *
 * Why a pure function apart from the sequence: the decision (control vector, native edit in the
 * shim, JS chain, or nothing) is where the correctness rules live, e.g. a control vector cannot be
 * limited to positions, so it must be testable without a model; the sequence only turns the plan
 * into memory blocks for llama.cpp and the shim.
 *
 * - `cvec`: an unrestricted additive edit (rank 0) at `resid_post L >= 1`. llama.cpp adds a control
 *   vector to every row of `l_out-L`; no callback runs at all.
 * - `native`: any other affine edit, positioned or not; `sk_eval` applies it in C.
 * - `js`: points without an affine edit call core's chain; read-only ones are not written back.
 * - `identity`: an edit that cannot change anything (no terms, or an empty position range).
 */
import type { PositionRange, ResidualHooks } from "../../core/backend.ts";
import { checkAffineEdit } from "../../core/backend-kit.ts";
import { canonicalPoint, pointIndex, pointName } from "../../core/sites.ts";
import { SteerkitError } from "../../core/errors.ts";

/** How a hook point is served. */
export type PointMode = "cvec" | "native" | "js" | "identity";

export interface PlanOptions {
  readonly nLayers: number;
  readonly dModel: number;
  /** "auto" (default): control vectors where they apply. "callback": never control vectors. */
  readonly fastPath?: "auto" | "callback";
  /**
   * The architecture's graph adds a control vector to `l_out-L` (its builder calls `build_cvec` right
   * before naming `l_out`). Default true; false never plans `cvec` (architectures.ts says per architecture).
   */
  readonly controlVectors?: boolean;
  /**
   * The architecture's name when its blocks are parallel (attention and MLP added together, phi2):
   * resid_mid does not exist there, and a hook at it is refused naming the architecture and the point.
   */
  readonly parallelBlocks?: string;
  /** Names the model in error messages. */
  readonly modelName?: string;
}

/** One affine edit the shim applies, with its rows as the shim compares them. */
export interface NativePoint {
  /** Core's point index (see sites.ts), which is also the shim's. */
  readonly index: number;
  readonly name: string;
  readonly rank: number;
  readonly U: Float32Array | null;
  readonly V: Float32Array | null;
  readonly c: Float32Array | null;
  /** First position edited. */
  readonly posFrom: number;
  /** One past the last position edited; {@link POS_END} when open-ended. */
  readonly posTo: number;
}

export interface JsPoint {
  readonly index: number;
  readonly name: string;
  /** Every hook there only reads: a replacement a hook returns is not written back. */
  readonly readOnly: boolean;
}

/** The control vector: one `[dModel]` vector per layer in `first..last` (layers without one add zero). */
export interface CvecPlan {
  readonly first: number;
  readonly last: number;
  readonly layers: readonly { readonly layer: number; readonly c: Float32Array }[];
}

export interface PointPlan {
  /** Per hooked point, by canonical name. */
  readonly modes: ReadonlyMap<string, PointMode>;
  readonly cvec: CvecPlan | null;
  readonly native: readonly NativePoint[];
  readonly js: readonly JsPoint[];
}

/**
 * The shim's "no end" position: llama.cpp positions are int32 and never reach it, so `pos < posTo`
 * holds for every row of an open-ended range without a separate test.
 */
export const POS_END = 0x7fffffff;

/**
 * A position range as the shim's int32 `[posFrom, posTo)`: null is every row; fractional bounds
 * round up (positions are integers); bounds past int32 clamp to {@link POS_END}.
 */
export function encodeRange(range: PositionRange | null | undefined): { posFrom: number; posTo: number } {
  if (!range) return { posFrom: 0, posTo: POS_END };
  const { from, to } = range;
  if (Number.isNaN(from) || Number.isNaN(to)) throw new RangeError(`position range {from: ${from}, to: ${to}} is not a pair of numbers`);
  const clamp = (x: number) => Math.min(POS_END, Math.max(0, Math.ceil(x)));
  return { posFrom: clamp(from), posTo: clamp(to) };
}

/** Decide how each of `hooks.points` is served. Throws PLUGIN_FAILED (core's backend kit) when an edit does not fit the model. */
export function planPoints(hooks: ResidualHooks | undefined, options: PlanOptions): PointPlan {
  const { nLayers, dModel } = options;
  const modes = new Map<string, PointMode>();
  const native: NativePoint[] = [];
  const js: JsPoint[] = [];
  const cvecLayers: { layer: number; c: Float32Array }[] = [];
  if (hooks) {
    for (const raw of hooks.points) {
      const p = canonicalPoint(raw, nLayers);
      const name = pointName(p);
      if (p.site === "resid_mid" && options.parallelBlocks !== undefined) {
        throw new SteerkitError(
          "UNSUPPORTED_MODEL",
          `${options.parallelBlocks} model ${options.modelName ?? ""} has no ${name}: its blocks add attention and MLP to the stream ` +
            `together (parallel residual), so no point lies between them; hook resid_pre.${p.layer} or resid_post.${p.layer}`,
        );
      }
      if (modes.has(name)) continue; // resid_pre L and resid_post L-1 are one place
      const index = pointIndex(p, nLayers);
      const edit = hooks.affine.get(name) ?? hooks.affine.get(pointName(raw));
      if (!edit) {
        js.push({ index, name, readOnly: !hooks.writes || hooks.readOnly.has(name) });
        modes.set(name, "js");
        continue;
      }
      checkAffineEdit(edit, dModel, options.modelName ?? "model");
      const { posFrom, posTo } = encodeRange(edit.positions);
      const c = edit.c;
      if ((edit.rank === 0 && !c) || posTo <= posFrom) {
        modes.set(name, "identity"); // changes nothing: needs no hook at all
        continue;
      }
      const everyRow = posFrom === 0 && posTo === POS_END;
      const cvecApplies = options.fastPath !== "callback" && options.controlVectors !== false;
      if (edit.rank === 0 && everyRow && cvecApplies && p.site === "resid_post" && p.layer >= 1) {
        cvecLayers.push({ layer: p.layer, c: c! });
        modes.set(name, "cvec");
        continue;
      }
      native.push({ index, name, rank: edit.rank, U: edit.rank ? edit.U : null, V: edit.rank ? edit.V : null, c, posFrom, posTo });
      modes.set(name, "native");
    }
  }
  const cvec = cvecLayers.length
    ? { first: Math.min(...cvecLayers.map((l) => l.layer)), last: Math.max(...cvecLayers.map((l) => l.layer)), layers: cvecLayers }
    : null;
  return { modes, cvec, native, js };
}

