/**
 * `steerkit directions select`: rank a direction file's candidates the way Arditi et al. select
 * (src/directions/select.ts) and write the table as JSON and Markdown. The score is the
 * log-probability mass of the tokens given with --tokens / --token-ids (refusal openings for
 * refusal, a concept's first token for a concept).
 */
import { writeFileSync } from "node:fs";
import { openModel } from "../../../adapters/index.ts";
import { createArtifacts } from "../../../core/artifacts.ts";
import { directionArtifact } from "../../../directions/artifact.ts";
import { DEFAULT_MODEL_PATH } from "../../../default-model.ts";
import { readPromptSet } from "../../../directions/prompts.ts";
import { selectDirections, selectionMarkdown, selectRunCount } from "../../../directions/select.ts";
import { CliError, numberFlag, parse, type Command } from "../../args.ts";
import { progressBar } from "../../progress.ts";

const help = `steerkit directions select — rank a direction file's points as Arditi et al. select

Usage: steerkit directions select <direction file>... --a <set A> --b <set B> (--tokens t,... | --token-ids n,...) [options]

  --a <file>            prompts where ablation should lower the score (refusal: harmful)
  --b <file>            prompts where addition should raise it and ablation move little (harmless)
  --tokens <t,...>      score tokens: the first token of each text (printed; check it)
  --token-ids <n,...>   score tokens by id
  --max-kl <x>          keep candidates with mean KL on B below x (default 0.1)
  --chat                render each prompt with the model's chat template
  --model <path>        (default: the embedded stories260K.gguf)   --backend <name>   --threads <n>
  --json <file>         write the table as JSON     --md <file>   write it as Markdown
                        (the Markdown table is also printed)

Several files (e.g. the per-position files of \`extract --positions each-post-instruction\`)
compete together: a candidate is a (file's position, point) pair.

Per candidate point (layers in the last 20% skipped): bypass = mean score on A with the direction
ablated at every point; induce = mean score on B with it added at its point; KL on B under ablation.
Kept: induce > baseline and KL < max-kl; ranked by bypass (lowest first).
`;

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
    const setA = readPromptSet(values.a, `--a ${values.a}`);
    const setB = readPromptSet(values.b, `--b ${values.b}`);
    const artifacts = createArtifacts();
    const directions = await Promise.all(positionals.map((path, i) => artifacts.register(`candidates-${i + 1}`, directionArtifact, { path }).load(directionArtifact, `candidates-${i + 1}`)));
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
      const bar = progressBar(selectRunCount(directions, setA.length, setB.length, model.info.nLayers), "runs");
      const selection = await selectDirections(model, directions, {
        setA, setB, tokenIds: [...new Set(ids)], format: values.chat ? "chat" : "text",
        ...(maxKl !== undefined ? { maxKl } : {}),
        onProgress: (done) => bar.update(done),
      });
      bar.done();
      const md = selectionMarkdown(selection);
      if (values.json) writeFileSync(values.json, JSON.stringify(selection, null, 2) + "\n");
      if (values.md) writeFileSync(values.md, md);
      console.log(md);
    } catch (e) {
      const msg = (e as Error).message;
      if (msg.startsWith("select directions: ")) throw new CliError(msg.slice("select directions: ".length));
      throw e;
    } finally {
      model.dispose();
    }
  },
};
