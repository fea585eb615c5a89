/**
 * Direction selection on stories260K (llama.cpp): the shipped dog file's table is deterministic and
 * well-formed; a planted direction (the dog vector among random ones of the same norm, one of them
 * in the last 20% of layers) ranks first; bad input is refused.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import type { Direction } from "../../src/directions/artifact.ts";
import { klDivergence, logProbMass, selectDirections, selectionMarkdown } from "../../src/directions/select.ts";
import { D, dogFixture } from "./dog-fixture.ts";

const { dog, setA, setB, model, DOG_TOKEN } = await dogFixture();
afterAll(() => model.dispose());

function random(seed: number, norm: number): Float32Array {
  let s = seed;
  const v = Float32Array.from({ length: 64 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
  const n = Math.hypot(...v);
  return v.map((x) => (x * norm) / n);
}

describe("selectDirections", () => {
  test("the shipped dog file: deterministic, a row per point, ranked rows first, well-formed Markdown", async () => {
    const run = () => selectDirections(model, dog, { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1 });
    const [x, y] = [await run(), await run()];
    expect(y).toEqual(x);
    expect(x.rows.map((r) => r.point).sort()).toEqual(["resid_post.1", "resid_post.2", "resid_post.3"]);
    // Every candidate lowers the dog token on A and raises it on B.
    for (const r of x.rows) {
      expect(r.bypass!).toBeLessThan(x.baseline.a);
      expect(r.induce!).toBeGreaterThan(x.baseline.b);
      expect(r.kl!).toBeGreaterThan(0);
    }
    const ranked = x.rows.filter((r) => r.rank !== null);
    expect(ranked.map((r) => r.rank)).toEqual(ranked.map((_, i) => i + 1));
    for (let i = 1; i < ranked.length; i++) expect(ranked[i]!.bypass!).toBeGreaterThanOrEqual(ranked[i - 1]!.bypass!);
    const md = selectionMarkdown(x).trimEnd().split("\n");
    expect(md[2]).toBe("| rank | point | bypass (A, ablated) | induce (B, added) | KL (B, ablated) | filtered |");
    expect(md.slice(4)).toHaveLength(3);
    for (const line of md.slice(3)) expect(line.split("|")).toHaveLength(8);
    expect(JSON.parse(JSON.stringify(x))).toEqual(x);
  });

  test("a planted direction ranks first; the last 20% of layers is skipped; the KL filter applies", async () => {
    const real = dog.byPoint.get("resid_post.2")!;
    const norm = Math.hypot(...real);
    const planted: Direction = {
      vector: null,
      width: 64,
      byPoint: new Map([["resid_post.0", random(1, norm)], ["resid_post.1", random(2, norm)], ["resid_post.2", real], ["resid_post.3", random(3, norm)], ["resid_post.4", real]]),
    };
    const s = await selectDirections(model, planted, { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1 });
    expect(s.rows[0]!.point).toBe("resid_post.2");
    expect(s.rows[0]!.rank).toBe(1);
    expect(s.rows.find((r) => r.point === "resid_post.4")).toEqual({ point: "resid_post.4", position: null, layer: 4, rank: null, bypass: null, induce: null, kl: null, filtered: "last 20% of layers" });
    const strict = await selectDirections(model, planted, { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1e-9 });
    expect(strict.rows.every((r) => r.rank === null)).toBe(true);
    expect(strict.rows.filter((r) => r.filtered?.startsWith("kl >=") || r.filtered === "induce <= baseline")).toHaveLength(4);
  });

  test("candidates from several positions compete; rows and the Markdown name each one's position", async () => {
    const real = dog.byPoint.get("resid_post.2")!;
    const norm = Math.hypot(...real);
    const at = (positions: string, vec: Float32Array): Direction => ({ vector: null, width: 64, byPoint: new Map([["resid_post.2", vec]]), metadata: { positions } });
    const s = await selectDirections(model, [at("-2", random(7, norm)), at("-1", real), at("-1", random(8, norm))], { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1 });
    expect(s.rows.map((r) => r.position).sort()).toEqual(["-1", "-1 (file 3)", "-2"]);
    expect(s.rows[0]).toMatchObject({ rank: 1, position: "-1", point: "resid_post.2" });
    const md = selectionMarkdown(s).trimEnd().split("\n");
    expect(md[2]).toBe("| rank | position | point | bypass (A, ablated) | induce (B, added) | KL (B, ablated) | filtered |");
    expect(md[4]!.startsWith("| 1 | -1 | resid_post.2 |")).toBe(true);
    await expect(selectDirections(model, [], { setA, setB, tokenIds: [DOG_TOKEN] })).rejects.toThrow(/at least one direction/);
  });

  test("scores: log-probability mass and KL", () => {
    const logits = new Float32Array([0, Math.log(3), 0, 0]);
    expect(logProbMass([1])(logits)).toBeCloseTo(Math.log(0.5), 6);
    expect(logProbMass([0, 2])(logits)).toBeCloseTo(Math.log(2 / 6), 6);
    expect(klDivergence(logits, logits)).toBe(0);
    expect(klDivergence(new Float32Array([0, 0]), new Float32Array([0, Math.log(3)]))).toBeCloseTo(0.5 * Math.log(0.5 / 0.25) + 0.5 * Math.log(0.5 / 0.75), 6);
  });

  test("bad input names the problem", async () => {
    await expect(selectDirections(model, dog, { setA: [], setB, tokenIds: [DOG_TOKEN] })).rejects.toThrow(/at least one prompt \(A has 0/);
    await expect(selectDirections(model, dog, { setA, setB })).rejects.toThrow(/give a score function or the token ids/);
    await expect(selectDirections(model, dog, { setA, setB, tokenIds: [100000] })).rejects.toThrow(/token id 100000 is outside the vocabulary/);
    const narrow: Direction = { vector: null, width: 3, byPoint: new Map([["resid_post.1", new Float32Array([1, 2, 3])]]) };
    await expect(selectDirections(model, narrow, { setA, setB, tokenIds: [DOG_TOKEN] })).rejects.toThrow(/3 values; the model's residual has 64/);
    const shared: Direction = { vector: random(1, 1), width: 64, byPoint: new Map() };
    await expect(selectDirections(model, shared, { setA, setB, tokenIds: [DOG_TOKEN] })).rejects.toThrow(/nothing to select/);
  });
});

describe("steerkit directions select", () => {
  test("writes JSON and Markdown that match the library's table", async () => {
    const { main } = await import("../../src/cli/main.ts");
    const { mkdtempSync, writeFileSync, rmSync } = await import("node:fs");
    const { join } = await import("node:path");
    const { tmpdir } = await import("node:os");
    const dir = mkdtempSync(join(tmpdir(), "steerkit-select-"));
    try {
      writeFileSync(join(dir, "a.txt"), setA.join("\n"));
      writeFileSync(join(dir, "b.txt"), setB.join("\n"));
      const log = console.log;
      const err = console.error;
      console.log = console.error = () => {};
      let code: number;
      try {
        code = await main(["directions", "select", `${D}dog.safetensors`, "--a", join(dir, "a.txt"), "--b", join(dir, "b.txt"), "--tokens", "dog", "--max-kl", "1", "--json", join(dir, "t.json"), "--md", join(dir, "t.md")]);
      } finally {
        console.log = log;
        console.error = err;
      }
      expect(code).toBe(0);
      const lib = await selectDirections(model, dog, { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1 });
      expect(JSON.parse(readFileSync(join(dir, "t.json"), "utf8"))).toEqual(lib);
      expect(readFileSync(join(dir, "t.md"), "utf8")).toBe(selectionMarkdown(lib));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
