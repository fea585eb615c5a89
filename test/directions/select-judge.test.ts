/**
 * Direction selection with a judge on generated text (stories260K, the dog demonstration): the
 * judged rates move the expected way, the scores do not change, the rule filters and ranks by the
 * rates, a user-module judge reads what `generate` writes, a judge that throws keeps the finished
 * candidates, bad input is refused; the same on ONNX after `steerkit convert`; the CLI's flags.
 */
import { afterAll, describe, expect, expectTypeOf, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import type { Model } from "../../src/core/backend.ts";
import { generate } from "../../src/core/generate.ts";
import type { Direction } from "../../src/directions/artifact.ts";
import { SelectionError, selectDirections, selectionMarkdown, selectRunCount, type JudgedGeneration, type SelectOptions, type Selection, type SelectRow } from "../../src/directions/select.ts";
import { selectionJudge, type SelectJudge, type SelectionJudge } from "../../src/directions/select-judge.ts";
import type { Judge, JudgeInput } from "../../src/eval/judges.ts";
import { ablateDirection, addVector } from "../../src/plugins/steering.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { D, dogFixture } from "./dog-fixture.ts";

const { dog, setA, setB, model, DOG_TOKEN } = await dogFixture();
const DOG_JUDGE = { type: "regex", pattern: "\\bdogs?\\b", flags: "i" } as const;
const dir = mkdtempSync(join(tmpdir(), "steerkit-select-judge-"));
afterAll(() => {
  model.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const base = { setA, setB, tokenIds: [DOG_TOKEN], maxKl: 1 };
const scores = (s: Selection) => s.rows.map((r) => [r.point, r.bypass, r.induce, r.kl]).sort();
/** The shipped dog direction, its resid_post.2 vector times 3 (strong enough that addition makes B's stories name a dog) and a random vector of that norm. */
function planted(): Direction {
  const real = dog.byPoint.get("resid_post.2")!;
  const strong = real.map((x) => 3 * x);
  let s = 5;
  const r = Float32Array.from({ length: 64 }, () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5);
  const k = Math.hypot(...strong) / Math.hypot(...r);
  return { vector: null, width: 64, byPoint: new Map([["resid_post.1", r.map((x) => x * k)], ["resid_post.2", strong], ["resid_post.3", dog.byPoint.get("resid_post.3")!]]) };
}

describe("selectDirections with a judge", () => {
  test("the dog file: ablation stops the stories naming the dog; scores unchanged; the default rule wants addition to show in the text", async () => {
    const progress: [number, number][] = [];
    const judged = await selectDirections(model, dog, { ...base, judge: DOG_JUDGE, onProgress: (d, t) => progress.push([d, t]) });
    const plain = await selectDirections(model, dog, base);
    // The score comes from the first step's logits either way.
    expect(scores(judged)).toEqual(scores(plain));
    expect(judged.baseline).toEqual(plain.baseline);
    expect(judged.judge).toEqual({ name: "regex(/\\bdogs?\\b/i)", tokens: 24, prompts: { a: 12, b: 12 }, baseline: { a: expect.any(Number), b: expect.any(Number) }, minInduceRate: null });
    // Unsteered, most dog stories go on about the dog and no other story turns to one.
    expect(judged.judge!.baseline.a).toBeGreaterThanOrEqual(0.75);
    expect(judged.judge!.baseline.b).toBe(0);
    for (const r of judged.rows) expect(r.bypassRate!).toBeLessThan(judged.judge!.baseline.a / 2);
    // The raw difference of means added at one layer raises p(" dog") but does not make 24 greedy tokens say it:
    // with the default rule (induce rate above B's baseline) every candidate is filtered, and says why.
    for (const r of judged.rows) expect(r).toMatchObject({ rank: null, induceRate: 0, filtered: "induce rate <= baseline" });
    // The progress bar's total is exact, and reached.
    const total = selectRunCount(dog, 12, 12, model.info.nLayers, 0.8, 24);
    expect(total).toBe(24 * 24 + 3 * (24 * 24 + 12));
    expect(progress.at(-1)).toEqual([total, total]);
    // minInduceRate 0 keeps them: all bypass rates tie, so the score ranks them as without a judge.
    const loose = await selectDirections(model, dog, { ...base, judge: DOG_JUDGE, minInduceRate: 0 });
    expect(loose.rows.map((r) => [r.rank, r.point])).toEqual(plain.rows.map((r) => [r.rank, r.point]));
    expect(loose.rows.map((r) => r.bypassRate)).toEqual(judged.rows.map((r) => r.bypassRate).sort());
  });

  test("a planted candidate: the rates move the expected way for the selected one, and rank it", async () => {
    const s = await selectDirections(model, planted(), { ...base, judge: DOG_JUDGE });
    const [best, ...rest] = s.rows;
    expect(best).toMatchObject({ rank: 1, point: "resid_post.2", filtered: null });
    expect(best!.bypassRate!).toBeLessThan(s.judge!.baseline.a);
    expect(best!.induceRate!).toBeGreaterThan(s.judge!.baseline.b);
    expect(best!.induceRate!).toBeGreaterThanOrEqual(0.25);
    // The random vector does not remove the dog: most of A still names it.
    const random = rest.find((r) => r.point === "resid_post.1")!;
    expect(random.bypassRate!).toBeGreaterThan(0.5);
    // Markdown: the rates as counts beside the scores, the rule spelled out.
    const md = selectionMarkdown(s).split("\n");
    expect(md[1]).toMatch(/^Judge: regex\(\/\\bdogs\?\\b\/i\) on 24 greedy tokens per prompt; rate without steering \(judged refused\): A \d+\/12, B 0\/12$/);
    expect(md[2]).toBe("Kept: induce > baseline, induce rate > B's baseline rate (or 1), KL below the bound; ranked by bypass rate, then bypass score.");
    expect(md[4]).toBe("| rank | point | bypass (A, ablated) | bypass rate (A, ablated) | induce (B, added) | induce rate (B, added) | KL (B, ablated) | filtered |");
    expect(md[6]).toStartWith(`| 1 | resid_post.2 | ${Number(best!.bypass!.toPrecision(4))} | ${Math.round(best!.bypassRate! * 12)}/12 | `);
    expect(JSON.parse(JSON.stringify(s))).toEqual(s);
  });

  test("onGeneration: every judged generation, in run order, and the rates are their counts", async () => {
    const seen: JudgedGeneration[] = [];
    const s = await selectDirections(model, planted(), { ...base, judge: DOG_JUDGE, judgeTokens: 8, onGeneration: (g) => seen.push(g) });
    const scored = s.rows.filter((r) => r.bypass !== null);
    expect(seen).toHaveLength(24 + scored.length * 24);
    expect(seen.slice(0, 24).map((g) => [g.set, g.steering, g.point])).toEqual([...setA.map(() => ["A", "none", null]), ...setB.map(() => ["B", "none", null])]);
    expect(seen[0]).toMatchObject({ id: "A1", prompt: setA[0], position: null });
    const refused = (f: (g: JudgedGeneration) => boolean) => seen.filter((g) => f(g) && g.refused).length;
    expect(refused((g) => g.set === "A" && g.steering === "none") / 12).toBe(s.judge!.baseline.a);
    for (const r of scored) {
      expect(refused((g) => g.steering === "ablated" && g.point === r.point) / 12).toBe(r.bypassRate!);
      expect(refused((g) => g.steering === "added" && g.point === r.point) / 12).toBe(r.induceRate!);
    }
    // What the judge read is what generate writes for the same prompt, unsteered.
    const first = await generate(model, { prompt: setA[0]!, maxTokens: 8, temperature: 0 });
    expect(seen[0]!.output).toBe(first.text);
    await expect(selectDirections(model, dog, { ...base, onGeneration: () => {} })).rejects.toThrow("judgeTokens, minInduceRate and onGeneration need a judge");
  });

  test("a user-module judge reads the prompt, the set and the steering, and sees exactly what generate writes", async () => {
    const path = join(dir, "dog-judge.ts");
    writeFileSync(path, [
      "export const seen = [];",
      "export function dogJudge(input) {",
      "  seen.push(input);",
      "  const n = (input.output.match(/\\bdogs?\\b/gi) ?? []).length;",
      "  return { refused: n > 0, note: `${n} mentions` };",
      "}",
    ].join("\n"));
    const direction = planted();
    const viaModule = await selectDirections(model, direction, { ...base, judge: { type: "module", path, export: "dogJudge" }, judgeTokens: 12 });
    const viaRegex = await selectDirections(model, direction, { ...base, judge: DOG_JUDGE, judgeTokens: 12 });
    expect(viaModule.judge!.name).toBe("module(dog-judge.ts#dogJudge)");
    expect({ ...viaModule, judge: { ...viaModule.judge!, name: "" } }).toEqual({ ...viaRegex, judge: { ...viaRegex.judge!, name: "" } });
    const { seen } = (await import(path)) as { seen: JudgeInput[] };
    // 12 + 12 unsteered, then (12 ablated + 12 added) per candidate.
    expect(seen).toHaveLength(24 + 3 * 24);
    const added = seen.find((i) => i.extra.steering === "added" && i.extra.point === "resid_post.2" && i.id === "B2")!;
    expect(added).toMatchObject({ prompt: setB[1], set: "B", expect: "comply", messages: [{ role: "user", content: setB[1] }], extra: { steering: "added", point: "resid_post.2", position: null, format: "text" } });
    const ablated = seen.find((i) => i.extra.steering === "ablated" && i.extra.point === "resid_post.2" && i.id === "A1")!;
    expect(ablated).toMatchObject({ prompt: setA[0], set: "A", expect: "refuse" });
    expect(seen.filter((i) => i.extra.steering === "none").map((i) => i.id)).toEqual([...setA.map((_, k) => `A${k + 1}`), ...setB.map((_, k) => `B${k + 1}`)]);
    // The generations are generate()'s own, greedy, with the same plugins.
    const vec = Array.from(direction.byPoint.get("resid_post.2")!);
    const opts = { maxTokens: 12, temperature: 0 } as const;
    expect(added.output).toBe((await generate(model, { ...opts, prompt: setB[1]!, plugins: [addVector({ vector: vec, points: ["resid_post.2"] })] })).text);
    expect(ablated.output).toBe((await generate(model, { ...opts, prompt: setA[0]!, plugins: [ablateDirection({ direction: vec, points: "all" })] })).text);
    expect(seen.find((i) => i.extra.steering === "none" && i.id === "A3")!.output).toBe((await generate(model, { ...opts, prompt: setA[2]! })).text);
  });

  test("a judge that throws: the error names the module and the prompt; the candidates finished before it are kept", async () => {
    const path = join(dir, "breaks.ts");
    writeFileSync(path, [
      "let calls = 0;",
      "export default function judge({ output, extra }) {",
      "  if (extra.point === 'resid_post.2' && extra.steering === 'added' && ++calls === 3) throw new Error('the classifier is down');",
      "  return /\\bdogs?\\b/i.test(output);",
      "}",
    ].join("\n"));
    const full = await selectDirections(model, dog, { ...base, judge: DOG_JUDGE, minInduceRate: 0, judgeTokens: 8 });
    const e = await selectDirections(model, dog, { ...base, judge: { type: "module", path }, minInduceRate: 0, judgeTokens: 8 }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(SelectionError);
    const err = e as SelectionError;
    expect(err.message).toBe(`select directions: judge module ${path} failed on set B prompt 3 (${JSON.stringify(setB[2])}, position mean, resid_post.2 added): the classifier is down`);
    const partial = err.partial!;
    expect(partial.incomplete).toBe(err.message.slice("select directions: ".length));
    const one = (s: Selection, p: string) => s.rows.find((r) => r.point === p)!;
    // resid_post.1 finished before: the same numbers as the full run, ranked among the finished.
    expect(one(partial, "resid_post.1")).toEqual({ ...one(full, "resid_post.1"), rank: 1 });
    for (const p of ["resid_post.2", "resid_post.3"]) expect(one(partial, p)).toMatchObject({ rank: null, bypass: null, bypassRate: null, filtered: "not scored" });
    expect(selectionMarkdown(partial)).toStartWith(`**Incomplete**: judge module ${path} failed on set B prompt 3`);
    // A judge answering something that is not a verdict is named the same way.
    const sloppy: Judge = () => "yes" as unknown as boolean;
    await expect(selectDirections(model, dog, { ...base, judge: sloppy })).rejects.toThrow(/judge function\(\w+\) failed on set A prompt 1 .*unsteered\): judge function\(\w+\) returned string; expected true\/false/);
  });

  test("bad input names the problem", async () => {
    await expect(selectDirections(model, dog, { ...base, judge: "nope" as SelectJudge })).rejects.toThrow(/judge: unknown judge "nope"/);
    await expect(selectDirections(model, dog, { ...base, judge: { type: "regex" } as unknown as SelectJudge })).rejects.toThrow(/judge: pattern: missing/);
    await expect(selectDirections(model, dog, { ...base, judge: { type: "module", path: join(dir, "absent.ts") } })).rejects.toThrow(/cannot import judge module .*absent\.ts/);
    await expect(selectDirections(model, dog, { ...base, judge: "refusal-substring", judgeTokens: 0 })).rejects.toThrow(/judgeTokens must be a whole number of tokens, at least 1 \(got 0\)/);
    await expect(selectDirections(model, dog, { ...base, judge: "refusal-substring", judgeTokens: 2.5 })).rejects.toThrow(/got 2\.5/);
    await expect(selectDirections(model, dog, { ...base, judge: "refusal-substring", minInduceRate: 1.5 })).rejects.toThrow(/minInduceRate is a fraction of prompts, 0 to 1 \(got 1\.5\)/);
    await expect(selectDirections(model, dog, { ...base, judgeTokens: 8 })).rejects.toThrow(/judgeTokens, minInduceRate and onGeneration need a judge/);
  });

  test("types: the judge option takes a config, a judge function or a built judge; rows gain optional rates", async () => {
    expectTypeOf<SelectOptions["judge"]>().toEqualTypeOf<SelectJudge | undefined>();
    expectTypeOf<Judge>().toMatchTypeOf<SelectJudge>();
    expectTypeOf<SelectionJudge>().toMatchTypeOf<SelectJudge>();
    expectTypeOf<{ type: "regex"; pattern: string }>().toMatchTypeOf<SelectJudge>();
    expectTypeOf<"refusal-substring">().toMatchTypeOf<SelectJudge>();
    expectTypeOf<"nope">().not.toMatchTypeOf<SelectJudge>();
    expectTypeOf<SelectRow["bypassRate"]>().toEqualTypeOf<number | null | undefined>();
    expectTypeOf<Selection["judge"]>().toMatchTypeOf<{ readonly baseline: { readonly a: number; readonly b: number } } | undefined>();
    const built = await selectionJudge("refusal-substring");
    expect(built.name).toBe("refusal-substring(both)");
    expect(await selectionJudge(built)).toBe(built);
  });
});

describe("on ONNX after steerkit convert", () => {
  test("the same rule through the ONNX backend's generate: rates move the expected way; scores as without a judge", async () => {
    await convertGgufToOnnx(DEFAULT_MODEL_PATH, join(dir, "onnx"));
    const m: Model = await onnx.load(join(dir, "onnx"), { contextLength: 128 });
    try {
      const o = { setA: setA.slice(0, 6), setB: setB.slice(0, 6), tokenIds: [DOG_TOKEN], maxKl: 1 };
      const s = await selectDirections(m, planted(), { ...o, judge: DOG_JUDGE, judgeTokens: 16 });
      expect(scores(s)).toEqual(scores(await selectDirections(m, planted(), o)));
      expect(s.rows[0]).toMatchObject({ rank: 1, point: "resid_post.2" });
      expect(s.rows[0]!.bypassRate!).toBeLessThan(s.judge!.baseline.a);
      expect(s.rows[0]!.induceRate!).toBeGreaterThan(s.judge!.baseline.b);
    } finally {
      m.dispose();
    }
  });
});

describe("steerkit directions select --judge", () => {
  const run = async (...args: string[]) => {
    const { main } = await import("../../src/cli/main.ts");
    const out: string[] = [];
    const log = console.log;
    const err = console.error;
    console.log = console.error = (...x: unknown[]) => void out.push(x.join(" "));
    try {
      return { code: await main(["directions", "select", `${D}dog.safetensors`, "--a", join(dir, "a.txt"), "--b", join(dir, "b.txt"), "--tokens", "dog", "--max-kl", "1", ...args]), out: out.join("\n") };
    } finally {
      console.log = log;
      console.error = err;
    }
  };

  test("writes the judged table the library computes; bad flags are refused; a failing judge leaves the finished rows", async () => {
    writeFileSync(join(dir, "a.txt"), setA.join("\n"));
    writeFileSync(join(dir, "b.txt"), setB.join("\n"));
    const ok = await run("--judge", "regex:/\\bdogs?\\b/i", "--judge-tokens", "8", "--min-induce-rate", "0", "--json", join(dir, "t.json"), "--md", join(dir, "t.md"));
    expect(ok.code).toBe(0);
    const lib = await selectDirections(model, dog, { ...base, judge: DOG_JUDGE, judgeTokens: 8, minInduceRate: 0 });
    expect(JSON.parse(readFileSync(join(dir, "t.json"), "utf8"))).toEqual(lib);
    expect(readFileSync(join(dir, "t.md"), "utf8")).toBe(selectionMarkdown(lib));
    const trail = await run("--judge", "regex:/\\bdogs?\\b/i", "--judge-tokens", "8", "--min-induce-rate", "0", "--generations", join(dir, "g.jsonl"));
    expect(trail.code).toBe(0);
    const lines = readFileSync(join(dir, "g.jsonl"), "utf8").trimEnd().split("\n").map((l) => JSON.parse(l) as JudgedGeneration);
    expect(lines).toHaveLength(24 + lib.rows.filter((r) => r.bypass !== null).length * 24);
    expect(lines.filter((g) => g.set === "A" && g.steering === "none" && g.refused).length / 12).toBe(lib.judge!.baseline.a);

    for (const [args, message] of [
      [["--judge", "nope"], /--judge: unknown judge "nope"/],
      [["--judge", "./missing-judge.ts"], /--judge: no judge module at .*missing-judge\.ts/],
      [["--judge", "refusal-substring:some"], /"some" is not a substring list/],
      [["--judge", "regex:"], /needs a pattern/],
      [["--judge", '{"type":"regex"'], /--judge: not a JSON judge object/],
      [["--judge", "refusal-substring", "--judge-tokens", "0"], /--judge-tokens must be an integer >= 1, got "0"/],
      [["--judge", "refusal-substring", "--judge-tokens", "1.5"], /--judge-tokens must be an integer >= 1, got "1.5"/],
      [["--judge-tokens", "4"], /--judge-tokens needs --judge/],
      [["--generations", join(dir, "x.jsonl")], /--generations needs --judge/],
      [["--judge", "refusal-substring", "--generations", join(dir, "no-such-dir", "g.jsonl")], /--generations: cannot write .*no-such-dir\/g\.jsonl \(ENOENT\)/],
      [["--judge", "refusal-substring", "--min-induce-rate", "2"], /--min-induce-rate must be a number >= 0 <= 1, got "2"/],
    ] as const) {
      const r = await run(...args);
      expect([args, r.code]).toEqual([args, 2]);
      expect(r.out).toMatch(message);
    }

    const path = join(dir, "cli-breaks.ts");
    writeFileSync(path, "export default ({ extra }) => { if (extra.point === 'resid_post.3') throw new Error('out of quota'); return false; };\n");
    const broken = await run("--judge", path, "--judge-tokens", "4", "--min-induce-rate", "0", "--json", join(dir, "p.json"));
    expect(broken.code).toBe(2);
    expect(broken.out).toContain(`judge module ${path} failed on set A prompt 1`);
    expect(broken.out).toContain(`the 2 candidate(s) finished before it are in ${join(dir, "p.json")}, marked incomplete`);
    const saved: Selection = JSON.parse(readFileSync(join(dir, "p.json"), "utf8"));
    expect(saved.incomplete).toMatch(/out of quota$/);
    expect(saved.rows.filter((r) => r.bypass !== null)).toHaveLength(2);
  });
});
