/**
 * `runEval` end to end on the embedded model (llama.cpp and ONNX Runtime), over the committed
 * fixtures: the files it writes, a real effect of the steering it sweeps, determinism, resuming,
 * judges that throw, and bad input found before any work.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { loadEvalConfig } from "../../src/eval/config.ts";
import { runEval, type EvalOutcome } from "../../src/eval/runner.ts";
import { withChatTemplate } from "../helpers/chat-template-gguf.ts";
import { DOG, FIXTURES, fixtureConfig, writeConfig } from "./helpers.ts";

const lines = (path: string) => readFileSync(path, "utf8").trim().split("\n").map((l) => JSON.parse(l));
const run = (config: Record<string, unknown>, options = {}) => runEval(loadEvalConfig(writeConfig(config)), options);

describe("a full run (llama.cpp)", () => {
  let first: EvalOutcome;
  let path: string;
  beforeAll(async () => {
    path = writeConfig(fixtureConfig());
    first = await runEval(loadEvalConfig(path));
  }, 60_000);

  test("writes the audit file, the scores, the table in three forms and one plot per capability set", () => {
    const gens = lines(first.files.generations);
    expect(gens.length).toBe(3 * (8 + 3) * 2); // runs x prompts x seeds
    const g = gens.find((r) => r.run === "dog=0.3" && r.set === "chats" && r.id === "c3" && r.seed === 2)!;
    expect(g).toMatchObject({ type: "generation", condition: "dog", value: 0.3, expect: "comply", prompt: null, judge: "refusal-substring(both)" });
    expect(g.messages.length).toBe(3);
    expect(typeof g.output).toBe("string");
    expect(["refuse", "comply"]).toContain(g.verdict);
    expect(lines(first.files.scores).length).toBe(3 * (10 + 6));
    const md = readFileSync(first.files.markdown, "utf8");
    expect(md).toContain("| condition | value | openings: refusal (expect refuse) | chats: refusal (expect comply) | cloze: accuracy | cloze: accuracy (per char) | stories: perplexity |");
    expect(md).toContain("95% percentile bootstrap over prompts");
    expect(readFileSync(first.files.csv, "utf8").split("\n")[0]).toBe("run,condition,value,set,metric,n,errors,score,ci_low,ci_high,ci_method");
    expect(JSON.parse(readFileSync(first.files.json, "utf8")).rows.length).toBe(3);
    expect(first.files.plots.map((p) => p.split("/").pop())).toEqual(["tradeoff-cloze.svg", "tradeoff-stories.svg"]);
    const svg = readFileSync(first.files.plots[1]!, "utf8");
    for (const s of ["stories: perplexity (lower is better", "refusal rate (judged)", ">none<", "sweep: 0.options.scale", "openings (expect refuse)", "chats (expect comply)"]) expect(svg).toContain(s);
    expect(first.computed).toBe(66 + 48);
    expect(first.resumed).toBe(0);
  }, 60_000);

  test("the swept steering has its effect: more dog stories, worse perplexity", () => {
    const [none, , strong] = first.report.rows;
    const rate = (r: typeof none) => r!.behaviour[0]!.rate;
    const ppl = (r: typeof none) => r!.capability[1]!.value;
    expect(rate(strong)).toBeGreaterThan(rate(none) + 0.3);
    expect(ppl(strong)).toBeGreaterThan(ppl(none) * 1.5);
    expect(none!.capability[0]!.value).toBeGreaterThanOrEqual(0.9); // the base model gets the cloze items right
  }, 60_000);

  test("the same config in a new directory gives the same generations and table (deterministic for the seeds)", async () => {
    const again = await run(fixtureConfig());
    const strip = (r: Record<string, unknown>) => ({ key: r.key, output: r.output, verdict: r.verdict });
    expect(lines(again.files.generations).map(strip)).toEqual(lines(first.files.generations).map(strip));
    expect(readFileSync(again.files.markdown, "utf8")).toBe(readFileSync(first.files.markdown, "utf8"));
  }, 60_000);

  test("run again in place: nothing is redone; a new condition (with a new artifact) runs only its own items", async () => {
    const config = loadEvalConfig(path);
    const again = await runEval(config);
    expect(again.computed).toBe(0);
    expect(again.resumed).toBe(114);
    expect(readFileSync(again.files.markdown, "utf8")).toBe(readFileSync(first.files.markdown, "utf8"));
    const more = fixtureConfig({ artifacts: { dog: { kind: "direction", path: DOG }, dog2: { kind: "direction", path: DOG } } });
    (more.conditions as unknown[]).push({ name: "ablate", recipe: [{ plugin: "ablate-direction", options: { direction: "dog2", points: ["resid_post.1-3"] } }] });
    writeFileSync(path, JSON.stringify(more));
    const extended = await runEval(loadEvalConfig(path));
    expect(extended.computed).toBe(22 + 16);
    expect(extended.resumed).toBe(114);
    expect(extended.report.rows.map((r) => r.run)).toEqual(["none", "dog=0.1", "dog=0.3", "ablate"]);
  }, 60_000);
});

describe("items that fail", () => {
  const flaky = (onItemError: string) =>
    fixtureConfig({
      prompts: [{ name: "openings", file: join(FIXTURES, "prompts.jsonl"), expect: "refuse", judge: { type: "module", path: join(FIXTURES, "judges.ts"), export: "flaky" } }],
      capabilities: [],
      conditions: [{ name: "none" }],
      generation: { maxTokens: 8, seeds: [1] },
      onItemError,
    });

  test("a judge that throws is recorded as an error for that item; the run goes on and the table counts it", async () => {
    const warnings: string[] = [];
    const out = await run(flaky("record"), { onWarning: (m: string) => warnings.push(m) });
    const p3 = lines(out.files.generations).find((r) => r.id === "p3")!;
    expect(p3.verdict).toBe("error");
    expect(p3.error).toContain("judge module(judges.ts#flaky) threw: judge bug on p3");
    expect(typeof p3.output).toBe("string"); // the generation is kept for the audit
    expect(out.errors).toBe(1);
    expect(out.report.rows[0]!.behaviour[0]).toMatchObject({ n: 7, errors: 1 });
    expect(readFileSync(out.files.markdown, "utf8")).toContain("(1 errors)");
    expect(warnings.some((w) => w.includes("none openings p3: judge"))).toBe(true);
  }, 60_000);

  test('onItemError "stop" stops at the failing item with everything before it saved; a rerun reuses it and retries the failure', async () => {
    const path = writeConfig(flaky("stop"));
    await expect(runEval(loadEvalConfig(path))).rejects.toThrow('none openings p3: judge module(judges.ts#flaky) threw: judge bug on p3 (recorded in');
    const saved = lines(join(dirname(path), "out", "generations.jsonl"));
    expect(saved.map((r) => r.id)).toEqual(["p1", "p2", "p3"]);
    writeFileSync(path, JSON.stringify(flaky("record")));
    const again = await runEval(loadEvalConfig(path));
    expect(again.resumed).toBe(2);
    expect(again.computed).toBe(6); // p3 retried, p4-p8 new
  }, 60_000);

  test("a prompt longer than the context is an error for that item, not the run", async () => {
    const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-long-"));
    writeFileSync(join(dir, "long.jsonl"), `{"id": "ok", "prompt": "Once upon a time"}\n{"id": "long", "prompt": "${"dog ".repeat(400)}"}\n`);
    const out = await run(fixtureConfig({
      model: { path: DEFAULT_MODEL_PATH, threads: 1, contextLength: 128 },
      prompts: [{ name: "p", file: join(dir, "long.jsonl"), expect: "refuse", judge: "refusal-substring" }],
      capabilities: [],
      conditions: [{ name: "none" }],
      generation: { maxTokens: 8 },
    }));
    const long = lines(out.files.generations).find((r) => r.id === "long")!;
    expect(long.verdict).toBe("error");
    expect(long.error).toContain("generation failed: the prompt has");
    expect(out.report.rows[0]!.behaviour[0]).toMatchObject({ n: 1, errors: 1 });
  }, 60_000);
});

describe("chat templates", () => {
  test('"auto" renders single prompts with the model\'s template when it has one; multiple choice stays plain unless the set asks', async () => {
    const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-chat-"));
    const model = join(dir, "chat.gguf");
    writeFileSync(model, withChatTemplate("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"));
    const config = (chat: unknown, mcChat: boolean) =>
      fixtureConfig({
        model: { path: model, threads: 1 },
        prompts: [{ name: "openings", file: join(FIXTURES, "prompts.jsonl"), expect: "refuse", judge: "refusal-substring", limit: 3 }],
        capabilities: [{ name: "cloze", kind: "multiple-choice", file: join(FIXTURES, "cloze.jsonl"), limit: 3, chat: mcChat }],
        conditions: [{ name: "none" }],
        generation: { maxTokens: 12, seeds: [1], chat },
      });
    const outputs = (o: EvalOutcome) => lines(o.files.generations).map((r) => r.output);
    const logprobs = (o: EvalOutcome) => lines(o.files.scores).map((r) => r.logprobs);
    const auto = await run(config("auto", false));
    const plain = await run(config(false, false));
    const templated = await run(config(true, true));
    expect(outputs(auto)).toEqual(outputs(templated));
    expect(outputs(auto)).not.toEqual(outputs(plain));
    expect(logprobs(auto)).toEqual(logprobs(plain));
    expect(logprobs(templated)).not.toEqual(logprobs(plain));
  }, 60_000);
});

describe("bad input is found before any work", () => {
  const fails = async (config: Record<string, unknown>) => {
    const path = writeConfig(config);
    const e = await runEval(loadEvalConfig(path)).then(() => null, (x: Error) => x);
    expect(e).not.toBeNull();
    return { message: e!.message, dir: dirname(path) };
  };
  test("a missing model, set file or artifact names the field", async () => {
    expect((await fails(fixtureConfig({ model: { path: "nope.gguf" } }))).message).toMatch(/eval\.json: model\.path: .*nope\.gguf does not exist/);
    expect((await fails(fixtureConfig({ prompts: [{ name: "x", file: "missing.jsonl", expect: "refuse", judge: "refusal-substring" }] }))).message).toMatch(/missing\.jsonl: cannot read the prompt set/);
    expect((await fails(fixtureConfig({ artifacts: { dog: { kind: "direction", path: "dog.json" } } }))).message).toMatch(/artifacts\.dog\.path: .*dog\.json does not exist/);
  }, 60_000);
  test("an unknown plugin, an artifact no one registered, bad plugin options: named by condition; no output written", async () => {
    const cond = (recipe: unknown) => fixtureConfig({ conditions: [{ name: "none" }, { name: "bad", recipe }] });
    const unknown = await fails(cond([{ plugin: "add-vektor", options: {} }]));
    expect(unknown.message).toContain('eval.json: condition "bad": unknown plugin "add-vektor"');
    expect(await Bun.file(join(unknown.dir, "out", "generations.jsonl")).exists()).toBe(false);
    expect((await fails(cond([{ plugin: "add-vector", options: { vector: "cat", scale: 1 } }]))).message).toContain('condition "bad"');
    expect((await fails(cond([{ plugin: "add-vector", options: { vector: "dog", scale: "big" } }]))).message).toMatch(/condition "bad": [^]*scale: Invalid type: Expected number but received "big"/);
  }, 60_000);
});

describe("ONNX Runtime", () => {
  const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-onnx-"));
  beforeAll(() => convertGgufToOnnx(DEFAULT_MODEL_PATH, dir), 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test("the same greedy eval on the converted model agrees with llama.cpp", async () => {
    const greedy = (model: Record<string, unknown>) => fixtureConfig({ model, generation: { maxTokens: 24, temperature: 0 } });
    const onnxRun = await run(greedy({ path: dir, backend: "onnx", threads: 1 }));
    const llamaRun = await run(greedy({ path: DEFAULT_MODEL_PATH, threads: 1 }));
    expect(onnxRun.report.model.backend).toBe("onnx");
    const outputs = (o: EvalOutcome) => lines(o.files.generations).map((r) => r.output);
    const a = outputs(onnxRun);
    const b = outputs(llamaRun);
    const same = a.filter((x, i) => x === b[i]).length;
    expect(same / a.length).toBeGreaterThanOrEqual(0.9); // greedy tokens match; llama.cpp's F16 KV cache may flip a near-tie
    onnxRun.report.rows.forEach((row, i) => {
      const other = llamaRun.report.rows[i]!;
      expect(row.capability[0]!.value).toBe(other.capability[0]!.value);
      expect(Math.abs(row.capability[1]!.value / other.capability[1]!.value - 1)).toBeLessThan(0.01);
    });
  }, 60_000);
});
