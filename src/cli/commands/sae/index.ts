/**
 * `steerkit sae <subcommand>`: SAEs from a shell. Each subcommand is its own module; this one only
 * dispatches (and answers `--help` for itself and for each subcommand).
 */
import { CliError, type Command } from "../../args.ts";
import { saeEncodeCommand } from "./encode.ts";
import { featuresCommand } from "./features.ts";
import { saeInfoCommand } from "./info.ts";
import { saeTrainCommand } from "./train.ts";

const subcommands: Record<string, Command> = {
  info: saeInfoCommand,
  encode: saeEncodeCommand,
  features: featuresCommand,
  train: saeTrainCommand,
};

const help = `steerkit sae — sparse autoencoder files (SAELens, EleutherAI sparsify, Gemma Scope)

Usage: steerkit sae <subcommand> [options]

Subcommands:
${Object.entries(subcommands)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join("\n")}

Run "steerkit sae <subcommand> --help" for its options.
`;

export const saeCommand: Command = {
  summary: "SAE tools: describe, encode and decode, find features, train (SAELens format)",
  help,
  handlesHelp: true,
  async run(argv) {
    const [name, ...rest] = argv;
    if (name === "--help" || name === "-h" || name === "help") {
      console.log(help);
      return;
    }
    if (name === undefined) throw new CliError(`expected a subcommand: ${Object.keys(subcommands).join(", ")}`);
    const sub = subcommands[name];
    if (!sub) throw new CliError(`unknown subcommand "${name}"; expected one of ${Object.keys(subcommands).join(", ")}`);
    if (rest.includes("--help") || rest.includes("-h")) {
      console.log(sub.help);
      return;
    }
    await sub.run(rest);
  },
};
