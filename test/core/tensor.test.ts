import { describe, expect, test } from "bun:test";
import { addRows, argmax, axpy, dot, matvec, norm, normalize, projectOut, projectOutRows, row, tensor, vecmat } from "../../src/core/tensor.ts";

const f = (...x: number[]) => new Float32Array(x);

describe("vector helpers against hand-computed values", () => {
  test("dot, norm, axpy", () => {
    expect(dot(f(1, 2, 3), f(4, -5, 6))).toBe(4 - 10 + 18);
    expect(norm(f(3, 4))).toBe(5);
    expect([...axpy(2, f(1, 2), f(10, 20))]).toEqual([12, 24]);
    expect(() => dot(f(1), f(1, 2))).toThrow(/lengths differ/);
  });
  test("normalize and projectOut remove exactly the component along the direction", () => {
    const u = normalize(f(3, 4));
    expect([...u].map((x) => +x.toFixed(6))).toEqual([0.6, 0.8]);
    const x = f(2, 1); // x·u = 1.2 + 0.8 = 2
    const c = projectOut(x, u);
    expect(c).toBeCloseTo(2, 6);
    expect(x[0]).toBeCloseTo(2 - 2 * 0.6, 6);
    expect(x[1]).toBeCloseTo(1 - 2 * 0.8, 6);
    expect(dot(x, u)).toBeCloseTo(0, 6);
    expect(() => normalize(f(0, 0))).toThrow(/norm is 0/);
  });
  test("row-wise edits touch every row of a [tokens, dModel] residual", () => {
    const t = tensor(f(1, 0, 0, 1, 2, 2), [3, 2]);
    addRows(t, f(1, -1), 2);
    expect([...t.data]).toEqual([3, -2, 2, -1, 4, 0]);
    projectOutRows(t, f(1, 0));
    expect([...t.data]).toEqual([0, -2, 0, -1, 0, 0]);
    expect([...row(t, 1)]).toEqual([0, -1]);
    expect(() => tensor(f(1, 2, 3), [2, 2])).toThrow(/hold 4 values, data has 3/);
  });
  test("matvec and vecmat over a row-major matrix", () => {
    const m = f(1, 2, 3, 4, 5, 6); // [[1,2,3],[4,5,6]]
    expect([...matvec(m, 2, 3, f(1, 0, -1))]).toEqual([-2, -2]);
    expect([...vecmat(f(1, -1), m, 2, 3)]).toEqual([-3, -3, -3]);
    expect(() => matvec(m, 3, 3, f(1, 2, 3))).toThrow(/expected 3x3/);
  });
  test("argmax takes the first of equal maxima", () => {
    expect(argmax(f(1, 5, 5, -1))).toBe(1);
    expect(argmax(f())).toBe(-1);
  });
});
