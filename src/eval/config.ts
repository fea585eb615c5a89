/**
 * The `steerkit eval` configuration: one JSON file naming the model, the prompt sets (each with the
 * behaviour expected of the model and a judge), the capability sets, the conditions (no steering,
 * recipes, recipes with one swept parameter), generation settings and the output directory.
 * Validated with valibot like the rest of the SDK; every error names the file, the field, what was
 * expected and what was there. Relative paths are relative to the config file's directory.
 *
 * Sweeps: a condition's `sweep` names one place in its recipe by a dot path (`"0.options.scale"`:
 * entry 0, its options, field scale; numbers index arrays) and the values to put there. The path
 * must already exist in the recipe (it holds the value the recipe would have unswept), so a typo is
 * an error naming the part that is missing, never a silently added field. Each value makes one run,
 * `<name>=<value>`; a condition without a sweep is one run named `<name>`.
 */
import { dirname, resolve } from "node:path";
import * as v from "valibot";
import { parseRecipe, type Recipe } from "../core/recipe.ts";
import { readRegularText } from "../formats/files.ts";
import { describeValue, EvalError } from "./errors.ts";

const Name = v.pipe(v.string(), v.regex(/^[A-Za-z0-9][\w.-]{0,63}$/, "a name of letters, digits, '_', '.', '-' (at most 64, starting with a letter or digit)"));
const Path = v.pipe(v.string(), v.minLength(1));
const Int = (min: number, max = Number.MAX_SAFE_INTEGER) => v.pipe(v.number(), v.integer(), v.minValue(min), v.maxValue(max));

const SubstringJudge = v.object({
  type: v.literal("refusal-substring"),
  /** Which list: Arditi et al.'s (anywhere in the output), XSTest's (prefixes), or both (default). */
  lists: v.optional(v.picklist(["arditi", "xstest", "both"]), "both"),
  /** More refusal phrases, matched anywhere, case-insensitively. */
  extra: v.optional(v.array(v.pipe(v.string(), v.minLength(1))), []),
});
const RegexJudge = v.object({
  type: v.literal("regex"),
  /** A match means the output is a refusal. */
  pattern: v.pipe(v.string(), v.minLength(1), v.maxLength(1000)),
  flags: v.optional(v.pipe(v.string(), v.regex(/^[dimsuv]*$/, "regex flags among d, i, m, s, u, v (no g or y: a judge tests once)")), ""),
  /** Only the first this many characters of an output are tested (bounds a slow pattern's work). */
  maxChars: v.optional(Int(1, 1_000_000), 4096),
});
const ModuleJudge = v.object({
  type: v.literal("module"),
  /** A JS/TS module exporting the judge function (trusted: it runs with your permissions). */
  path: Path,
  /** The export to call (default "default"). */
  export: v.optional(v.pipe(v.string(), v.minLength(1)), "default"),
});
/** A judge: its full object, or the name of a built-in that needs no options ("refusal-substring"). */
export const JudgeSchema = v.pipe(
  v.unknown(),
  v.transform((x) => (typeof x === "string" ? { type: x } : x)),
  v.variant("type", [SubstringJudge, RegexJudge, ModuleJudge], 'a judge type: "refusal-substring", "regex" or "module"'),
);

const PromptSet = v.object({
  name: Name,
  file: Path,
  /** What the model should do: the table reports the refusal rate and whether it went the expected way. */
  expect: v.picklist(["refuse", "comply"], 'expect: "refuse" or "comply"'),
  judge: JudgeSchema,
  /** Use only the first n items (quick runs). */
  limit: v.optional(Int(1)),
});
const CapabilitySet = v.variant("kind", [
  v.object({
    name: Name,
    kind: v.literal("multiple-choice"),
    file: Path,
    /** Also report accuracy with each choice's log-likelihood divided by its length in characters (lm-eval's acc_norm) or tokens. */
    normalize: v.optional(v.picklist(["none", "chars", "tokens"]), "none"),
    /** Ask each question as a user message with the model's chat template (default false: plain text, as a cloze is written). */
    chat: v.optional(v.boolean(), false),
    limit: v.optional(Int(1)),
  }),
  v.object({ name: Name, kind: v.literal("perplexity"), file: Path, limit: v.optional(Int(1)) }),
], 'kind: "multiple-choice" or "perplexity"');

const Sweep = v.object({
  /** Dot path into the recipe: "0.options.scale", "0.options.latents.0.value". */
  path: v.pipe(v.string(), v.regex(/^[^.]+(\.[^.]+)*$/, 'a dot path such as "0.options.scale"')),
  values: v.pipe(v.array(v.union([v.number(), v.boolean(), v.string()])), v.minLength(1)),
});
const Condition = v.object({
  name: Name,
  /** A steering recipe (trusted: it may write files and import steerkit-plugin-* packages). Default []: no steering. */
  recipe: v.optional(v.unknown(), []),
  sweep: v.optional(Sweep),
});

