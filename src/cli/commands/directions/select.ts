/**
 * `steerkit directions select`: rank a direction file's candidates the way Arditi et al. select
 * (src/directions/select.ts) and write the table as JSON and Markdown. The score is the
 * log-probability mass of the tokens given with --tokens / --token-ids (refusal openings for
 * refusal, a concept's first token for a concept). `--judge` adds generated-text rates judged by
 * one of `steerkit eval`'s judges, named in one flag (see `judgeFlag`).
 */
import { closeSync, existsSync, openSync, writeFileSync, writeSync } from "node:fs";
import { resolve } from "node:path";
import { openModel } from "../../../adapters/index.ts";
import { createArtifacts } from "../../../core/artifacts.ts";
import { directionArtifact } from "../../../directions/artifact.ts";
import { DEFAULT_MODEL_PATH } from "../../../default-model.ts";
import { readPromptSet } from "../../../directions/prompts.ts";
import { SelectionError, selectDirections, selectionMarkdown, selectRunCount, type JudgedGeneration, type Selection } from "../../../directions/select.ts";
import { selectionJudge, type SelectJudgeConfig } from "../../../directions/select-judge.ts";
import { CliError, numberFlag, parse, type Command } from "../../args.ts";
import { progressBar } from "../../progress.ts";

const help = `steerkit directions select — rank a direction file's points as Arditi et al. select

Usage: steerkit directions select <direction file>... --a <set A> --b <set B> (--tokens t,... | --token-ids n,...) [options]

  --a <file>            prompts where ablation should lower the score (refusal: harmful)
  --b <file>            prompts where addition should raise it and ablation move little (harmless)
  --tokens <t,...>      score tokens: the first token of each text (printed; check it)
  --token-ids <n,...>   score tokens by id
  --max-kl <x>          keep candidates with mean KL on B below x (default 0.1)
  --judge <judge>       also generate and judge each prompt (off by default):
                          refusal-substring[:arditi|xstest|both]   the substring judge of steerkit eval
                          regex:<pattern> or regex:/<pattern>/<flags>   a match means refused
                          <module.ts>[#export]   your judge module (trusted code: it runs here)
                          '{"type": ...}'   any judge object of an eval config (docs/eval.md#judges)
  --judge-tokens <n>    tokens generated greedily per prompt for the judge (default 24)
  --min-induce-rate <x> with --judge: keep candidates whose induce rate is >= x (0-1)
                        instead of above B's unsteered rate
  --generations <file>  with --judge: write every generation and its verdict as JSONL (set, id,
                        prompt, steering, point, position, output, refused), as the run goes
  --chat                render each prompt with the model's chat template
  --model <path>        (default: the embedded stories260K.gguf)   --backend <name>   --threads <n>
  --json <file>         write the table as JSON     --md <file>   write it as Markdown
                        (the Markdown table is also printed)

Several files (e.g. the per-position files of \`extract --positions each-post-instruction\`)
compete together: a candidate is a (file's position, point) pair.

Per candidate point (layers in the last 20% skipped): bypass = mean score on A with the direction
ablated at every point; induce = mean score on B with it added at its point; KL on B under ablation.
Kept: induce > baseline and KL < max-kl; ranked by bypass (lowest first).

With --judge, the unsteered, bypass and induce runs generate --judge-tokens tokens greedily and the
judge reads each generation: bypass rate = fraction of A judged refused with the direction ablated
(lower is better), induce rate = fraction of B judged refused with it added, and the unsteered rates.
Kept: also induce rate > B's unsteered rate (or 1; or >= --min-induce-rate); ranked by bypass rate,
then bypass score. A judge that fails stops the run; the candidates finished before it are still
written to --json / --md, marked incomplete.
`;

const MODULE_EXTENSIONS = /\.(ts|mts|cts|js|mjs|cjs)$/i;

/** The judge a `--judge` value names (see the help); unknown names and missing modules are CLI errors. */
export function judgeFlag(value: string): SelectJudgeConfig {
  const [kind, rest] = [value.split(":", 1)[0]!, value.slice(value.indexOf(":") + 1)];
  if (value === "refusal-substring") return value;
  if (kind === "refusal-substring" && value.includes(":")) {
    if (rest !== "arditi" && rest !== "xstest" && rest !== "both") throw new CliError(`--judge: "${rest}" is not a substring list (arditi, xstest or both)`);
    return { type: "refusal-substring", lists: rest };
  }
  if (kind === "regex" && value.includes(":")) {
    const slashed = /^\/(.*)\/([a-z]*)$/s.exec(rest);
    if (rest === "" || slashed?.[1] === "") throw new CliError("--judge regex: needs a pattern (regex:<pattern> or regex:/<pattern>/<flags>)");
    return slashed ? { type: "regex", pattern: slashed[1]!, flags: slashed[2]! } : { type: "regex", pattern: rest };
  }
  if (value.startsWith("{")) {
    try {
      return JSON.parse(value) as SelectJudgeConfig;
    } catch (e) {
      throw new CliError(`--judge: not a JSON judge object (${(e as Error).message})`);
    }
  }
  const hash = value.lastIndexOf("#");
  const path = hash > 0 ? value.slice(0, hash) : value;
  if (MODULE_EXTENSIONS.test(path) || path.includes("/") || path.includes("\\")) {
    if (!existsSync(path)) throw new CliError(`--judge: no judge module at ${resolve(path)}`);
    return { type: "module", path: resolve(path), ...(hash > 0 ? { export: value.slice(hash + 1) } : {}) };
  }
  throw new CliError(`--judge: unknown judge "${value}" (refusal-substring[:arditi|xstest|both], regex:<pattern>, a module path such as ./judge.ts, or a JSON judge object)`);
}

