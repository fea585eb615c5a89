/** Intervals (Wilson, seeded bootstrap) and the append-only results store (torn tails, hashes, foreign files). */
import { describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bootstrap, sum, wilson } from "../../src/eval/stats.ts";
import { lockOutput, openResultsStore, resultKey } from "../../src/eval/store.ts";

describe("wilson", () => {
  test("matches the closed form at known points", () => {
    // 95% Wilson for 0/20: [0, 0.1611]; 10/20: [0.2993, 0.7007]; 20/20: [0.8389, 1].
    const close = (a: number, b: number) => expect(Math.abs(a - b)).toBeLessThan(1e-4);
    close(wilson(0, 20).high, 0.1611);
    expect(wilson(0, 20).low).toBe(0);
    close(wilson(10, 20).low, 0.2993);
    close(wilson(10, 20).high, 0.7007);
    close(wilson(20, 20).low, 0.8389);
    expect(wilson(20, 20).high).toBe(1);
    expect(wilson(0, 0).low).toBeNaN();
  });
});

describe("bootstrap", () => {
  const xs = Array.from({ length: 40 }, (_, i) => ({ v: (i * 37) % 11 }));
  const mean = (s: readonly { v: number }[]) => sum(s, "v") / s.length;
  test("is deterministic for a seed and brackets the statistic", () => {
    const a = bootstrap(xs, mean, { seed: 7 });
    expect(bootstrap(xs, mean, { seed: 7 })).toEqual(a);
    expect(a.low).toBeLessThan(mean(xs));
    expect(a.high).toBeGreaterThan(mean(xs));
    expect(bootstrap(xs, mean, { seed: 8 })).not.toEqual(a);
  });
  test("a constant sample has a zero-width interval; an empty one has none", () => {
    expect(bootstrap([{ v: 2 }, { v: 2 }], mean)).toEqual({ low: 2, high: 2, method: "bootstrap" });
    expect(bootstrap([], mean).low).toBeNaN();
  });
});

describe("results store", () => {
  const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-store-"));

  test("records survive reopening; get checks the hash; the newest record of a key wins", () => {
    const path = join(dir, "a.jsonl");
    const s = openResultsStore(path);
    s.append({ key: resultKey("none", "set", "i1", 0), hash: "h1", output: "one" });
    s.append({ key: resultKey("none", "set", "i2", 0), hash: "h1", output: "two" });
    s.append({ key: resultKey("none", "set", "i1", 0), hash: "h2", output: "one again" });
    s.close();
    const t = openResultsStore(path);
    expect(t.get("none|set|i1|0", "h2")?.output).toBe("one again");
    expect(t.get("none|set|i1|0", "h1")).toBeUndefined(); // superseded
    expect(t.get("none|set|i2|0", "h1")?.output).toBe("two");
    expect(t.get("none|set|i2|0", "other")).toBeUndefined();
    expect(t.dropped).toBe(0);
    t.close();
  });

  test("a torn last line (a write cut by a kill) is dropped and the next record starts a fresh line", () => {
    const path = join(dir, "b.jsonl");
    const s = openResultsStore(path);
    s.append({ key: "k1", hash: "h" });
    s.close();
    appendFileSync(path, '{"key":"k2","hash":"h","out');
    const t = openResultsStore(path);
    expect(t.dropped).toBe(1);
    expect(t.get("k2", "h")).toBeUndefined();
    t.append({ key: "k2", hash: "h" });
    t.close();
    expect(readFileSync(path, "utf8")).toBe('{"key":"k1","hash":"h"}\n{"key":"k2","hash":"h"}\n');
  });

  test("a file that is not a results file is refused, not overwritten", () => {
    const path = join(dir, "c.jsonl");
    writeFileSync(path, "hello\n");
    expect(() => openResultsStore(path)).toThrow(`${path}:1: not a results record (not JSON)`);
    writeFileSync(path, '{"a": 1}\n');
    expect(() => openResultsStore(path)).toThrow('no "key" and "hash"');
    expect(readFileSync(path, "utf8")).toBe('{"a": 1}\n');
  });
});

describe("output lock", () => {
  test("one run per directory; released on exit; a dead owner's lock is taken over", () => {
    const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-lock-"));
    const release = lockOutput(dir);
    expect(() => lockOutput(dir)).toThrow(`${dir}: another steerkit eval (this process) is writing to this output directory`);
    release();
    lockOutput(dir)();
    const dead = Bun.spawnSync(["true"]).pid; // exited: its pid is no longer a process
    writeFileSync(join(dir, ".steerkit-eval.lock"), String(dead));
    const again = lockOutput(dir);
    expect(readFileSync(join(dir, ".steerkit-eval.lock"), "utf8")).toBe(String(process.pid));
    again();
  });
});
