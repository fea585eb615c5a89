// The fuzzing campaign in the default test command: a few hundred structure-aware mutations per
// format (fixed seed, so a failure reproduces), each loaded in a worker process; no input may abort
// the worker or leave it without an answer. Then every saved regression input (inputs that once
// aborted llama.cpp or hung) is replayed. The long campaign is `bun run fuzz --count 10000`.
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { FORMATS, REGRESSIONS, replayRegressions, runCampaign } from "./campaign.ts";
import type { FuzzFormat } from "./worker.ts";

const COUNT = Number(process.env.STEERKIT_FUZZ_COUNT ?? 200);

describe("fuzzing: no input aborts or hangs the process", () => {
  for (const format of FORMATS) {
    test(`${COUNT} mutations of the ${format} seed: only loads (with finite logits) and clean errors`, async () => {
      const [stats] = Object.values(await runCampaign({ formats: [format], count: COUNT, jobs: 2, seed: 1, save: false }));
      expect(stats!.mutations).toBe(COUNT);
      expect({ aborts: stats!.aborts, hangs: stats!.hangs, unclean: stats!.uncleanMessages, misleading: stats!.misleadingMessages }).toEqual({
        aborts: 0,
        hangs: 0,
        unclean: [],
        misleading: [],
      });
      // The mutations reach past the first check: some load, some fail cleanly.
      expect(stats!.clean).toBeGreaterThan(0);
      expect(stats!.loaded).toBeGreaterThan(0);
    });
  }

  test("every saved regression input now fails cleanly or loads", async () => {
    const list = existsSync(REGRESSIONS)
      ? readdirSync(REGRESSIONS)
          .filter((n) => n.endsWith(".txt"))
          .map((n) => ({ name: n.slice(0, -4), format: readFileSync(join(REGRESSIONS, n), "utf8").split("\n")[0] as FuzzFormat }))
      : [];
    expect(list.length).toBeGreaterThan(0);
    expect(await replayRegressions(list)).toEqual([]);
  });
});
