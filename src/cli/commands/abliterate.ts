/**
 * `steerkit abliterate <model.gguf> --direction <file> --out <new.gguf>`: weight orthogonalization
 * (src/directions/abliterate.ts) from a shell. Prints what it edited and the largest error the
 * written type introduced, so a user converting Q8_0 to F16 sees what it cost.
 */
import { createArtifacts } from "../../core/artifacts.ts";
import { directionArtifact } from "../../directions/artifact.ts";
import { abliterate, ABLITERATE_TYPES, type AbliterateType } from "../../directions/abliterate.ts";
import { CliError, parse, type Command } from "../args.ts";

const help = `steerkit abliterate — project a direction out of a model's weights (Arditi et al. 2024)

Usage: steerkit abliterate <model.gguf> --direction <file> --out <new.gguf> [options]

  --direction <file>  direction file (.safetensors, .json or a control-vector .gguf)
  --point <point>     which of the file's vectors to use (needed when it has several; one direction
                      is projected out of every writer: token_embd, attn_output, ffn_down, their biases)
  --type auto|f32|f16 type of the edited tensors (default auto: F32 and F16 stay, BF16/Q8_0 -> F32);
                      every other tensor and all metadata are copied byte for byte
  --json              print the report as JSON

The new model, unsteered, behaves like the original with ablate-direction at every point.
`;

export const abliterateCommand: Command = {
  summary: "project a direction out of a GGUF's residual writers (weight orthogonalization)",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      direction: { type: "string" },
      out: { type: "string" },
      point: { type: "string" },
      type: { type: "string" },
      json: { type: "boolean" },
    }, true);
    if (positionals.length !== 1) throw new CliError("give exactly one model .gguf");
    if (values.direction === undefined) throw new CliError("--direction <file> is required");
    if (values.out === undefined) throw new CliError("--out <new.gguf> is required");
    if (values.out === positionals[0]) throw new CliError("--out must differ from the input model");
    const type = (values.type ?? "auto") as AbliterateType;
    if (!ABLITERATE_TYPES.includes(type)) throw new CliError(`--type must be one of ${ABLITERATE_TYPES.join(", ")}, got "${values.type}"`);
    const direction = await createArtifacts().register("direction", directionArtifact, { path: values.direction }).load(directionArtifact, "direction");
    const start = performance.now();
    let report;
    try {
      report = abliterate(positionals[0]!, values.out, direction, { point: values.point, type });
    } catch (e) {
      const msg = (e as Error).message;
      if (!msg.startsWith("abliterate: ")) throw e;
      throw new CliError(msg.slice("abliterate: ".length).replace("choose one with point", "choose one with --point"));
    }
    const seconds = (performance.now() - start) / 1000;
    if (values.json) {
      console.log(JSON.stringify({ ...report, seconds }, null, 2));
      return;
    }
    const types = [...new Set(report.edited.map((e) => `${e.from}->${e.to}`))].join(", ");
    console.log(`wrote ${values.out}: ${report.source} projected out of ${report.edited.length} tensors (${types}), ${report.copied} copied` +
      `${report.untied ? ", output.weight added (tied embeddings)" : ""}; max abs error of the written values ${report.maxAbsError.toExponential(2)}; ${seconds.toFixed(2)} s`);
  },
};
