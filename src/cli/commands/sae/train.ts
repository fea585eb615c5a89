/**
 * `steerkit sae train`: corpus -> residuals (through the SDK) -> TopK or ReLU SAE -> SAELens directory.
 * Every step is seeded, so the printed command reproduces the weights byte for byte on the same
 * backend. Progress goes to stderr (on a terminal); `--json` prints one summary object on stdout.
 */
import { basename, extname, join } from "node:path";
import { openModel } from "../../../adapters/index.ts";
import { pointName, parsePoint } from "../../../core/sites.ts";
import { DEFAULT_MODEL_PATH } from "../../../default-model.ts";
import { collectResiduals, generateCorpus } from "../../../sae/collect.ts";
import { saveSaelens } from "../../../sae/save-saelens.ts";
import { trainSae, type TrainArchitecture } from "../../../sae/train.ts";
import { CliError, numberFlag, parse, type Command, readFlagFile } from "../../args.ts";
import { progressBar } from "../../progress.ts";

const help = `steerkit sae train — train a sparse autoencoder on a model's residual stream, write SAELens format

Usage: steerkit sae train --out <dir> (--corpus <file> | --generate-corpus <n>) [options]

Data
  --model <path>             .gguf file or ONNX export directory (default: the embedded stories260K.gguf)
  --backend <name>           llama-cpp | onnx | reference (default: from the path)
  --point <point>            where to read the residual (default: resid_post of the middle layer)
  --corpus <file>            .txt (texts separated by blank lines) or .jsonl (one JSON string, or
                             object with "text", per line)
  --generate-corpus <n>      let the model write n texts (seeded with --seed; prompts: story openings)
  --corpus-tokens <n>        tokens per generated text (default 256)
  --max-tokens-per-text <n>  cut each text to n tokens, BOS included (default: the context)
  --threads <n>              CPU threads for the backend

SAE
  --architecture <a>         topk | relu (default topk)
  --d-sae <n>                latents (default 8 x the model's width)
  --k <n>                    active latents per token, TopK (default 8)
  --l1 <c>                   L1 coefficient, ReLU (default 1)
  --steps <n> | --epochs <e> optimizer steps, or passes over the training rows (default 1 epoch)
  --lr <r>                   Adam learning rate (default 1e-3)
  --batch <n>                rows per step (default 1024)
  --dead-tokens <n>          a latent not fired in n training rows is dead (default min(1e6, tokens/4))
  --seed <n>                 seed for the corpus, init and batch order (default 0)
  --eval-fraction <f>        last fraction of rows held out for FVU/L0 (default 0.1)

Output
  --out <dir>                write cfg.json, sae_weights.safetensors, sparsity.safetensors
  --json                     print a summary: fvu, l0, deadLatents, tokens, seconds, ...
`;

