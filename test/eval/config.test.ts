/** The eval config: validation errors name file, field, expected and got; sweeps expand over recipe paths. */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEvalConfig, parseEvalConfig, setAtPath } from "../../src/eval/config.ts";

const base = {
  model: { path: "m.gguf" },
  prompts: [{ name: "unsafe", file: "unsafe.jsonl", expect: "refuse", judge: "refusal-substring" }],
  conditions: [{ name: "none" }],
  output: "out",
};

const fails = (config: unknown) => {
  try {
    parseEvalConfig(config, { source: "eval.json", baseDir: "/base" });
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error("expected an error");
};

describe("parseEvalConfig", () => {
  test("resolves paths against the config's directory and fills defaults", () => {
    const c = parseEvalConfig(base, { source: "eval.json", baseDir: "/base" });
    expect(c.model.path).toBe("/base/m.gguf");
    expect(c.prompts[0]!.file).toBe("/base/unsafe.jsonl");
    expect(c.prompts[0]!.judge).toEqual({ type: "refusal-substring", lists: "both", extra: [] });
    expect(c.output).toBe("/base/out");
    expect(c.generation).toEqual({ maxTokens: 64, temperature: 0, stop: [], seeds: [0], chat: "auto" });
    expect(c.onInvalidLine).toBe("stop");
    expect(c.onItemError).toBe("record");
    expect(c.runs).toEqual([{ id: "none", condition: "none", value: null, sweepPath: null, recipe: [] }]);
  });

  test("a sweep makes one run per value, with the value at the path and the rest of the recipe unchanged", () => {
    const recipe = [{ plugin: "sae-clamp", options: { sae: "s", latents: [{ index: 7, mode: "clamp", value: 1 }] } }];
    const c = parseEvalConfig({ ...base, conditions: [{ name: "none" }, { name: "clamp", recipe, sweep: { path: "0.options.latents.0.value", values: [0, 4, 8] } }] });
    expect(c.runs.map((r) => r.id)).toEqual(["none", "clamp=0", "clamp=4", "clamp=8"]);
    expect(c.runs[2]!.recipe).toEqual([{ plugin: "sae-clamp", options: { sae: "s", latents: [{ index: 7, mode: "clamp", value: 4 }] } }]);
    expect(c.runs[2]!.value).toBe(4);
    expect(recipe[0]!.options.latents[0]!.value).toBe(1); // the config's own recipe is not touched
  });

  test("sweeping a boolean (ablation on/off) and strings", () => {
    const c = parseEvalConfig({ ...base, conditions: [{ name: "abl", recipe: [{ plugin: "ablate-direction", options: { direction: "a" } }], sweep: { path: "0.options.direction", values: ["a", "b"] } }] });
    expect(c.runs.map((r) => r.id)).toEqual(["abl=a", "abl=b"]);
  });

  test("errors name the file, the field, what was expected and what was there", () => {
    expect(fails({ ...base, model: {} })).toContain('eval.json: invalid config:\n  - model.path: Invalid key: Expected "path" but received undefined');
    expect(fails({ ...base, prompts: [{ ...base.prompts[0], expect: "maybe" }] })).toContain('prompts.0.expect: expect: "refuse" or "comply"');
    expect(fails({ ...base, generation: { maxTokens: 0 } })).toContain("generation.maxTokens: Invalid value: Expected >=1 but received 0");
    expect(fails({ ...base, conditions: [] })).toContain("conditions: at least one condition");
    expect(fails({ ...base, outptu: "x" })).toContain("outptu: unknown field (a config takes model, artifacts, prompts,");
    expect(fails({ ...base, model: { path: "m", threds: 2 } })).toContain("model.threds: unknown field");
    expect(fails({ ...base, prompts: [{ ...base.prompts[0], judge: "llm" }] })).toContain('prompts.0.judge.type: a judge type: "refusal-substring", "regex" or "module" (got string "llm")');
    expect(fails({ ...base, prompts: [{ ...base.prompts[0], judge: { type: "regex" } }] })).toContain('prompts.0.judge.pattern: Invalid key: Expected "pattern" but received undefined');
    expect(fails({ ...base, prompts: [{ ...base.prompts[0], judge: { type: "regex", pattern: "x", flags: "g" } }] })).toContain("no g or y");
    expect(fails({ ...base, capabilities: [{ name: "c", kind: "trivia", file: "c.jsonl" }] })).toContain('kind: "multiple-choice" or "perplexity"');
  });

  test("names used twice, nothing to evaluate", () => {
    expect(fails({ ...base, capabilities: [{ name: "unsafe", kind: "perplexity", file: "p.jsonl" }] })).toContain('the name "unsafe" is used twice');
    expect(fails({ ...base, conditions: [{ name: "a" }, { name: "a" }] })).toContain('conditions: the name "a" is used twice');
    expect(fails({ ...base, prompts: [] })).toContain("nothing to evaluate");
  });

  test("a sweep path that is not in the recipe is refused, naming the missing part", () => {
    const recipe = [{ plugin: "add-vector", options: { vector: "v", scale: 1 } }];
    expect(fails({ ...base, conditions: [{ name: "add", recipe, sweep: { path: "0.options.scal", values: [1] } }] })).toContain(
      'eval.json: conditions[0].sweep.path "0.options.scal": recipe[0].options has no field "scal" (it has "vector", "scale")',
    );
    expect(fails({ ...base, conditions: [{ name: "add", recipe, sweep: { path: "1.options.scale", values: [1] } }] })).toContain('recipe is an array of 1; "1" is not an index');
    expect(fails({ ...base, conditions: [{ name: "add", recipe, sweep: { path: "0.options.scale.x", values: [1] } }] })).toContain("recipe[0].options.scale is number 1, so it has no \"x\"");
    expect(fails({ ...base, conditions: [{ name: "add", recipe, sweep: { path: "0.options.scale", values: [1, 1] } }] })).toContain("1 appears twice");
    expect(fails({ ...base, conditions: [{ name: "bad", recipe: { plugin: "x" } }] })).toContain("conditions[0].recipe: expected an array");
  });

  test("setAtPath copies", () => {
    const r = [{ plugin: "p", options: { a: [1, 2] } }];
    expect(setAtPath(r, "0.options.a.1", 9, "x")).toEqual([{ plugin: "p", options: { a: [1, 9] } }]);
    expect(r[0]!.options.a[1]).toBe(2);
  });
});

describe("loadEvalConfig", () => {
  const dir = mkdtempSync(join(tmpdir(), "steerkit-eval-config-"));
  test("a missing file, a directory, bad JSON", () => {
    expect(() => loadEvalConfig(join(dir, "nope.json"))).toThrow(`${join(dir, "nope.json")}: cannot read the config`);
    expect(() => loadEvalConfig(dir)).toThrow("cannot read the config");
    writeFileSync(join(dir, "bad.json"), "{ model: ");
    expect(() => loadEvalConfig(join(dir, "bad.json"))).toThrow("bad.json: not valid JSON");
  });
  test("relative paths resolve against the file's directory", () => {
    writeFileSync(join(dir, "eval.json"), JSON.stringify(base));
    expect(loadEvalConfig(join(dir, "eval.json")).prompts[0]!.file).toBe(join(dir, "unsafe.jsonl"));
  });
});
