import { describe, expect, test } from "bun:test";
import { formatDuration, progressBar, renderProgress } from "../../src/cli/progress.ts";

describe("progressBar", () => {
  test("renders counts, percent, elapsed and an ETA from the rate so far", () => {
    expect(renderProgress("train", 25, 100, 10, "fvu 0.2", 8)).toBe("train [##------] 25/100 25% 10s eta 30s fvu 0.2");
    expect(renderProgress("train", 100, 100, 90, "", 4)).toBe("train [####] 100/100 100% 1m30s");
    expect(formatDuration(3725)).toBe("1h02m");
  });

  test("draws on a terminal (rate-limited, always the last state), stays silent on a pipe", () => {
    let t = 0;
    const written: string[] = [];
    const bar = progressBar(10, "x", { stream: { write: (s: string) => written.push(s), isTTY: true }, now: () => t, width: 2 });
    bar.tick(); // drawn (first)
    t = 50;
    bar.tick(); // within 100 ms: skipped
    t = 200;
    bar.tick(3, "info");
    bar.done();
    expect(written.length).toBe(3);
    expect(written[1]).toContain("5/10");
    expect(written[2]!.endsWith("\x1b[K\n")).toBe(true);
    const silent: string[] = [];
    const quiet = progressBar(10, "x", { stream: { write: (s: string) => silent.push(s), isTTY: false } });
    quiet.tick(10);
    quiet.done();
    expect(silent).toEqual([]);
  });
});
