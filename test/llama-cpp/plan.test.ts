import { describe, expect, test } from "bun:test";
import type { AffineEdit, PositionRange, ResidualHooks } from "../../src/core/backend.ts";
import { pointName, type HookPoint } from "../../src/core/sites.ts";
import { encodeRange, planPoints, POS_END } from "../../src/adapters/llama-cpp/plan.ts";

// No model: a made-up shape, small enough to write vectors by hand.
const nLayers = 4;
const D = 3;
const opts = { nLayers, dModel: D };

const post = (layer: number): HookPoint => ({ site: "resid_post", layer });
const mid = (layer: number): HookPoint => ({ site: "resid_mid", layer });
const pre = (layer: number): HookPoint => ({ site: "resid_pre", layer });
const c = (x: number) => new Float32Array([x, x, x]);

function add(point: HookPoint, v: Float32Array | null, positions?: PositionRange | null): AffineEdit {
  return { point, rank: 0, U: null, V: null, c: v, positions };
}
function rank1(point: HookPoint, positions?: PositionRange | null): AffineEdit {
  return { point, rank: 1, U: new Float32Array([1, 0, 0]), V: new Float32Array([0, -1, 0]), c: null, positions };
}

function hooks(points: HookPoint[], affine: AffineEdit[] = [], more: { readOnly?: string[]; writes?: boolean } = {}): ResidualHooks {
  return {
    points,
    affine: new Map(affine.map((e) => [pointName(e.point), e])),
    writes: more.writes ?? true,
    readOnly: new Set(more.readOnly ?? []),
    error: null,
    run: (_p, x) => x,
  };
}

