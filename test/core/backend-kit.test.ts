import { describe, expect, test } from "bun:test";
import type { AffineEdit } from "../../src/core/backend.ts";
import { checkAffineEdit, checkPrefill } from "../../src/core/backend-kit.ts";
import { SteerkitError } from "../../src/core/errors.ts";

const limits = { subject: "sequence 7 of tiny", cached: 3, contextLength: 10, vocabSize: 100 };

/** The thrown error, for asserting on its code and message together. */
function thrown(f: () => void): SteerkitError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(SteerkitError);
    return e as SteerkitError;
  }
  throw new Error("expected a throw");
}

describe("checkPrefill", () => {
  test("accepts tokens that fit, up to the last slot of the context", () => {
    checkPrefill([0, 99, 5], limits);
    checkPrefill(new Int32Array(7).fill(1), limits);
  });

  test("no tokens is INVALID_REQUEST naming the sequence", () => {
    const e = thrown(() => checkPrefill([], limits));
    expect(e.code).toBe("INVALID_REQUEST");
    expect(e.message).toBe("sequence 7 of tiny: prefill needs at least one token, got none");
  });

  test("a token outside the vocabulary, negative or fractional names its index and the valid range", () => {
    for (const [tokens, i, t] of [
      [[1, 100], 1, "100"],
      [[-1], 0, "-1"],
      [[2, 3, 1.5], 2, "1.5"],
      [[Number.NaN], 0, "NaN"],
    ] as const) {
      const e = thrown(() => checkPrefill(tokens, limits));
      expect(e.code).toBe("INVALID_REQUEST");
      expect(e.message).toBe(`sequence 7 of tiny: tokens[${i}] is ${t}, expected an integer token id in 0..99`);
    }
  });

  test("cached + new beyond the context is CONTEXT_OVERFLOW with both counts", () => {
    const e = thrown(() => checkPrefill(new Array(8).fill(1), limits));
    expect(e.code).toBe("CONTEXT_OVERFLOW");
    expect(e.message).toBe("sequence 7 of tiny: 3 cached + 8 new = 11 tokens exceed the context length 10");
  });
});

describe("checkAffineEdit", () => {
  const d = 4;
  const point = { site: "resid_post", layer: 2 } as const;
  const edit = (e: Partial<AffineEdit>): AffineEdit => ({ point, rank: 0, U: null, V: null, c: null, ...e });
  const fail = (e: AffineEdit) => thrown(() => checkAffineEdit(e, d, "tiny"));

  test("accepts additive, low-rank, identity and position-limited edits", () => {
    checkAffineEdit(edit({ c: new Float32Array(d) }), d, "tiny");
    checkAffineEdit(edit({ rank: 2, U: new Float32Array(d * 2), V: new Float32Array(2 * d) }), d, "tiny");
    checkAffineEdit(edit({}), d, "tiny");
    checkAffineEdit(edit({ c: new Float32Array(d), positions: { from: 0, to: 3 } }), d, "tiny");
    checkAffineEdit(edit({ c: new Float32Array(d), positions: { from: 5, to: Infinity } }), d, "tiny");
  });

  test("each malformed part is PLUGIN_FAILED naming the model, the point, expected and got", () => {
    const cases: [AffineEdit, string][] = [
      [edit({ rank: -1 }), "rank must be an integer >= 0, got -1"],
      [edit({ rank: 1.5 }), "rank must be an integer >= 0, got 1.5"],
      [edit({ rank: 1, U: null, V: new Float32Array(d) }), "U must hold 4x1 = 4 values, got null"],
      [edit({ rank: 1, U: new Float32Array(d), V: new Float32Array(3) }), "V must hold 1x4 = 4 values, got Float32Array(3)"],
      [edit({ rank: 1, U: new Float64Array(d) as unknown as Float32Array, V: new Float32Array(d) }), "U must hold 4x1 = 4 values, got Float64Array(4)"],
      [edit({ rank: 0, U: new Float32Array(d) }), "U must be null with rank 0, got 4 values"],
      [edit({ c: new Float32Array(d + 1) }), "c must hold 1x4 = 4 values, got Float32Array(5)"],
      [edit({ c: Float32Array.of(0, 0, Number.NaN, 0) }), "c[2] is NaN, expected a finite number"],
      [edit({ rank: 1, U: Float32Array.of(0, Infinity, 0, 0), V: new Float32Array(d) }), "U[1] is Infinity, expected a finite number"],
      [edit({ c: new Float32Array(d), positions: { from: -1, to: 3 } }), "positions.from must be an integer >= 0, got -1"],
      [edit({ c: new Float32Array(d), positions: { from: 3, to: 3 } }), "positions.to must be an integer (or Infinity) > from 3, got 3"],
      [edit({ c: new Float32Array(d), positions: { from: 0, to: 2.5 } }), "positions.to must be an integer (or Infinity) > from 0, got 2.5"],
    ];
    for (const [e, message] of cases) {
      const err = fail(e);
      expect(err.code).toBe("PLUGIN_FAILED");
      expect(err.message).toBe(`tiny: affine edit at resid_post.2: ${message}`);
    }
  });
});