function list(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(",").filter((x) => x !== "");
}

export const directionsSelectCommand: Command = {
  summary: "rank a direction file's points (bypass, induce, KL) as Arditi et al. select",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      a: { type: "string" },
      b: { type: "string" },
      tokens: { type: "string" },
      "token-ids": { type: "string" },
      "max-kl": { type: "string" },
      judge: { type: "string" },
      "judge-tokens": { type: "string" },
      "min-induce-rate": { type: "string" },
      generations: { type: "string" },
      chat: { type: "boolean" },
      model: { type: "string" },
      backend: { type: "string" },
      threads: { type: "string" },
      json: { type: "string" },
      md: { type: "string" },
    }, true);
    if (positionals.length === 0) throw new CliError("give at least one direction file");
    if (values.a === undefined || values.b === undefined) throw new CliError("--a <file> and --b <file> are required");
    const ids = list(values["token-ids"]).map((x) => {
      const n = Number(x);
      if (!/^\d+$/.test(x) || !Number.isSafeInteger(n)) throw new CliError(`--token-ids: "${x}" is not a token id`);
      return n;
    });
    const texts = list(values.tokens);
    if (ids.length + texts.length === 0) throw new CliError("give the score's tokens with --tokens or --token-ids");
    const maxKl = numberFlag("max-kl", values["max-kl"], { min: 0 });
    const judge = values.judge === undefined ? undefined : judgeFlag(values.judge);
    const judgeTokens = numberFlag("judge-tokens", values["judge-tokens"], { integer: true, min: 1 });
    const minInduceRate = numberFlag("min-induce-rate", values["min-induce-rate"], { min: 0, max: 1 });
    if (judge === undefined && (judgeTokens !== undefined || minInduceRate !== undefined || values.generations !== undefined)) {
      throw new CliError(`${judgeTokens !== undefined ? "--judge-tokens" : minInduceRate !== undefined ? "--min-induce-rate" : "--generations"} needs --judge`);
    }
    // Opened (truncated) before the model: an unwritable path fails at once, and a rerun does not append to an old trail.
    const audit = values.generations === undefined ? undefined : openAudit(values.generations);
    const setA = readPromptSet(values.a, `--a ${values.a}`);
    const setB = readPromptSet(values.b, `--b ${values.b}`);
    // The judge before the model: a bad judge object or module fails at once.
    const judgeReady = judge === undefined ? undefined : await selectionJudge(judge).catch((e: Error) => {
      throw new CliError(e.message.replace(/^select directions: /, ""));
    });
    const artifacts = createArtifacts();
    const directions = await Promise.all(positionals.map((path, i) => artifacts.register(`candidates-${i + 1}`, directionArtifact, { path }).load(directionArtifact, `candidates-${i + 1}`)));
    const write = (selection: Selection) => {
      const md = selectionMarkdown(selection);
      if (values.json) writeFileSync(values.json, JSON.stringify(selection, null, 2) + "\n");
      if (values.md) writeFileSync(values.md, md);
      console.log(md);
    };
    const model = await openModel(values.model ?? DEFAULT_MODEL_PATH, { backend: values.backend, threads: numberFlag("threads", values.threads, { integer: true, min: 1 }) });
    try {
      for (const t of texts) {
        const first = model.tokenize(t, { addBos: false })[0];
        if (first === undefined) throw new CliError(`--tokens: "${t}" has no tokens`);
        console.error(`score token ${first} ${JSON.stringify(model.detokenize([first]))} (from ${JSON.stringify(t)})`);
        ids.push(first);
      }
      const bad = ids.find((id) => id >= model.info.vocabSize);
      if (bad !== undefined) throw new CliError(`--token-ids: ${bad} is outside the vocabulary (${model.info.vocabSize} tokens)`);
      const judged = judgeReady === undefined ? 0 : (judgeTokens ?? 24);
      const bar = progressBar(selectRunCount(directions, setA.length, setB.length, model.info.nLayers, 0.8, judged), judged ? "passes" : "runs");
      try {
        write(await selectDirections(model, directions, {
          setA, setB, tokenIds: [...new Set(ids)], format: values.chat ? "chat" : "text",
          ...(maxKl !== undefined ? { maxKl } : {}),
          ...(judgeReady !== undefined ? { judge: judgeReady, ...(judgeTokens !== undefined ? { judgeTokens } : {}), ...(minInduceRate !== undefined ? { minInduceRate } : {}) } : {}),
          ...(audit ? { onGeneration: (g: JudgedGeneration) => writeSync(audit, JSON.stringify(g) + "\n") } : {}),
          onProgress: (done) => bar.update(done),
        }));
      } finally {
        bar.done();
      }
    } catch (e) {
      if (e instanceof SelectionError && e.partial) {
        // Keep what was computed: the finished candidates, marked incomplete, where the table was to go.
        write(e.partial);
        const finished = e.partial.rows.filter((r) => r.bypass !== null).length;
        const where = [values.json, values.md].filter((x) => x !== undefined).join(" and ");
        throw new CliError(`${e.message.slice("select directions: ".length)}\n(the ${finished} candidate(s) finished before it are ${where ? `in ${where}` : "printed above"}, marked incomplete)`);
      }
      const msg = (e as Error).message;
      if (msg.startsWith("select directions: ")) throw new CliError(msg.slice("select directions: ".length));
      throw e;
    } finally {
      model.dispose();
      if (audit !== undefined) closeSync(audit);
    }
  },
};

function openAudit(path: string): number {
  try {
    return openSync(path, "w");
  } catch (e) {
    throw new CliError(`--generations: cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}
