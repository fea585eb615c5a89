/**
 * `steerkit/eval`: behaviour and capability under steering, the refusal/capability trade-off of
 * O'Brien et al. 2024 for your own model, SAE and recipe. `steerkit eval --config eval.json` is the
 * same thing from a shell; docs/eval.md has the formats and configs.
 */
export { parseEvalConfig, loadEvalConfig, setAtPath, EvalConfigSchema, JudgeSchema, type EvalConfig, type EvalConfigInput, type Run, type JudgeConfig } from "./config.ts";
export { EvalError } from "./errors.ts";
export { readPromptSet, readChoiceSet, readTextSet, type PromptItem, type ChoiceItem, type TextItem, type DataSet, type SkippedLine, type ReadOptions } from "./sets.ts";
export {
  isRefusal,
  matchedPhrase,
  createJudge,
  ARDITI_REFUSAL_SUBSTRINGS,
  XSTEST_REFUSAL_PREFIXES,
  type Judge,
  type JudgeInput,
  type Verdict,
  type NamedJudge,
  type SubstringLists,
} from "./judges.ts";
export { scoreChoices, scoreText, joinChoice, type ChoiceScore, type TextScore, type ScoringContext } from "./scoring.ts";
export { wilson, bootstrap, type Interval } from "./stats.ts";
export { openResultsStore, resultKey, lockOutput, type ResultsStore, type StoredRecord } from "./store.ts";
export { buildReport, reportMarkdown, reportCsv, type EvalReport, type ReportRow, type BehaviourCell, type CapabilityCell, type ResultRecord } from "./report.ts";
export { tradeoffSvg } from "./plot.ts";
export { runEval, writeReport, type RunEvalOptions, type EvalOutcome, type EvalProgress } from "./runner.ts";
