import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractDirections, extractionDirection, extractPerPosition, saveExtraction } from "../../src/directions/extract.ts";
import { readDirectionFile } from "../../src/directions/file.ts";
import { hashPromptSet, preparePrompt, readPromptSet } from "../../src/directions/prompts.ts";
import { collectResiduals } from "../../src/sae/collect.ts";
import { loadTestModel } from "../../src/testing/index.ts";

const A = ["Once upon a time, there was a little dog.", "Tom had a big dog.", "The happy dog wanted to play."];
const B = ["Once upon a time, there was a little girl.", "Tom had a big ball.", "The happy cat wanted to play."];
const d = 64;
const dir = mkdtempSync(join(tmpdir(), "steerkit-extract-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Per text, the mean of its rows [from, to) (relative to the rows without BOS) from collectResiduals: an independent path. */
async function rowsMean(texts: readonly string[], point: string, pick: (rows: number) => [number, number]): Promise<Float64Array> {
  const model = await loadTestModel();
  const r = await collectResiduals(model, texts, point);
  const mean = new Float64Array(d);
  let offset = 0;
  for (const rows of r.rowsPerText) {
    const [from, to] = pick(rows);
    for (let row = from; row < to; row++) for (let i = 0; i < d; i++) mean[i]! += r.data[(offset + row) * d + i]! / (to - from) / texts.length;
    offset += rows;
  }
  return mean;
}

describe("extractDirections", () => {
  test('mean-diff at "last" and "mean" positions equals the same arithmetic on collectResiduals\' rows', async () => {
    const model = await loadTestModel();
    for (const positions of ["last", "mean"] as const) {
      const ex = await extractDirections(model, A, B, { points: ["resid_post.1", "resid_mid.2"], positions });
      expect([...ex.vectors.keys()]).toEqual(["resid_post.1", "resid_mid.2"]);
      for (const point of ["resid_post.1", "resid_mid.2"]) {
        const pick = (rows: number): [number, number] => (positions === "last" ? [rows - 1, rows] : [0, rows]);
        const ma = await rowsMean(A, point, pick);
        const mb = await rowsMean(B, point, pick);
        const v = ex.vectors.get(point)!;
        for (let i = 0; i < d; i++) expect(v[i]!).toBeCloseTo(ma[i]! - mb[i]!, 5);
      }
      const [first, second] = ex.summary;
      expect(first!.cosinePrevious).toBeNull();
      expect(second!.cosinePrevious).toBeGreaterThan(-1);
      expect(first!.meanResidualNorm).toBeGreaterThan(0);
      expect(ex.meanNorms.get("resid_post.1")).toBe(first!.meanResidualNorm);
      expect(ex.metadata.positions).toBe(positions);
      expect(ex.metadata.prompt_set_a_sha256).toBe(hashPromptSet(A));
    }
  });

  test("pca-diff gives unit vectors with repeng's sign rule and the explained variance", async () => {
    const model = await loadTestModel();
    const ex = await extractDirections(model, A, B, { points: ["resid_post.2"], method: "pca-diff", positions: "mean" });
    const s = ex.summary[0]!;
    expect(s.norm).toBeCloseTo(1, 5);
    expect(s.explainedVariance).toBeGreaterThan(0);
    expect(s.explainedVariance).toBeLessThanOrEqual(1);
  });

  test('"post-instruction" rows are the chat template\'s tokens after the user message', async () => {
    const model = await loadTestModel();
    // stories260K has no chat template: the documented fallback "User: ...\n\nAssistant:".
    const p = preparePrompt(model, A[0]!, "chat", "x");
    const after = model.detokenize(p.tokens.slice(p.postInstruction!));
    expect(after.trim()).toBe("Assistant:");
    expect(model.detokenize(p.tokens.slice(0, p.postInstruction!))).toContain(A[0]!);
    const ex = await extractDirections(model, A, B, { points: ["resid_post.1"], positions: "post-instruction", format: "chat" });
    expect(ex.metadata.prompt_format).toBe("chat");
    expect(ex.summary[0]!.norm).toBeGreaterThan(0);
  });

  test("per position: one extraction per post-instruction token; -1 is \"last\", -k the k-th token from the end", async () => {
    const model = await loadTestModel();
    const per = await extractPerPosition(model, A, B, { points: ["resid_post.1", "resid_post.2"], format: "chat" });
    const suffix = Math.min(...[...A, ...B].map((p) => {
      const q = preparePrompt(model, p, "chat", "x");
      return q.tokens.length - q.postInstruction!;
    }));
    expect(suffix).toBeGreaterThan(1);
    expect(per.map((c): string => c.position)).toEqual(Array.from({ length: suffix }, (_, i) => `-${i + 1}`));
    const last = await extractDirections(model, A, B, { points: ["resid_post.1", "resid_post.2"], positions: "last", format: "chat" });
    const second = await extractDirections(model, A, B, { points: ["resid_post.1", "resid_post.2"], positions: "-2", format: "chat" });
    for (const point of ["resid_post.1", "resid_post.2"]) {
      expect([...per[0]!.extraction.vectors.get(point)!]).toEqual([...last.vectors.get(point)!]);
      expect([...per[1]!.extraction.vectors.get(point)!]).toEqual([...second.vectors.get(point)!]);
    }
    expect(per[1]!.extraction.metadata.positions).toBe("-2");
    // The mean over the post-instruction tokens is the mean of the per-position summary rows: check through the directions.
    const mean = await extractDirections(model, A, B, { points: ["resid_post.1"], positions: "post-instruction", format: "chat" });
    if (A.concat(B).every((p) => { const q = preparePrompt(model, p, "chat", "x"); return q.tokens.length - q.postInstruction! === suffix; })) {
      const avg = new Float64Array(64);
      for (const c of per) c.extraction.vectors.get("resid_post.1")!.forEach((x, i) => (avg[i]! += x / per.length));
      mean.vectors.get("resid_post.1")!.forEach((x, i) => expect(x).toBeCloseTo(avg[i]!, 5));
    }
    const dir = extractionDirection(per[1]!.extraction);
    expect(dir.width).toBe(64);
    expect(dir.metadata!.positions).toBe("-2");
    await expect(extractPerPosition(model, A, B, { points: ["resid_post.1"] })).rejects.toThrow(/need the chat format/);
    await expect(extractDirections(model, A, B, { points: ["resid_post.1"], positions: "-400" as "-1" })).rejects.toThrow(/has \d+ tokens: none at positions "-400"/);
    await expect(extractDirections(model, A, B, { points: ["resid_post.1"], positions: "-0" as "-1" })).rejects.toThrow(/or "-k" \(the k-th token from the end\), got "-0"/);
  });

  test("saved as a direction file that reads back with provenance and norms", async () => {
    const model = await loadTestModel();
    const ex = await extractDirections(model, A, B, { points: ["resid_post.1-2"], modelName: "stories260K" });
    const path = join(dir, "x.safetensors");
    saveExtraction(path, ex);
    const back = readDirectionFile(path, "x");
    expect([...back.byPoint.keys()]).toEqual(["resid_post.1", "resid_post.2"]);
    expect([...back.byPoint.get("resid_post.2")!]).toEqual([...ex.vectors.get("resid_post.2")!]);
    expect(back.meanNorms!.get("resid_post.1")).toBe(ex.meanNorms.get("resid_post.1")!);
    expect(back.metadata).toMatchObject({ model: "stories260K", method: "mean-diff", positions: "last", d_model: "64", n_layers: "5", prompt_set_b_size: "3" });
  });

  test("bad input: clear errors", async () => {
    const model = await loadTestModel();
    const run = (a: string[], b: string[], o: Partial<Parameters<typeof extractDirections>[3]> = {}) => extractDirections(model, a, b, { points: ["resid_post.1"], ...o });
    await expect(run([], [])).rejects.toThrow(/need at least one prompt \(A has 0, B has 0\)/);
    await expect(run(A, B.slice(0, 2))).rejects.toThrow(/same size \(A has 3, B has 2\)/);
    await expect(run(A, A)).rejects.toThrow(/direction at resid_post.1 is the zero vector/);
    await expect(run(A, B, { positions: "post-instruction" })).rejects.toThrow(/needs the chat format/);
    await expect(run(A.slice(0, 1), B.slice(0, 1), { method: "pca-diff" })).rejects.toThrow(/at least 2 pairs/);
    await expect(run(A, B, { points: ["resid_post.7"] })).rejects.toThrow(/points: .*outside 0..4/);
    await expect(run(["ok", ""], ["ok", "b"])).rejects.toThrow(/set A prompt 2 is empty/);
  });

  test("prompt files: one prompt per line, or JSONL strings / objects", () => {
    writeFileSync(join(dir, "p.txt"), "first\n\nsecond\r\n");
    writeFileSync(join(dir, "p.jsonl"), '"first"\n{"instruction": "second"}\n');
    writeFileSync(join(dir, "bad.jsonl"), '{"x": 1}\n');
    expect(readPromptSet(join(dir, "p.txt"))).toEqual(["first", "second"]);
    expect(readPromptSet(join(dir, "p.jsonl"))).toEqual(["first", "second"]);
    expect(() => readPromptSet(join(dir, "bad.jsonl"))).toThrow(/line 1 is neither/);
    expect(hashPromptSet(readPromptSet(join(dir, "p.txt")))).toBe(hashPromptSet(readPromptSet(join(dir, "p.jsonl"))));
  });
});