const Generation = v.object({
  maxTokens: v.optional(Int(1, 1_000_000), 64),
  temperature: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(100)), 0),
  topK: v.optional(Int(0)),
  topP: v.optional(v.pipe(v.number(), v.gtValue(0), v.maxValue(1))),
  minP: v.optional(v.pipe(v.number(), v.minValue(0), v.maxValue(1))),
  repetitionPenalty: v.optional(v.pipe(v.number(), v.gtValue(0))),
  stop: v.optional(v.array(v.pipe(v.string(), v.minLength(1))), []),
  /** One generation per seed per prompt. */
  seeds: v.optional(v.pipe(v.array(Int(0, 0xffffffff)), v.minLength(1)), [0]),
  /** Render single prompts with the model's chat template: "auto" = when the model has one. `messages` items always use it; capability sets have their own `chat`. */
  chat: v.optional(v.union([v.boolean(), v.literal("auto")]), "auto"),
});

const Artifact = v.object({ kind: v.picklist(["direction", "sae"], 'kind: "direction" or "sae"'), path: Path });

export const EvalConfigSchema = v.strictObject({
  $schema: v.optional(v.string()),
  model: v.strictObject({
    path: Path,
    backend: v.optional(v.picklist(["llama-cpp", "onnx", "reference"], 'backend: "llama-cpp", "onnx" or "reference"')),
    threads: v.optional(Int(1, 1024)),
    contextLength: v.optional(Int(8)),
  }),
  /** Named directions and SAEs the recipes refer to. */
  artifacts: v.optional(v.record(Name, Artifact), {}),
  prompts: v.optional(v.array(PromptSet), []),
  capabilities: v.optional(v.array(CapabilitySet), []),
  conditions: v.pipe(v.array(Condition), v.minLength(1, "at least one condition (e.g. { \"name\": \"none\" })")),
  generation: v.optional(Generation, {}),
  /** A malformed JSONL line: stop the run (default), or skip the line and report it. */
  onInvalidLine: v.optional(v.picklist(["stop", "skip"]), "stop"),
  /** A judge that throws or an item that fails: record the error for that item and go on (default), or stop. */
  onItemError: v.optional(v.picklist(["record", "stop"]), "record"),
  /** Output directory: results, audit file, tables, plots. */
  output: Path,
});

export type EvalConfigInput = v.InferInput<typeof EvalConfigSchema>;
type Parsed = v.InferOutput<typeof EvalConfigSchema>;
export type JudgeConfig = v.InferOutput<typeof JudgeSchema>;
export type PromptSetConfig = Parsed["prompts"][number];
export type CapabilitySetConfig = Parsed["capabilities"][number];
export type GenerationConfig = Parsed["generation"];

/** One run: a condition, with its swept value put in place. */
export interface Run {
  /** `<condition>` or `<condition>=<value>`: the key results are stored under. */
  readonly id: string;
  readonly condition: string;
  /** The swept value, or null for a condition without a sweep. */
  readonly value: number | boolean | string | null;
  /** The sweep's path (for labels), or null. */
  readonly sweepPath: string | null;
  readonly recipe: Recipe;
}

/** A validated config with paths resolved against the config file's directory. */
export interface EvalConfig extends Omit<Parsed, "conditions"> {
  /** The file the config came from ("(inline config)" when given as an object). */
  readonly source: string;
  readonly runs: readonly Run[];
}

/**
 * Validate a config object. `source` names it in errors; relative paths resolve against `baseDir`.
 * @example
 * ```ts
 * const config = parseEvalConfig({
 *   model: { path: "models/stories260K.gguf" },
 *   prompts: [{ name: "unsafe", file: "unsafe.jsonl", expect: "refuse", judge: "refusal-substring" }],
 *   conditions: [{ name: "none" }, { name: "add", recipe: [{ plugin: "add-vector", options: { vector: "refusal", scale: 0 } }],
 *                  sweep: { path: "0.options.scale", values: [0, 2, 4] } }],
 *   output: "out/",
 * }, { source: "eval.json", baseDir: "." });
 * config.runs.map((r) => r.id); // ["none", "add=0", "add=2", "add=4"]
 * ```
 */
