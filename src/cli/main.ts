#!/usr/bin/env bun
/**
 * `steerkit <command>`: the same recipes and options as the library, from a shell.
 * Commands live in ./commands/*, one small module each; this file only dispatches.
 */
import { CliError, type Command } from "./args.ts";
import { abliterateCommand } from "./commands/abliterate.ts";
import { convertCommand } from "./commands/convert.ts";
import { directionsCommand } from "./commands/directions/index.ts";
import { evalCommand } from "./commands/eval.ts";
import { generateCommand } from "./commands/generate.ts";
import { inspectCommand } from "./commands/inspect.ts";
import { pluginsCommand } from "./commands/plugins.ts";
import { saeCommand } from "./commands/sae/index.ts";

const commands: Record<string, Command> = {
  generate: generateCommand,
  inspect: inspectCommand,
  convert: convertCommand,
  plugins: pluginsCommand,
  sae: saeCommand,
  directions: directionsCommand,
  abliterate: abliterateCommand,
  eval: evalCommand,
};

const usage = `steerkit — steer language models at inference time

Usage: steerkit <command> [options]     (from the repo: bun run steerkit <command>)

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`)
  .join("\n")}

Run "steerkit <command> --help" for a command's options.`;

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    console.log(usage);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`steerkit: unknown command "${name}"; expected one of ${Object.keys(commands).join(", ")}`);
    return 2;
  }
  if (!command.handlesHelp && (rest.includes("--help") || rest.includes("-h"))) {
    console.log(command.help);
    return 0;
  }
  try {
    await command.run(rest);
    return 0;
  } catch (e) {
    if (e instanceof CliError) {
      console.error(`steerkit ${name}: ${e.message}`);
      return 2;
    }
    console.error(`steerkit ${name}: ${e instanceof Error ? e.message : String(e)}`);
    if (process.env.STEERKIT_DEBUG && e instanceof Error) console.error(e.stack);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
