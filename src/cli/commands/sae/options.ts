/** The options every `steerkit sae` subcommand shares: which SAE, at which point. */
import { loadSae } from "../../../sae/load.ts";
import type { Sae } from "../../../sae/sae.ts";
import { numberFlag } from "../../args.ts";

export const saeFlags = {
  point: { type: "string" },
  "norm-scaling-factor": { type: "string" },
  json: { type: "boolean" },
} as const;

export const saeFlagsHelp = `  --point <point>              the point the SAE reads (e.g. resid_post.2), when its files name none
  --norm-scaling-factor <f>    SAELens expected_average_only_in: the release's norm scaling factor
  --json                       print one JSON object`;

export function openSae(dir: string, values: { point?: string; "norm-scaling-factor"?: string }): Sae {
  const normScalingFactor = numberFlag("norm-scaling-factor", values["norm-scaling-factor"], { min: Number.MIN_VALUE });
  return loadSae(dir, { point: values.point, normScalingFactor });
}