export function parseEvalConfig(value: unknown, where: { source?: string; baseDir?: string } = {}): EvalConfig {
  const source = where.source ?? "(inline config)";
  const baseDir = where.baseDir ?? process.cwd();
  const result = v.safeParse(EvalConfigSchema, value);
  if (!result.success) {
    const lines = result.issues.map((i) => `  - ${v.getDotPath(i) ?? "(config)"}: ${issueText(i)}`);
    throw new EvalError(`${source}: invalid config:\n${lines.join("\n")}`);
  }
  const c = result.output;
  const at = (p: string) => resolve(baseDir, p);
  const names = (kind: string, list: readonly { name: string }[]) => {
    const seen = new Set<string>();
    for (const { name } of list) {
      if (seen.has(name)) throw new EvalError(`${source}: ${kind}: the name "${name}" is used twice (names key the results)`);
      seen.add(name);
    }
  };
  names("prompts and capabilities", [...c.prompts, ...c.capabilities]);
  names("conditions", c.conditions);
  if (c.prompts.length + c.capabilities.length === 0) throw new EvalError(`${source}: nothing to evaluate: give at least one prompt set ("prompts") or capability set ("capabilities")`);
  const runs = c.conditions.flatMap((cond, i) => expandCondition(cond, `${source}: conditions[${i}]`));
  return {
    ...c,
    source,
    model: { ...c.model, path: at(c.model.path) },
    artifacts: Object.fromEntries(Object.entries(c.artifacts).map(([k, a]) => [k, { ...a, path: at(a.path) }])),
    prompts: c.prompts.map((s) => ({ ...s, file: at(s.file), judge: s.judge.type === "module" ? { ...s.judge, path: at(s.judge.path) } : s.judge })),
    capabilities: c.capabilities.map((s) => ({ ...s, file: at(s.file) })),
    output: at(c.output),
    runs,
  };
}

/**
 * Read and validate a config file.
 * @example
 * ```ts
 * const config = loadEvalConfig("eval.json");
 * console.log(config.runs.length, "runs;", config.prompts.length, "prompt sets");
 * ```
 */
export function loadEvalConfig(path: string): EvalConfig {
  const text = readRegularText(path, (reason) => {
    throw new EvalError(`${path}: cannot read the config (${reason})`);
  }, { expected: "an eval config (JSON)" });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new EvalError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parseEvalConfig(json, { source: path, baseDir: dirname(resolve(path)) });
}

function expandCondition(cond: Parsed["conditions"][number], at: string): Run[] {
  let recipe: Recipe;
  try {
    recipe = parseRecipe(cond.recipe, "recipe");
  } catch (e) {
    throw new EvalError(`${at}.${(e as Error).message}`);
  }
  if (!cond.sweep) return [{ id: cond.name, condition: cond.name, value: null, sweepPath: null, recipe }];
  const { path, values } = cond.sweep;
  const seen = new Set<string>();
  return values.map((value) => {
    const key = JSON.stringify(value);
    if (seen.has(key)) throw new EvalError(`${at}.sweep.values: ${key} appears twice`);
    seen.add(key);
    return { id: `${cond.name}=${typeof value === "string" ? value : key}`, condition: cond.name, value, sweepPath: path, recipe: setAtPath(recipe, path, value, `${at}.sweep.path "${path}"`) };
  });
}

/**
 * A copy of `recipe` with `value` at the dot `path`; the path must exist (see the module comment).
 * @example
 * ```ts
 * setAtPath([{ plugin: "add-vector", options: { scale: 1 } }], "0.options.scale", 4, "sweep");
 * // [{ plugin: "add-vector", options: { scale: 4 } }]
 * ```
 */
export function setAtPath(recipe: Recipe, path: string, value: unknown, at: string): Recipe {
  const copy = structuredClone(recipe) as unknown;
  const parts = path.split(".");
  let node: unknown = copy;
  let walked = "recipe";
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    const last = i === parts.length - 1;
    if (Array.isArray(node)) {
      const k = Number(part);
      if (!/^\d+$/.test(part) || k >= node.length) throw new EvalError(`${at}: ${walked} is an array of ${node.length}; "${part}" is not an index into it`);
      if (last) node[k] = value;
      else node = node[k];
    } else if (typeof node === "object" && node !== null) {
      const obj = node as Record<string, unknown>;
      if (!(part in obj)) throw new EvalError(`${at}: ${walked} has no field "${part}" (it has ${Object.keys(obj).map((k) => `"${k}"`).join(", ") || "none"}); the recipe must hold a value where the sweep puts one`);
      if (last) obj[part] = value;
      else node = obj[part];
    } else {
      throw new EvalError(`${at}: ${walked} is ${describeValue(node)}, so it has no "${part}"`);
    }
    walked += /^\d+$/.test(part) ? `[${part}]` : `.${part}`;
  }
  return copy as Recipe;
}

function issueText(issue: v.BaseIssue<unknown>): string {
  // A strict object's extra key: say so, with the fields it takes (typos are the usual cause).
  if (issue.expected === "never" && issue.kind === "schema") {
    const top = (issue.path?.length ?? 0) === 1;
    return `unknown field${top ? ` (a config takes ${Object.keys(EvalConfigSchema.entries).filter((k) => k !== "$schema").join(", ")})` : ""}`;
  }
  // valibot's type messages already say "received ..."; other checks (a regex, a minimum) do not.
  return /received/i.test(issue.message) ? issue.message : `${issue.message} (got ${describeValue(issue.input)})`;
}