export const saeTrainCommand: Command = {
  summary: "train a TopK or ReLU SAE on residuals at a point, write SAELens format",
  help,
  async run(argv) {
    const { values } = parse(argv, {
      model: { type: "string" },
      backend: { type: "string" },
      point: { type: "string" },
      corpus: { type: "string" },
      "generate-corpus": { type: "string" },
      "corpus-tokens": { type: "string" },
      "max-tokens-per-text": { type: "string" },
      threads: { type: "string" },
      architecture: { type: "string" },
      "d-sae": { type: "string" },
      k: { type: "string" },
      l1: { type: "string" },
      steps: { type: "string" },
      epochs: { type: "string" },
      lr: { type: "string" },
      batch: { type: "string" },
      "dead-tokens": { type: "string" },
      seed: { type: "string" },
      "eval-fraction": { type: "string" },
      out: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.out === undefined) throw new CliError("--out <dir> is required");
    if ((values.corpus === undefined) === (values["generate-corpus"] === undefined)) throw new CliError("give one of --corpus <file> or --generate-corpus <n>");
    const architecture = (values.architecture ?? "topk") as TrainArchitecture;
    if (architecture !== "topk" && architecture !== "relu") throw new CliError(`--architecture must be topk or relu, got "${values.architecture}"`);
    if (values.steps !== undefined && values.epochs !== undefined) throw new CliError("give --steps or --epochs, not both");
    const seed = numberFlag("seed", values.seed, { integer: true, min: 0, max: 0xffffffff }) ?? 0;
    const nGenerate = numberFlag("generate-corpus", values["generate-corpus"], { integer: true, min: 1 });
    const corpusTokens = numberFlag("corpus-tokens", values["corpus-tokens"], { integer: true, min: 1 }) ?? 256;
    const maxTokensPerText = numberFlag("max-tokens-per-text", values["max-tokens-per-text"], { integer: true, min: 1 });
    const k = numberFlag("k", values.k, { integer: true, min: 1 }) ?? 8;
    const l1 = numberFlag("l1", values.l1, { min: 0 });
    const steps = numberFlag("steps", values.steps, { integer: true, min: 1 });
    const epochs = numberFlag("epochs", values.epochs, { min: 0 });
    if (epochs !== undefined && epochs <= 0) throw new CliError(`--epochs must be > 0, got "${values.epochs}"`);
    const lr = numberFlag("lr", values.lr, { min: 0 });
    const batch = numberFlag("batch", values.batch, { integer: true, min: 1 });
    const deadTokens = numberFlag("dead-tokens", values["dead-tokens"], { integer: true, min: 1 });
    const evalFraction = numberFlag("eval-fraction", values["eval-fraction"], { min: 0, max: 0.9 });
    const texts = values.corpus !== undefined ? readCorpus(values.corpus) : null;

    const started = performance.now();
    const modelPath = values.model ?? DEFAULT_MODEL_PATH;
    const model = await openModel(modelPath, { backend: values.backend, threads: numberFlag("threads", values.threads, { integer: true, min: 1 }) });
    try {
      const { dModel, nLayers } = model.info;
      const name = basename(modelPath, extname(modelPath)); // SAELens's model_name; GGUF names are often just the architecture
      let point;
      try {
        point = parsePoint(values.point ?? `resid_post.${Math.floor((nLayers - 1) / 2)}`);
      } catch (e) {
        throw new CliError(`--point: ${(e as Error).message}`);
      }
      const dSae = numberFlag("d-sae", values["d-sae"], { integer: true, min: 1 }) ?? 8 * dModel;
      if (architecture === "topk" && k > dSae) throw new CliError(`--k (${k}) must be <= --d-sae (${dSae})`);

      let corpus = texts;
      if (corpus === null) {
        const bar = progressBar(nGenerate!, "corpus");
        corpus = await generateCorpus(model, { n: nGenerate!, seed, maxTokens: corpusTokens, onProgress: () => bar.tick() });
        bar.done();
      }
      const collectBar = progressBar(corpus.length, "residuals");
      const tCollect = performance.now();
      const residuals = await collectResiduals(model, corpus, point, { maxTokensPerText, onProgress: (_, rows) => collectBar.tick(1, `${rows} rows`) });
      collectBar.done();
      const collectSeconds = (performance.now() - tCollect) / 1000;
      if (residuals.rows < 2) throw new CliError(`the corpus gave ${residuals.rows} residual rows; need at least 2`);

      let trainBar: ReturnType<typeof progressBar> | null = null;
      const { sae, stats } = trainSae(residuals.data, dModel, {
        architecture, dSae, k: architecture === "topk" ? k : undefined, l1: l1 === 0 ? undefined : l1, steps, epochs, lr, batch, seed, deadTokens, evalFraction,
        point: residuals.point,
        onProgress: (p) => {
          trainBar ??= progressBar(p.steps, "train");
          trainBar.update(p.step, `fvu ${p.fvu.toFixed(3)} l0 ${p.l0.toFixed(1)} dead ${p.dead}`);
        },
      });
      (trainBar as ReturnType<typeof progressBar> | null)?.done();

      const training = {
        architecture, d_sae: dSae, k: architecture === "topk" ? k : null, l1: architecture === "relu" ? (l1 ?? 1) : null,
        steps: stats.steps, batch: batch ?? 1024, lr: lr ?? 1e-3, seed, dead_tokens: stats.deadTokens,
        corpus: values.corpus !== undefined ? { file: values.corpus, texts: corpus.length } : { generated: nGenerate, tokens_per_text: corpusTokens, seed },
        rows: residuals.rows, train_rows: stats.trainRows, eval_rows: stats.evalRows,
        fvu: stats.fvu, l0: stats.l0, dead_latents: stats.deadLatents, never_fired_on_eval: stats.neverFiredOnEval,
      };
      saveSaelens(values.out, sae, {
        metadata: { model_name: name, context_size: maxTokensPerText ?? model.info.contextLength, prepend_bos: model.info.bosToken !== null, steerkit_training: training },
        firingFrequency: stats.firingFrequency,
      });
      const summary = {
        out: values.out,
        files: ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"].map((f) => join(values.out!, f)),
        model: name,
        backend: model.info.backend,
        point: pointName(residuals.point),
        architecture, dIn: dModel, dSae, k: architecture === "topk" ? k : null, l1: architecture === "relu" ? (l1 ?? 1) : null,
        seed,
        texts: corpus.length,
        rows: residuals.rows,
        trainRows: stats.trainRows,
        evalRows: stats.evalRows,
        steps: stats.steps,
        tokens: stats.tokens,
        fvu: stats.fvu,
        l0: stats.l0,
        deadLatents: stats.deadLatents,
        deadTokens: stats.deadTokens,
        neverFiredOnEval: stats.neverFiredOnEval,
        resampled: stats.resampled,
        collectSeconds,
        trainSeconds: stats.seconds,
        seconds: (performance.now() - started) / 1000,
      };
      if (values.json) console.log(JSON.stringify(summary));
      else {
        console.log(`wrote ${values.out} (${architecture}, ${dModel} -> ${dSae}${architecture === "topk" ? `, k=${k}` : ""}) at ${summary.point}`);
        console.log(`FVU ${stats.fvu.toFixed(4)}  L0 ${stats.l0.toFixed(2)}  dead ${stats.deadLatents}/${dSae}  rows ${residuals.rows} (${stats.evalRows} held out)  ${stats.steps} steps  ${summary.seconds.toFixed(1)} s`);
      }
    } finally {
      model.dispose();
    }
  },
};

/** Texts from a .txt file (separated by blank lines) or a .jsonl file (strings, or objects with "text"). */
export function readCorpus(path: string): string[] {
  const raw = readFlagFile("corpus", path);
  let texts: string[];
  if (path.toLowerCase().endsWith(".jsonl")) {
    texts = raw.split("\n").flatMap((line, i) => {
      if (line.trim() === "") return [];
      let v: unknown;
      try {
        v = JSON.parse(line);
      } catch {
        throw new CliError(`--corpus: ${path} line ${i + 1} is not JSON`);
      }
      if (typeof v === "string") return [v];
      if (typeof v === "object" && v !== null && typeof (v as { text?: unknown }).text === "string") return [(v as { text: string }).text];
      throw new CliError(`--corpus: ${path} line ${i + 1} is neither a JSON string nor an object with a "text" string`);
    });
  } else {
    texts = raw.split(/\n\s*\n/).map((t) => t.trim()).filter((t) => t.length > 0);
  }
  if (texts.length === 0) throw new CliError(`--corpus: ${path} holds no texts`);
  return texts;
}
