/** Argument parsing for the CLI: node's `util.parseArgs`, with errors that name the flag. */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { SteerkitError } from "../core/errors.ts";
import { readRegularText } from "../formats/files.ts";

/** A usage error: printed without a stack, exit code 2. */
export class CliError extends SteerkitError {
  override name = "CliError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("USAGE", message, options);
  }
}

export interface Command {
  readonly summary: string;
  readonly help: string;
  /** The command answers `--help` itself (a dispatcher whose subcommands have their own help). */
  readonly handlesHelp?: boolean;
  run(argv: readonly string[]): Promise<void>;
}

export function parse<T extends NonNullable<ParseArgsConfig["options"]>>(argv: readonly string[], options: T, allowPositionals = false) {
  try {
    return parseArgs({ args: [...argv], options, allowPositionals, strict: true });
  } catch (e) {
    throw new CliError((e as Error).message.replace(/\. To specify a positional argument.*$/s, ""));
  }
}

/** A numeric flag, checked: `--max-tokens abc` names the flag and what it got. */
export function numberFlag(name: string, value: string | undefined, check: { integer?: boolean; min?: number; max?: number } = {}): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  const want = `${check.integer ? "an integer" : "a number"}${check.min !== undefined ? ` >= ${check.min}` : ""}${check.max !== undefined ? ` <= ${check.max}` : ""}`;
  if (value.trim() === "" || !Number.isFinite(n) || (check.integer && !Number.isInteger(n)) || (check.min !== undefined && n < check.min) || (check.max !== undefined && n > check.max)) {
    throw new CliError(`--${name} must be ${want}, got "${value}"`);
  }
  return n;
}

/**
 * The text of a file a flag names (`--input`, `--corpus`, ...), through the shared reader: a FIFO or
 * device fails at once rather than blocking the command; errors name the flag and the file.
 */
export function readFlagFile(flag: string, path: string): string {
  return readRegularText(path, (reason) => {
    throw new CliError(`--${flag}: cannot read ${path} (${reason})`);
  });
}

/**
 * A command that dispatches to subcommands (`steerkit sae <sub>`, `steerkit directions <sub>`),
 * answering `--help` for itself and for each subcommand.
 */
export function subcommands(name: string, title: string, summary: string, subs: Record<string, Command>): Command {
  const help = `steerkit ${name} — ${title}

Usage: steerkit ${name} <subcommand> [options]

Subcommands:
${Object.entries(subs)
  .map(([sub, c]) => `  ${sub.padEnd(8)} ${c.summary}`)
  .join("\n")}

Run "steerkit ${name} <subcommand> --help" for its options.
`;
  const names = Object.keys(subs).join(", ");
  return {
    summary,
    help,
    handlesHelp: true,
    async run(argv) {
      const [sub, ...rest] = argv;
      if (sub === "--help" || sub === "-h" || sub === "help") {
        console.log(help);
        return;
      }
      if (sub === undefined) throw new CliError(`expected a subcommand: ${names}`);
      const command = subs[sub];
      if (!command) throw new CliError(`unknown subcommand "${sub}"; expected one of ${names}`);
      if (rest.includes("--help") || rest.includes("-h")) {
        console.log(command.help);
        return;
      }
      await command.run(rest);
    },
  };
}
