/**
 * `steerkit directions <subcommand>`: residual directions from a shell. Each subcommand is its own
 * module; this one only dispatches (and answers `--help` for itself and for each subcommand).
 */
import { CliError, type Command } from "../../args.ts";
import { directionsExportCommand } from "./export.ts";
import { directionsExtractCommand } from "./extract.ts";
import { directionsInfoCommand } from "./info.ts";
import { directionsSelectCommand } from "./select.ts";

const subcommands: Record<string, Command> = {
  extract: directionsExtractCommand,
  export: directionsExportCommand,
  info: directionsInfoCommand,
  select: directionsSelectCommand,
};

const help = `steerkit directions — extract, describe and convert residual directions

Usage: steerkit directions <subcommand> [options]

Subcommands:
${Object.entries(subcommands)
  .map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`)
  .join("\n")}

Run "steerkit directions <subcommand> --help" for its options.
`;

export const directionsCommand: Command = {
  summary: "directions: extract (difference of means, PCA), describe, export as llama.cpp control vectors",
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
