/**
 * `steerkit directions extract`: two prompt sets -> residuals through the SDK -> one direction per
 * point (difference of means or repeng's PCA of differences) -> a Steerkit direction file. Progress
 * on stderr (on a terminal); `--json` prints the summary (norms, cosines between adjacent points,
 * separation of the two sets) on stdout.
 */
import { basename, extname } from "node:path";
import { openModel } from "../../../adapters/index.ts";
import { DEFAULT_MODEL_PATH } from "../../../default-model.ts";
import { EXTRACT_METHODS, extractDirections, extractPerPosition, isExtractPositions, saveExtraction, type ExtractMethod, type ExtractPositions, type Extraction } from "../../../directions/extract.ts";
import { hashPromptSet, readPromptSet } from "../../../directions/prompts.ts";
import { CliError, numberFlag, parse, type Command } from "../../args.ts";
import { progressBar } from "../../progress.ts";
import { pointsFlag } from "./options.ts";

const help = `steerkit directions extract — directions from two prompt sets, saved as a direction file

Usage: steerkit directions extract --a <file> --b <file> --out <file.safetensors> [options]

  --a <file>            prompts the direction points towards (refusal: harmful; concept: with it)
  --b <file>            the contrast set (harmless; without the concept); same size as --a.
                        .jsonl (JSON strings, or objects with "prompt", "instruction" or "text")
                        or text, one prompt per non-empty line
  --out <file>          the direction file (.safetensors; one F32 tensor per point, provenance and
                        mean residual norms in its header)
  --model <path>        .gguf file or ONNX export directory (default: the embedded stories260K.gguf)
  --backend <name>      llama-cpp | onnx | reference (default: from the path)
  --points <points>     all | resid_post.* | resid_post.1-3,resid_mid.2 ... (default resid_post.*)
  --positions <p>       last (default): the last prompt token; mean: mean over the prompt (BOS
                        left out); post-instruction: mean over the chat template's tokens after
                        the user message (needs --chat); -k (written --positions=-k): the
                        k-th token from the end (-1 = last); each-post-instruction: one file
                        per post-instruction token (Arditi et al.'s candidates; needs --chat):
                        <out>.pos-1.safetensors, <out>.pos-2.safetensors, ... for
                        \`steerkit directions select\` to rank together
  --method <m>          mean-diff (default): mean(A) - mean(B); pca-diff: repeng's first principal
                        component of the paired differences A_i - B_i, unit length, signed so A
                        projects higher in most pairs
  --chat                render each prompt as a user message with the model's chat template
  --threads <n>         CPU threads for the backend
  --json                print the summary as JSON
`;

export const directionsExtractCommand: Command = {
  summary: "extract per-point directions from two prompt sets (difference of means or PCA)",
  help,
  async run(argv) {
    const { values } = parse(argv, {
      a: { type: "string" },
      b: { type: "string" },
      out: { type: "string" },
      model: { type: "string" },
      backend: { type: "string" },
      points: { type: "string", multiple: true },
      positions: { type: "string" },
      method: { type: "string" },
      chat: { type: "boolean" },
      threads: { type: "string" },
      json: { type: "boolean" },
    });
    if (values.a === undefined || values.b === undefined) throw new CliError("--a <file> and --b <file> are required");
    if (values.out === undefined) throw new CliError("--out <file.safetensors> is required");
    if (!values.out.endsWith(".safetensors")) throw new CliError(`--out must end in .safetensors, got "${values.out}"`);
    const method = (values.method ?? "mean-diff") as ExtractMethod;
    if (!EXTRACT_METHODS.includes(method)) throw new CliError(`--method must be one of ${EXTRACT_METHODS.join(", ")}, got "${values.method}"`);
    const positions = values.positions ?? "last";
    const each = positions === "each-post-instruction";
    if (!each && !isExtractPositions(positions)) throw new CliError(`--positions must be last, mean, post-instruction, each-post-instruction or -k (as --positions=-k), got "${values.positions}"`);
    if ((each || positions === "post-instruction") && !values.chat) throw new CliError(`--positions ${positions} needs --chat`);
    const points = pointsFlag(values.points) ?? ["resid_post.*"];
    const setA = readPromptSet(values.a, `--a ${values.a}`);
    const setB = readPromptSet(values.b, `--b ${values.b}`);
    if (setA.length === 0 || setB.length === 0) throw new CliError(`both prompt sets need prompts (--a has ${setA.length}, --b has ${setB.length})`);
    if (setA.length !== setB.length) throw new CliError(`--a has ${setA.length} prompts, --b has ${setB.length}: the sets must have the same size`);

    const started = performance.now();
    const modelPath = values.model ?? DEFAULT_MODEL_PATH;
    // As sae train names it: GGUF general.name is often just the architecture.
    const modelName = basename(modelPath.replace(/\/+$/, ""), extname(modelPath));
    const model = await openModel(modelPath, { backend: values.backend, threads: numberFlag("threads", values.threads, { integer: true, min: 1 }) });
    try {
      const bar = progressBar(2 * setA.length, "prompts");
      const options = { points, method, format: values.chat ? ("chat" as const) : ("text" as const), modelName, onProgress: (done: number) => bar.update(done) };
      // One file, or one per post-instruction position beside each other.
      const files: { out: string; extraction: Extraction }[] = each
        ? (await extractPerPosition(model, setA, setB, options)).map((c) => ({ out: values.out!.replace(/\.safetensors$/, `.pos${c.position}.safetensors`), extraction: c.extraction }))
        : [{ out: values.out, extraction: await extractDirections(model, setA, setB, { ...options, positions: positions as ExtractPositions }) }];
      bar.done();
      const seconds = (performance.now() - started) / 1000;
      for (const f of files) saveExtraction(f.out, f.extraction);
      const summary = {
        ...(each ? {} : { out: values.out }),
        model: modelName,
        backend: model.info.backend,
        method, positions, format: values.chat ? "chat" : "text",
        prompts: {
          a: { file: basename(values.a), size: setA.length, sha256: hashPromptSet(setA) },
          b: { file: basename(values.b), size: setB.length, sha256: hashPromptSet(setB) },
        },
        ...(each ? { files: files.map((f) => ({ out: f.out, positions: f.extraction.metadata.positions, points: f.extraction.summary })) } : { points: files[0]!.extraction.summary }),
        seconds,
      };
      if (values.json) console.log(JSON.stringify(summary));
      else {
        for (const { out, extraction } of files) {
          console.log(`wrote ${out}: ${extraction.vectors.size} directions (${method}, positions ${extraction.metadata.positions}) from ${setA.length} + ${setB.length} prompts`);
          console.log("point            norm  mean |x|  cos prev  sep (d)  accuracy");
          for (const p of extraction.summary) {
            console.log(
              `${p.point.padEnd(14)} ${p.norm.toFixed(3).padStart(6)} ${p.meanResidualNorm.toFixed(2).padStart(9)} ${(p.cosinePrevious === null ? "-" : p.cosinePrevious.toFixed(3)).padStart(9)} ${p.separation.d.toFixed(2).padStart(8)} ${p.separation.accuracy.toFixed(2).padStart(9)}`,
            );
          }
        }
        console.log(`${seconds.toFixed(1)} s`);
      }
    } finally {
      model.dispose();
    }
  },
};
