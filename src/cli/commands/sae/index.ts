/**
 * `steerkit sae <subcommand>`: SAE tools, one small module per subcommand (train here; info,
 * encode, features arrive with their work). This file only dispatches.
 */
import { CliError, type Command } from "../../args.ts";
import { saeTrainCommand } from "./train.ts";

const subcommands: Record<string, Command> = {
  train: saeTrainCommand,
};

const help = `steerkit sae — sparse autoencoder tools

Usage: steerkit sae <subcommand> [options]

Subcommands:
${Object.entries(subcommands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Run "steerkit sae <subcommand> --help" for its options.`;

export const saeCommand: Command = {
  summary: "sparse autoencoders: train (SAELens format)",
  help,
  helpFor(argv) {
    const sub = argv[0] !== undefined ? subcommands[argv[0]] : undefined;
    return sub ? sub.help : help;
  },
  async run(argv) {
    const [name, ...rest] = argv;
    const sub = name !== undefined ? subcommands[name] : undefined;
    if (!sub) throw new CliError(`${name === undefined ? "missing subcommand" : `unknown subcommand "${name}"`}; expected one of ${Object.keys(subcommands).join(", ")}`);
    await sub.run(rest);
  },
};
