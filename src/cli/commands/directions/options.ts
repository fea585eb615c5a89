/** Flag parsing shared by the directions subcommands. */
import { PointPattern, type PointsSpec } from "../../../core/points.ts";
import * as v from "valibot";
import { CliError } from "../../args.ts";

/** `--points all`, `--points resid_post.*`, `--points resid_post.1-3,resid_mid.2` (repeatable). */
export function pointsFlag(values: readonly string[] | undefined): PointsSpec | undefined {
  if (values === undefined || values.length === 0) return undefined;
  const parts = values.flatMap((x) => x.split(",")).map((x) => x.trim()).filter((x) => x !== "");
  if (parts.length === 1 && (parts[0] === "all" || parts[0] === "every")) return "all";
  for (const p of parts) if (!v.is(PointPattern, p)) throw new CliError(`--points: "${p}" is not a point such as resid_post.3, resid_post.1-3 or resid_post.*`);
  if (parts.length === 0) throw new CliError("--points: give at least one point");
  return parts;
}
