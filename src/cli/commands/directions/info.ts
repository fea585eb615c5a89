/** `steerkit directions info`: what a direction file holds (points, width, norms, provenance). */
import { createArtifacts } from "../../../core/artifacts.ts";
import { directionArtifact } from "../../../directions/artifact.ts";
import { norm } from "../../../directions/math.ts";
import { CliError, parse, type Command } from "../../args.ts";

const help = `steerkit directions info — describe a direction file

Usage: steerkit directions info <file> [--json]

  <file>     .safetensors (Steerkit direction file), .gguf (control vector) or .json
  --json     print JSON: width, points with norms and mean residual norms, header
`;

export const directionsInfoCommand: Command = {
  summary: "describe a direction file or control vector",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, { json: { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new CliError("give exactly one direction file");
    const d = await createArtifacts().register("file", directionArtifact, { path: positionals[0]! }).load(directionArtifact, "file");
    const info = {
      width: d.width,
      shared: d.vector ? { norm: norm(d.vector) } : null,
      points: [...d.byPoint].map(([point, v]) => ({ point, norm: norm(v), meanResidualNorm: d.meanNorms?.get(point) ?? null })),
      metadata: d.metadata ?? {},
    };
    if (values.json) {
      console.log(JSON.stringify(info));
      return;
    }
    console.log(`width ${d.width}${d.vector ? `, one vector for every point (norm ${norm(d.vector).toFixed(4)})` : ""}`);
    for (const p of info.points) console.log(`${p.point.padEnd(14)} norm ${p.norm.toFixed(4)}${p.meanResidualNorm === null ? "" : `  mean |x| ${p.meanResidualNorm.toFixed(3)}`}`);
    for (const [k, v] of Object.entries(info.metadata)) console.log(`${k}: ${v}`);
  },
};
