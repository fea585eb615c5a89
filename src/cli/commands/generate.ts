import { createArtifacts, type Artifacts } from "../../core/artifacts.ts";
import { directionArtifact } from "../../directions/artifact.ts";
import { generate, stream, type GenerateOptions, type GenerationResult } from "../../core/generate.ts";
import { loadRecipeFile } from "../../core/recipe.ts";
import { openModel } from "../../adapters/index.ts";
import { createRegistry } from "../../plugins/index.ts";
import { DEFAULT_MODEL_PATH } from "../../default-model.ts";
import { CliError, numberFlag, parse, type Command } from "../args.ts";

const help = `steerkit generate — generate text, optionally steered by a recipe

Usage: steerkit generate --prompt <text> [options]

  --model <path>          .gguf file or ONNX export directory (default: the embedded stories260K.gguf)
  --backend <name>        llama-cpp | onnx | reference (default: from the path)
  --prompt <text>         the prompt (required)
  --chat                  treat the prompt as a user message and apply the model's chat template
  --recipe <file.json>    steering recipe: [{ "plugin": "<name>", "options": {...} }] (trusted: may write
                          files and import steerkit-plugin-* packages)
  --direction <name>=<file>
                          register a direction the recipe can name (repeatable): a direction file
                          (.safetensors), a llama.cpp control vector (.gguf), or JSON (an array of
                          numbers, or an object of point name -> array)
  --max-tokens <n>        tokens to generate (default 128)
  --seed <n>              sampling seed, 0..4294967295 (default: random, printed with --json)
  --temperature <t>       0 = greedy (default 0.8)
  --top-k <k>             (default 40; 0 = off)
  --top-p <p>             (default 0.95)
  --min-p <p>             (default 0.05)
  --repeat-penalty <r>    (default 1 = off)
  --stop <text>           stop string (repeatable)
  --ignore-eos            keep going past end-of-sequence tokens
  --threads <n>           CPU threads for the backend
  --no-fast-path          run every hook in JS (for checking native paths)
  --json                  print one JSON object: text, promptTokens, tokens, finishReason, seed, timings
`;

export const generateCommand: Command = {
  summary: "generate text from a prompt, optionally with a steering recipe",
  help,
  async run(argv) {
    const { values } = parse(argv, {
      model: { type: "string" },
      backend: { type: "string" },
      prompt: { type: "string" },
      chat: { type: "boolean" },
      recipe: { type: "string" },
      direction: { type: "string", multiple: true },
      "max-tokens": { type: "string" },
      seed: { type: "string" },
      temperature: { type: "string" },
      "top-k": { type: "string" },
      "top-p": { type: "string" },
      "min-p": { type: "string" },
      "repeat-penalty": { type: "string" },
      stop: { type: "string", multiple: true },
      "ignore-eos": { type: "boolean" },
      threads: { type: "string" },
      "no-fast-path": { type: "boolean" },
      json: { type: "boolean" },
    });
    if (values.prompt === undefined) throw new CliError("--prompt is required");
    const plugins = values.recipe ? await createRegistry().resolve(loadRecipeFile(values.recipe), { trust: "trusted" }) : [];
    const options: GenerateOptions = {
      ...(values.chat ? { messages: [{ role: "user", content: values.prompt }] } : { prompt: values.prompt }),
      plugins,
      artifacts: artifactFlags(values.direction ?? []),
      maxTokens: numberFlag("max-tokens", values["max-tokens"], { integer: true, min: 1 }),
      seed: numberFlag("seed", values.seed, { integer: true, min: 0, max: 0xffffffff }),
      temperature: numberFlag("temperature", values.temperature, { min: 0 }),
      topK: numberFlag("top-k", values["top-k"], { integer: true, min: 0 }),
      topP: numberFlag("top-p", values["top-p"], { min: 0, max: 1 }),
      minP: numberFlag("min-p", values["min-p"], { min: 0, max: 1 }),
      repetitionPenalty: numberFlag("repeat-penalty", values["repeat-penalty"], { min: 0 }),
      stop: values.stop,
      ignoreEos: values["ignore-eos"],
      fastPath: values["no-fast-path"] ? false : undefined,
    };
    const model = await openModel(values.model ?? DEFAULT_MODEL_PATH, {
      backend: values.backend,
      plugins,
      threads: numberFlag("threads", values.threads, { integer: true, min: 1 }),
    });
    try {
      if (values.json) {
        const result: GenerationResult = await generate(model, options);
        console.log(JSON.stringify(result));
      } else {
        if (!values.chat) process.stdout.write(values.prompt);
        for await (const ev of stream(model, options)) {
          if (ev.type !== "done") process.stdout.write(ev.text);
        }
        process.stdout.write("\n");
      }
    } finally {
      model.dispose();
    }
  },
};

/** `--direction name=path` flags as an artifact store (the CLI is trusted configuration: paths are fine here). */
function artifactFlags(directions: readonly string[]): Artifacts {
  const artifacts = createArtifacts();
  for (const flag of directions) {
    const eq = flag.indexOf("=");
    if (eq <= 0 || eq === flag.length - 1) throw new CliError(`--direction must be <name>=<file>, got "${flag}"`);
    artifacts.register(flag.slice(0, eq), directionArtifact, { path: flag.slice(eq + 1) });
  }
  return artifacts;
}
