import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { OptionsError } from "../../src/core/errors.ts";
import { logger, type LogRecord } from "../../src/plugins/index.ts";
import { runPlugin } from "../../src/testing/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-logger-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("logger", () => {
  test("records norms and projections that match the residual it saw, and changes nothing", async () => {
    const records: LogRecord[] = [];
    const dirA = Array.from({ length: 64 }, (_, i) => (i === 3 ? 2 : 0)); // unit vector e3, scaled
    const run = await runPlugin(logger({ points: ["resid_post.2", "resid_mid.4"], directions: { e3: dirA }, topK: 3, onRecord: (r) => records.push(r) }), { maxTokens: 3 });
    expect(run.changed.length).toBe(0);
    const residual = records.filter((r) => r.type === "residual");
    // prefill + 2 decode passes, 2 points each, last row only
    expect(residual.map((r) => `${r.step}:${r.point}`)).toEqual(["0:resid_post.2", "0:resid_mid.4", "1:resid_post.2", "1:resid_mid.4", "2:resid_post.2", "2:resid_mid.4"]);
    for (const r of residual) {
      const seen = run.residuals.find((t) => t.step === r.step && t.point === r.point)!;
      const row = seen.before.subarray(seen.before.length - 64);
      expect(r.position).toBe(seen.positions.at(-1)!);
      expect(r.norm).toBeCloseTo(Math.hypot(...row), 4);
      expect(r.projections.e3).toBeCloseTo(row[3]!, 5);
    }
  });
  test("a registered direction with one vector per point is projected with each point's own vector; a point it lacks is refused", async () => {
    const artifacts = createArtifacts().register("dog", directionArtifact, { path: "models/directions/stories260K-dog/dog.safetensors" });
    const dog = await artifacts.load(directionArtifact, "dog");
    const records: LogRecord[] = [];
    const run = await runPlugin(logger({ points: ["resid_post.1", "resid_post.3"], directions: { dog: "dog" }, topK: 0, onRecord: (r) => records.push(r) }), { maxTokens: 3, artifacts });
    const residual = records.filter((r) => r.type === "residual");
    expect(residual.length).toBe(6);
    for (const r of residual) {
      const seen = run.residuals.find((t) => t.step === r.step && t.point === r.point)!;
      const row = seen.before.subarray(seen.before.length - 64);
      const u = dog.byPoint.get(r.point)!;
      const norm = Math.hypot(...u);
      expect(r.projections.dog).toBeCloseTo(row.reduce((s, x, i) => s + x * u[i]!, 0) / norm, 4);
    }
    // The two points' vectors differ, so the projections do too: each point used its own.
    expect(residual[0]!.projections.dog).not.toBeCloseTo(residual[1]!.projections.dog!, 2);
    expect(runPlugin(logger({ points: ["resid_post.4"], directions: { d: "dog" }, topK: 0, onRecord: () => {} }), { artifacts })).rejects.toThrow(
      'directions.d: direction "dog" has no vector for resid_post.4 (it has resid_post.1, resid_post.2, resid_post.3)',
    );
  });
  test("top-k logits are the largest, in order, with decoded text and probabilities", async () => {
    const records: LogRecord[] = [];
    const run = await runPlugin(logger({ points: [], topK: 4, onRecord: (r) => records.push(r) }), { maxTokens: 2 });
    const logits = records.filter((r) => r.type === "logits");
    expect(logits.length).toBe(2);
    const first = logits[0]!;
    expect(first.type === "logits" && first.top.map((t) => t.token)[0]).toBe(run.result.tokens[0]!);
    if (first.type !== "logits") throw new Error("unreachable");
    const sorted = [...run.logits[0]!.before].sort((a, b) => b - a).slice(0, 4);
    expect(first.top.map((t) => t.logit)).toEqual(sorted);
    expect(first.top[0]!.prob).toBeGreaterThan(first.top[1]!.prob);
    expect(first.top[0]!.text).toBe(","); // the model continues "Once upon a time" with ","
  });
  test("writes JSONL to a file", async () => {
    const file = join(dir, "log.jsonl");
    await runPlugin(logger({ file, topK: 2 }), { maxTokens: 2 });
    const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l));
    expect(lines.filter((l) => l.type === "residual").length).toBe(2 * 5); // 2 passes x 5 block outputs
    expect(lines.filter((l) => l.type === "logits").length).toBe(2);
  });
  test("bad options name the field; a direction of the wrong width names the direction", async () => {
    expect(() => logger({ points: ["resid_post.x"] })).toThrow(OptionsError);
    expect(() => logger({ topK: -1 })).toThrow(/topK/);
    expect(runPlugin(logger({ directions: { short: [1, 2, 3] }, onRecord: () => {} }))).rejects.toThrow(`directions.short: has 3 values; the model's residual has 64`);
  });
  test("a logger with no sink is refused rather than writing to the console by default", async () => {
    expect(runPlugin(logger({ points: ["resid_post.0"] }))).rejects.toThrow('console: the logger has nowhere to write: set "file", "console": true or onRecord');
  });
});
