import { pointName } from "../../../core/sites.ts";
import type { SaeInfo } from "../../../sae/sae.ts";
import { CliError, parse, type Command } from "../../args.ts";
import { openSae, saeFlags, saeFlagsHelp } from "./options.ts";

const help = `steerkit sae info — describe an SAE directory

Usage: steerkit sae info <dir> [--point <point>] [--norm-scaling-factor <f>] [--json]

  <dir>                        an SAELens, sparsify (<hookpoint>/) or Gemma Scope directory
${saeFlagsHelp}
`;

/** The info as printed: the point by name. */
export function describeSae(info: SaeInfo) {
  return { ...info, point: info.point && pointName(info.point), warnings: info.warnings ?? [] };
}

function normalizationText(n: SaeInfo["normalization"]): string {
  if (n.kind === "scale") return `scale inputs by ${n.factor}`;
  if (n.kind === "layer_norm") return `layer_norm (eps ${n.eps})`;
  return n.kind;
}

export const saeInfoCommand: Command = {
  summary: "family, architecture, widths, k, point, dtype and normalization of an SAE",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, saeFlags, true);
    if (positionals.length !== 1) throw new CliError(`expected one SAE directory, got ${positionals.length}`);
    const info = describeSae(openSae(positionals[0]!, values).info);
    if (values.json) {
      console.log(JSON.stringify(info));
      return;
    }
    const rows: [string, string][] = [
      ["family", info.family],
      ["architecture", info.architecture],
      ["d_in", String(info.dIn)],
      ["d_sae", String(info.dSae)],
      ["k", info.k === null ? "-" : String(info.k)],
      ["hook name", info.hookName ?? "(none in the files)"],
      ["point", info.point ?? "(unknown: give --point)"],
      ["dtype", info.dtype],
      ["b_dec on input", info.applyBDecToInput ? "subtracted" : "no"],
      ["normalization", normalizationText(info.normalization)],
    ];
    for (const [k, v] of rows) console.log(`${k.padEnd(16)} ${v}`);
    for (const w of info.warnings) console.log(`warning: ${w}`);
  },
};
