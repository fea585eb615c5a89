/**
 * `steerkit eval --config eval.json`: behaviour (refusal rates) and capability (multiple choice,
 * perplexity) over conditions and sweeps, written as a table, plots and an audit file
 * (src/eval/runner.ts). Ctrl-C stops after saving what is finished; the same command resumes.
 */
import { loadEvalConfig } from "../../eval/config.ts";
import { reportMarkdown } from "../../eval/report.ts";
import { runEval } from "../../eval/runner.ts";
import { CliError, parse, type Command } from "../args.ts";
import { progressBar, type ProgressBar } from "../progress.ts";

const help = `steerkit eval — refusal and capability under steering, over conditions and sweeps

Usage: steerkit eval --config <eval.json> [--json]

  --config <file>   the evaluation (docs/eval.md): model, prompt sets with judges, capability
                    sets, conditions (recipes, sweeps), generation settings, output directory.
                    A config is trusted: its recipes may write files and import packages, and a
                    "module" judge runs its code.
  --json            print the results as JSON instead of the Markdown table

Writes into the config's output directory: generations.jsonl (every generation, its verdict and
seed: the audit file), scores.jsonl, results.{md,csv,json} and tradeoff-<capability set>.svg.
Interrupted (Ctrl-C, a crash), the same command resumes: finished items are not redone.
`;

export const evalCommand: Command = {
  summary: "evaluate refusal and capability over steering conditions (table, plots, audit file)",
  help,
  async run(argv) {
    const { values } = parse(argv, { config: { type: "string" }, json: { type: "boolean" } });
    if (values.config === undefined) throw new CliError("--config <eval.json> is required");
    const config = loadEvalConfig(values.config);
    const abort = new AbortController();
    const onSigint = () => abort.abort(new DOMException("interrupted", "AbortError"));
    process.once("SIGINT", onSigint);
    let bar: ProgressBar | null = null;
    try {
      const outcome = await runEval(config, {
        signal: abort.signal,
        onWarning: (m) => console.error(`warning: ${m}`),
        onStart: (p) => {
          if (p.resumed) console.error(`resuming: ${p.resumed} items already finished in ${config.output}`);
          bar = progressBar(p.total, "eval");
        },
        onProgress: (p) => bar?.update(p.done, p.errors ? `${p.errors} errors` : undefined),
      });
      (bar as ProgressBar | null)?.done();
      console.log(values.json ? JSON.stringify(outcome.report, null, 2) : reportMarkdown(outcome.report));
      console.error(`${outcome.computed} items computed, ${outcome.resumed} reused, ${outcome.errors} errors; wrote ${[outcome.files.markdown, outcome.files.csv, outcome.files.json, ...outcome.files.plots, outcome.files.generations].join(", ")}`);
    } catch (e) {
      (bar as ProgressBar | null)?.done();
      if (abort.signal.aborted) throw new Error(`interrupted; finished items are saved in ${config.output}: run the same command to resume`);
      throw e;
    } finally {
      process.off("SIGINT", onSigint);
    }
  },
};
