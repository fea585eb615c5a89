/** Small hand-built ResidualHooks for the adapter's tests (core's chain compiles real ones). */
import type { AffineEdit, ResidualHooks } from "../../src/core/backend.ts";
import { pointName, type HookPoint } from "../../src/core/sites.ts";
import type { Tensor } from "../../src/core/tensor.ts";
import { applyAffine } from "../../src/core/chain.ts";

export type HookFn = (point: HookPoint, x: Tensor, positions: ArrayLike<number>) => Tensor | void;

export function makeHooks(points: HookPoint[], fn: HookFn, affine: AffineEdit[] = []): ResidualHooks & { calls: number } {
  const hooks = {
    points,
    affine: new Map(affine.map((e) => [pointName(e.point), e])),
    writes: true,
    readOnly: new Set<string>(),
    error: null as Error | null,
    calls: 0,
    run(point: HookPoint, x: Tensor, positions: ArrayLike<number>): Tensor {
      hooks.calls++;
      try {
        return fn(point, x, positions) ?? x;
      } catch (e) {
        hooks.error ??= e as Error;
        return x;
      }
    },
  };
  return hooks;
}

/** The JS twin of an affine edit: core's reference implementation. */
export const applyAffineJs = applyAffine;

/** A deterministic pseudo-random vector (xorshift), so tests need no fixtures. */
export function randomVector(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    out[i] = ((s / 0xffffffff) * 2 - 1) * scale;
  }
  return out;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}
