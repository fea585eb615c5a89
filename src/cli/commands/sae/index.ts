/**
 * `steerkit sae <subcommand>`: SAE tools. Subcommands live beside this file, one module each;
 * this only dispatches (the loaders' `info`/`encode` and the trainer's `train` join here).
 */
import { CliError, type Command } from "../../args.ts";
import { featuresCommand } from "./features.ts";

export const saeSubcommands: Record<string, Command> = {
  features: featuresCommand,
};

const help = () => `steerkit sae — sparse autoencoder tools

Usage: steerkit sae <subcommand> [options]

Subcommands:
${Object.entries(saeSubcommands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

${Object.values(saeSubcommands)
  .map((c) => c.help)
  .join("\n")}`;

export const saeCommand: Command = {
  summary: "SAE tools: find features",
  get help() {
    return help();
  },
  async run(argv) {
    const [name, ...rest] = argv;
    const sub = name === undefined ? undefined : saeSubcommands[name];
    if (!sub) throw new CliError(`${name === undefined ? "missing subcommand" : `unknown subcommand "${name}"`}; expected one of ${Object.keys(saeSubcommands).join(", ")}`);
    await sub.run(rest);
  },
};
