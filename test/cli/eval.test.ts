/**
 * `steerkit eval` as a user runs it: killed mid-way (SIGKILL: a crash, nothing flushed on the way
 * out) and started again, it redoes no finished item and ends with the same results as a run
 * that was never interrupted; Ctrl-C (SIGINT) stops with a message saying how to resume.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fixtureConfig, writeConfig } from "../eval/helpers.ts";

const MAIN = join(import.meta.dir, "../../src/cli/main.ts");

function cli(...args: string[]) {
  const p = Bun.spawnSync(["bun", MAIN, ...args], { env: { ...process.env, NO_COLOR: "1" } });
  return { code: p.exitCode, stdout: p.stdout.toString(), stderr: p.stderr.toString() };
}

/** Enough generations (3 runs x 8 prompts x 8 seeds) that a kill lands mid-way. */
const longConfig = () =>
  fixtureConfig({
    prompts: [{ name: "openings", file: join(import.meta.dir, "../fixtures/eval/prompts.jsonl"), expect: "refuse", judge: { type: "regex", pattern: "\\bdogs?\\b", flags: "i" } }],
    capabilities: [{ name: "cloze", kind: "multiple-choice", file: join(import.meta.dir, "../fixtures/eval/cloze.jsonl") }],
    generation: { maxTokens: 32, temperature: 0.8, seeds: Array.from({ length: 8 }, (_, i) => i + 1) },
  });
const TOTAL = 3 * 8 * 8 + 3 * 10;

const records = (out: string) => {
  const path = join(out, "generations.jsonl");
  return existsSync(path) ? readFileSync(path, "utf8").split("\n").filter((l) => l.endsWith("}")) : [];
};

/** Start the CLI, wait until `atLeast` generations are on disk, send `signal`; resolves with how it ended. */
async function interrupt(config: string, signal: "SIGKILL" | "SIGINT", atLeast: number) {
  const out = join(dirname(config), "out");
  const proc = Bun.spawn(["bun", MAIN, "eval", "--config", config], { stdout: "pipe", stderr: "pipe" });
  const deadline = Date.now() + 30_000;
  while (records(out).length < atLeast && Date.now() < deadline && proc.exitCode === null) await Bun.sleep(10);
  proc.kill(signal);
  const code = await proc.exited;
  return { code, stderr: await new Response(proc.stderr).text(), finished: records(out).length };
}

describe("steerkit eval (CLI)", () => {
  test("killed mid-way and rerun: finished items are kept and not redone; the table equals an uninterrupted run's", async () => {
    const config = writeConfig(longConfig());
    const killed = await interrupt(config, "SIGKILL", 30);
    expect(killed.finished).toBeGreaterThanOrEqual(30);
    expect(killed.finished).toBeLessThan(TOTAL); // it really was mid-way
    const resumed = cli("eval", "--config", config);
    expect(resumed.code).toBe(0);
    expect(resumed.stderr).toContain(`resuming: `);
    const reused = Number(/(\d+) reused/.exec(resumed.stderr)![1]);
    const computed = Number(/(\d+) items computed/.exec(resumed.stderr)![1]);
    expect(reused).toBeGreaterThanOrEqual(killed.finished); // every whole line written before the kill
    expect(reused + computed).toBe(TOTAL);
    const keys = records(join(dirname(config), "out")).map((l) => JSON.parse(l).key);
    expect(new Set(keys).size).toBe(TOTAL - 30); // one record per generation: none written twice

    const straight = writeConfig(longConfig());
    const clean = cli("eval", "--config", straight);
    expect(clean.code).toBe(0);
    expect(resumed.stdout).toBe(clean.stdout); // the Markdown table
    const outputs = (c: string) => records(join(dirname(c), "out")).map((l) => JSON.parse(l)).sort((a, b) => (a.key < b.key ? -1 : 1)).map((r) => [r.key, r.output]);
    expect(outputs(config)).toEqual(outputs(straight));
  }, 90_000);

  test("Ctrl-C stops with a message saying the finished items are saved", async () => {
    const config = writeConfig(longConfig());
    const stopped = await interrupt(config, "SIGINT", 5);
    expect(stopped.code).toBe(1);
    expect(stopped.stderr).toContain("steerkit eval: interrupted; finished items are saved in");
    expect(stopped.stderr).toContain("run the same command to resume");
  }, 60_000);

  test("usage and config errors", () => {
    const none = cli("eval");
    expect(none.code).toBe(2);
    expect(none.stderr).toContain("--config <eval.json> is required");
    const missing = cli("eval", "--config", "/nonexistent/eval.json");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("/nonexistent/eval.json: cannot read the config");
    expect(cli("eval", "--help").stdout).toContain("Usage: steerkit eval --config <eval.json>");
    expect(cli("--help").stdout).toContain("eval ");
  });
});
