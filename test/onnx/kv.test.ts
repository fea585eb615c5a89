import { describe, expect, test } from "bun:test";
import { KvCache, type KvEntry } from "../../src/adapters/onnx/kv.ts";

/** The reference: concatenate along the sequence axis of a row-major [outer, seq, inner] tensor. */
function concat(a: number[], aLen: number, b: number[], bLen: number, outer: number, inner: number): number[] {
  const out: number[] = [];
  for (let o = 0; o < outer; o++) {
    out.push(...a.slice(o * aLen * inner, (o + 1) * aLen * inner), ...b.slice(o * bLen * inner, (o + 1) * bLen * inner));
  }
  return out;
}

describe("KvCache", () => {
  for (const [layout, entry] of [
    ["Optimum [1, heads, seq, dim]", { layer: 0, input: "k", output: "p", emptyDims: [1, 3, 0, 2], seqAxis: 2, elemType: 1 }],
    ["legacy [2, 1, heads, seq, dim]", { layer: 0, input: "k", output: "p", emptyDims: [2, 1, 3, 0, 2], seqAxis: 3, elemType: 1 }],
  ] as [string, KvEntry][]) {
    test(`appending steps equals concatenating along the sequence axis (${layout})`, () => {
      const outer = entry.emptyDims.slice(0, entry.seqAxis).reduce((a, b) => a * b, 1);
      const inner = 2;
      const cache = new KvCache(entry);
      let want: number[] = [];
      let len = 0;
      let next = 1;
      for (const n of [5, 1, 1, 20, 1]) {
        const rows = Array.from({ length: outer * n * inner }, () => next++);
        cache.append(Float32Array.from(rows), n);
        want = concat(want, len, rows, n, outer, inner);
        len += n;
        const past = cache.past();
        expect(past.dims[entry.seqAxis]).toBe(len);
        expect(Array.from(past.data)).toEqual(want);
      }
      cache.reset();
      expect(cache.past().data.length).toBe(0);
      expect(() => cache.append(new Float32Array(3), 1)).toThrow(/expected/);
    });
  }
});
