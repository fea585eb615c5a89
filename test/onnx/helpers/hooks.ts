/** Small hand-built ResidualHooks for adapter tests (core's chain compiles the real ones). */
import type { AffineEdit, PositionRange, ResidualHooks } from "../../../src/core/backend.ts";
import { parsePoint, pointName, type HookPoint } from "../../../src/core/sites.ts";
import type { Tensor } from "../../../src/core/tensor.ts";

export interface TestHooks extends ResidualHooks {
  /** Copies of what each run saw, by point name, in call order. */
  readonly seen: Map<string, Float32Array[]>;
}

export function makeHooks(options: {
  points: string[];
  affine?: Record<string, { c?: Float32Array; U?: Float32Array; V?: Float32Array; rank?: number; positions?: PositionRange }>;
  writes?: boolean;
  edit?: (point: HookPoint, x: Tensor, positions: ArrayLike<number>) => Tensor | void;
}): TestHooks {
  const points = options.points.map(parsePoint);
  const affine = new Map<string, AffineEdit>();
  for (const [name, e] of Object.entries(options.affine ?? {})) {
    affine.set(name, { point: parsePoint(name), rank: e.rank ?? 0, U: e.U ?? null, V: e.V ?? null, c: e.c ?? null, positions: e.positions ?? null });
  }
  const seen = new Map<string, Float32Array[]>();
  const hooks: TestHooks & { error: Error | null } = {
    points,
    affine,
    writes: options.writes ?? true,
    readOnly: new Set(options.writes === false ? points.map(pointName) : []),
    seen,
    error: null,
    run(point, x, positions) {
      const name = pointName(point);
      if (!seen.has(name)) seen.set(name, []);
      seen.get(name)!.push(Float32Array.from(x.data));
      try {
        return options.edit?.(point, x, positions) ?? x;
      } catch (e) {
        hooks.error ??= e as Error;
        return x;
      }
    },
  };
  return hooks;
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A deterministic non-constant vector (a constant one would vanish in LayerNorm). */
export function wave(n: number, scale = 1, phase = 0): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + phase) * scale);
}
