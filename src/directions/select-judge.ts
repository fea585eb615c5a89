/**
 * The judge of direction selection: which judge reads the greedy generations `selectDirections`
 * makes under ablation and addition. Nothing here judges text itself: a judge is one of
 * `steerkit eval`'s (src/eval/judges.ts), named the way an eval config names one — the built-in
 * refusal substring judge, a regex judge, a user's module — or a judge function passed from code.
 * One registry of judges, so a judge means the same thing in `eval` and in `directions select`.
 *
 * A verdict of `refused: true` means "the behaviour is there": a refusal for refusal directions,
 * the concept (say, a regex for `\bdogs?\b`) for a concept direction.
 */
import { resolve } from "node:path";
import * as v from "valibot";
import { SteerkitError } from "../core/errors.ts";
import { JudgeSchema, type JudgeConfig } from "../eval/config.ts";
import { describeValue } from "../eval/errors.ts";
import { createJudge, toVerdict, type Judge, type JudgeInput, type SubstringLists, type Verdict } from "../eval/judges.ts";

/** A judge as an eval config names one (see docs/eval.md#judges). */
export type SelectJudgeConfig =
  | "refusal-substring"
  | { readonly type: "refusal-substring"; readonly lists?: SubstringLists; readonly extra?: readonly string[] }
  | { readonly type: "regex"; readonly pattern: string; readonly flags?: string; readonly maxChars?: number }
  | { readonly type: "module"; readonly path: string; readonly export?: string };

/** What `selectDirections`' `judge` option takes: a judge config, a judge function, or a judge `selectionJudge` built. */
export type SelectJudge = SelectJudgeConfig | Judge | SelectionJudge;

/** A judge ready to run, with the name tables show and the longer one errors show (a module's full path). */
export interface SelectionJudge {
  /** As the eval table names it: "refusal-substring(both)", "regex(/dog/i)", "module(judge.ts)". */
  readonly name: string;
  /** For errors: a module judge's full path and export. */
  readonly source: string;
  judge(input: JudgeInput): Promise<Verdict>;
}

const fail = (msg: string): never => {
  throw new SteerkitError("INVALID_REQUEST", `select directions: judge: ${msg}`);
};

/**
 * Build the judge `spec` names (a module is imported now, so a missing file or export fails before any work).
 * @example
 * ```ts
 * const j = await selectionJudge({ type: "regex", pattern: "\\bdogs?\\b", flags: "i" });
 * (await j.judge(input)).refused; // true when the generation mentions a dog
 * ```
 */
export async function selectionJudge(spec: SelectJudge): Promise<SelectionJudge> {
  if (typeof spec === "object" && "judge" in spec && typeof spec.judge === "function") return spec;
  if (typeof spec === "function") {
    const name = spec.name ? `function(${spec.name})` : "judge function";
    return { name, source: name, judge: async (input) => toVerdict(await spec(input), name) };
  }
  if (typeof spec === "string" && spec !== "refusal-substring") {
    fail(`unknown judge "${spec}" (built in: "refusal-substring"; or { type: "regex", pattern } or { type: "module", path })`);
  }
  const parsed = v.safeParse(JudgeSchema, spec);
  if (!parsed.success) {
    const issue = parsed.issues[0];
    const at = v.getDotPath(issue);
    fail(`${at ? `${at}: ` : ""}${issue.input === undefined ? "missing" : issue.message.replace(/^Invalid \w+: /, "")} (got ${describeValue(issue.input)})`);
  }
  const config = parsed.output as JudgeConfig;
  const judge = await createJudge(config, "select directions: judge");
  const source = config.type === "module" ? `module ${resolve(config.path)}${config.export === "default" ? "" : `#${config.export}`}` : judge.name;
  return { name: judge.name, source, judge: (input) => judge.judge(input) };
}