describe("llama.cpp point plan", () => {
  test("no hooks: nothing to serve", () => {
    expect(planPoints(undefined, opts)).toEqual({ modes: new Map(), cvec: null, native: [], js: [] });
  });

  test("unrestricted additive edits at resid_post L >= 1 become one control vector spanning their layers", () => {
    const plan = planPoints(hooks([post(1), post(3)], [add(post(1), c(1)), add(post(3), c(3))]), opts);
    expect(plan.cvec).toEqual({ first: 1, last: 3, layers: [{ layer: 1, c: c(1) }, { layer: 3, c: c(3) }] });
    expect([...plan.modes]).toEqual([["resid_post.1", "cvec"], ["resid_post.3", "cvec"]]);
    expect(plan.native).toEqual([]);
    expect(plan.js).toEqual([]);
  });

  test("additive edits a control vector cannot hold run natively: block 0's output, mid-block, embeddings", () => {
    const plan = planPoints(hooks([pre(0), mid(2), post(0)], [add(pre(0), c(1)), add(mid(2), c(2)), add(post(0), c(3))]), opts);
    expect(plan.cvec).toBeNull();
    expect([...plan.modes.values()]).toEqual(["native", "native", "native"]);
    expect(plan.native.map((n) => [n.index, n.name, n.posFrom, n.posTo])).toEqual([
      [0, "resid_pre.0", 0, POS_END],
      [5, "resid_mid.2", 0, POS_END],
      [2, "resid_post.0", 0, POS_END],
    ]);
  });

  test("a positioned additive edit at resid_post L >= 1 runs natively with its range, never as a control vector", () => {
    for (const positions of [{ from: 5, to: Infinity }, { from: 0, to: 5 }, { from: 2, to: 7 }]) {
      const plan = planPoints(hooks([post(2)], [add(post(2), c(1), positions)]), opts);
      expect(plan.cvec).toBeNull();
      expect(plan.modes.get("resid_post.2")).toBe("native");
      expect(plan.native).toEqual([
        { index: 6, name: "resid_post.2", rank: 0, U: null, V: null, c: c(1), posFrom: positions.from, posTo: positions.to === Infinity ? POS_END : positions.to },
      ]);
    }
  });

  test("a range covering every position is no restriction: it may use the control vector", () => {
    const plan = planPoints(hooks([post(2)], [add(post(2), c(1), { from: 0, to: Infinity })]), opts);
    expect(plan.modes.get("resid_post.2")).toBe("cvec");
  });

  test("low-rank edits run natively, positioned or not, and keep their U and V", () => {
    const e = rank1(post(2), { from: 3, to: 4 });
    const plan = planPoints(hooks([post(2), post(3)], [e, rank1(post(3))]), opts);
    expect([...plan.modes.values()]).toEqual(["native", "native"]);
    expect(plan.native[0]).toEqual({ index: 6, name: "resid_post.2", rank: 1, U: e.U, V: e.V, c: null, posFrom: 3, posTo: 4 });
    expect(plan.native[1]!.posTo).toBe(POS_END);
  });

  test('fastPath "callback" keeps control vectors out', () => {
    const plan = planPoints(hooks([post(2)], [add(post(2), c(1))]), { ...opts, fastPath: "callback" });
    expect(plan.cvec).toBeNull();
    expect(plan.modes.get("resid_post.2")).toBe("native");
  });

  test("an architecture whose graph adds no control vector at l_out never gets one", () => {
    const plan = planPoints(hooks([post(2)], [add(post(2), c(1))]), { ...opts, controlVectors: false });
    expect(plan.cvec).toBeNull();
    expect(plan.modes.get("resid_post.2")).toBe("native");
  });

  test("edits that change nothing need no hook; an empty range is a malformed edit, as on every backend", () => {
    const plan = planPoints(hooks([post(1)], [add(post(1), null)]), opts);
    expect([...plan.modes.values()]).toEqual(["identity"]);
    expect(plan.native).toEqual([]);
    expect(plan.js).toEqual([]);
    expect(plan.cvec).toBeNull();
    expect(() => planPoints(hooks([mid(1)], [add(mid(1), c(1), { from: 4, to: 4 })]), opts)).toThrow("positions.to must be an integer (or Infinity) > from 4, got 4");
    expect(() => planPoints(hooks([post(2)], [rank1(post(2), { from: 9, to: 3 })]), opts)).toThrow("positions.to must be an integer (or Infinity) > from 9, got 3");
  });

  test("points without an edit call JS; read-only ones are marked, and all are when no hook writes", () => {
    const h = hooks([pre(0), mid(1), post(2)], [], { readOnly: ["resid_mid.1"] });
    expect(planPoints(h, opts).js).toEqual([
      { index: 0, name: "resid_pre.0", readOnly: false },
      { index: 3, name: "resid_mid.1", readOnly: true },
      { index: 6, name: "resid_post.2", readOnly: false },
    ]);
    const none = planPoints(hooks([pre(0), post(2)], [], { writes: false }), opts);
    expect(none.js.map((j) => j.readOnly)).toEqual([true, true]);
  });

  test("a mix is split by point; resid_pre L > 0 is served under its canonical name resid_post L-1, once", () => {
    const plan = planPoints(
      hooks([pre(0), pre(3), post(2), mid(3)], [add(pre(3), c(1)), rank1(mid(3), { from: 1, to: 2 })], { readOnly: ["resid_pre.0"] }),
      opts,
    );
    expect([...plan.modes]).toEqual([
      ["resid_pre.0", "js"],
      ["resid_post.2", "cvec"],
      ["resid_mid.3", "native"],
    ]);
    expect(plan.cvec).toEqual({ first: 2, last: 2, layers: [{ layer: 2, c: c(1) }] });
    expect(plan.js).toEqual([{ index: 0, name: "resid_pre.0", readOnly: true }]);
  });

  test("edits that do not fit the model are refused, naming model, point and term", () => {
    const bad = (e: AffineEdit) => () => planPoints(hooks([e.point], [e]), { ...opts, modelName: "tiny" });
    expect(bad({ point: post(2), rank: 1, U: new Float32Array(D), V: new Float32Array(2), c: null })).toThrow("tiny: affine edit at resid_post.2: V must hold 1x3 = 3 values, got Float32Array(2)");
    expect(bad({ point: mid(1), rank: 1, U: null, V: new Float32Array(D), c: null })).toThrow("tiny: affine edit at resid_mid.1: U must hold 3x1 = 3 values, got null");
    expect(bad(add(post(1), new Float32Array(4)))).toThrow("c must hold 1x3 = 3 values, got Float32Array(4)");
    expect(bad({ point: post(1), rank: 1.5, U: null, V: null, c: null })).toThrow("rank must be an integer >= 0, got 1.5");
    expect(bad(add(post(1), c(1), { from: Number.NaN, to: 3 }))).toThrow("positions.from must be an integer >= 0, got NaN");
  });
});

describe("position ranges as the shim compares them", () => {
  test("every row, open ends, and int32 clamping", () => {
    expect(encodeRange(null)).toEqual({ posFrom: 0, posTo: POS_END });
    expect(encodeRange(undefined)).toEqual({ posFrom: 0, posTo: POS_END });
    expect(encodeRange({ from: 5, to: Infinity })).toEqual({ posFrom: 5, posTo: POS_END });
    expect(encodeRange({ from: 2, to: 7 })).toEqual({ posFrom: 2, posTo: 7 });
    expect(encodeRange({ from: 2 ** 40, to: Infinity })).toEqual({ posFrom: POS_END, posTo: POS_END });
    expect(encodeRange({ from: -3, to: 2 })).toEqual({ posFrom: 0, posTo: 2 });
    expect(POS_END).toBe(2 ** 31 - 1);
  });

  test("fractional bounds select the same integer positions as core's inPositions", () => {
    // p >= 1.5 and p < 3.5 hold for p = 2, 3: the encoded [2, 4) selects the same.
    expect(encodeRange({ from: 1.5, to: 3.5 })).toEqual({ posFrom: 2, posTo: 4 });
  });
});
