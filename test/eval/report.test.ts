/** The table and the plot from records: rates, errors left out, intervals, CSV quoting, empty cells. */
import { expect, test } from "bun:test";
import type { Run } from "../../src/eval/config.ts";
import { tradeoffSvg } from "../../src/eval/plot.ts";
import { buildReport, reportCsv, reportMarkdown, type ResultRecord } from "../../src/eval/report.ts";

const runs: Run[] = [
  { id: "none", condition: "none", value: null, sweepPath: null, recipe: [] },
  { id: "clamp=4", condition: "clamp", value: 4, sweepPath: "0.options.value", recipe: [] },
  { id: 'odd,"name"', condition: 'odd,"name"', value: null, sweepPath: null, recipe: [] },
];
const gen = (run: string, id: string, verdict: "refuse" | "comply" | "error", seed = 0): ResultRecord => ({ type: "generation", key: `${run}|u|${id}|${seed}`, hash: "h", run, set: "unsafe", id, seed, verdict, ...(verdict === "error" ? { error: "boom" } : {}) });
const mc = (run: string, id: string, predicted: number): ResultRecord => ({ type: "multiple-choice", key: `${run}|mc|${id}|-`, hash: "h", run, set: "mc", id, answer: 0, predicted, predictedPerChar: 0, predictedPerToken: predicted });
const records: ResultRecord[] = [
  ...["a", "b", "c", "d"].map((id, i) => gen("none", id, i === 0 ? "refuse" : "comply")),
  ...["a", "b", "c"].map((id) => gen("clamp=4", id, "refuse")),
  gen("clamp=4", "d", "error"),
  mc("none", "q1", 0), mc("none", "q2", 0), mc("clamp=4", "q1", 1), mc("clamp=4", "q2", 0),
];
const report = buildReport({
  model: { path: "m.gguf", backend: "llama-cpp", name: "m" },
  seeds: [0],
  runs,
  prompts: [{ name: "unsafe", expect: "refuse" }],
  capabilities: [{ name: "mc", kind: "multiple-choice", normalize: "chars" }],
  records,
  skippedLines: { unsafe: 2, mc: 0 },
});

test("rates leave errors out and count them; accuracy and its normalised variant", () => {
  const [none, clamp, odd] = report.rows;
  expect(none!.behaviour[0]).toMatchObject({ n: 4, refused: 1, errors: 0, rate: 0.25 });
  expect(none!.behaviour[0]!.ci.method).toBe("wilson");
  expect(clamp!.behaviour[0]).toMatchObject({ n: 3, refused: 3, errors: 1, rate: 1 });
  expect(clamp!.capability[0]).toMatchObject({ metric: "accuracy", n: 2, value: 0.5, normalized: { by: "chars", value: 1 } });
  expect(odd!.behaviour[0]!.n).toBe(0);
  expect(odd!.behaviour[0]!.rate).toBeNaN();
});

test("Markdown: one row per run, errors and skipped lines shown, empty cells as a dash", () => {
  const md = reportMarkdown(report);
  expect(md).toContain("| condition | value | unsafe: refusal (expect refuse) | mc: accuracy | mc: accuracy (per char) |");
  expect(md).toContain("| clamp | 4 | 100.0% [43.9%, 100.0%] (1 errors) | 50.0% [9.5%, 90.5%] | 100.0% [34.2%, 100.0%] |");
  expect(md).toContain('| odd,"name" |  | — | — | — |');
  expect(md).toContain("Invalid lines skipped: unsafe 2.");
  expect(md).toContain("95% Wilson score intervals over prompts");
});

test("CSV: long format, quoted where needed, empty numbers for empty cells", () => {
  const csv = reportCsv(report).trim().split("\n");
  expect(csv[0]).toBe("run,condition,value,set,metric,n,errors,score,ci_low,ci_high,ci_method");
  const row = csv.find((l) => l.startsWith("none,none,,unsafe,refusal_rate,4,0,0.25,"))!.split(",");
  // Wilson 95% for 1 of 4: [0.0456, 0.6994]
  expect(Math.abs(Number(row[8]) - 0.0456)).toBeLessThan(1e-4);
  expect(Math.abs(Number(row[9]) - 0.6994)).toBeLessThan(1e-4);
  expect(row[10]).toBe("wilson");
  expect(csv.find((l) => l.startsWith("clamp=4,clamp,4,mc,accuracy_per_char,"))).toBeDefined();
  expect(csv).toContain('"odd,""name""","odd,""name""",,unsafe,refusal_rate,0,0,,,,wilson');
});

test("several seeds: the refusal interval is a bootstrap over prompts", () => {
  const multi = buildReport({
    model: { path: "m", backend: "b", name: "m" },
    seeds: [0, 1],
    runs: runs.slice(0, 1),
    prompts: [{ name: "unsafe", expect: "refuse" }],
    capabilities: [],
    records: ["a", "b", "c"].flatMap((id) => [gen("none", id, "refuse", 0), gen("none", id, id === "a" ? "refuse" : "comply", 1)]),
  });
  expect(multi.rows[0]!.behaviour[0]).toMatchObject({ n: 6, refused: 4 });
  expect(multi.rows[0]!.behaviour[0]!.ci.method).toBe("bootstrap");
  expect(reportMarkdown(multi)).toContain("bootstrap over prompts (each with all its seeds)");
});

test("the plot: one per capability set, labelled axes and legend, nothing for an unknown set", () => {
  const svg = tradeoffSvg(report, "mc")!;
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg.trim().endsWith("</svg>")).toBe(true);
  for (const s of ["mc: accuracy (higher is better)", "refusal rate (judged)", "unsafe (expect refuse)", "sweep: 0.options.value", "odd,&quot;name&quot;"]) expect(svg).toContain(s);
  expect(svg).not.toContain("NaN");
  expect(tradeoffSvg(report, "nope")).toBeNull();
});
