/**
 * `steerkit directions export`: a direction (Steerkit .safetensors, JSON, or a control vector) to a
 * llama.cpp / repeng control-vector GGUF or to a Steerkit direction file. Scaling is the same as
 * `add-vector`'s (`--scale`, `--relative-to mean-norm`), so an exported control vector at strength
 * 1 adds exactly what the recipe would.
 */
import { createArtifacts } from "../../../core/artifacts.ts";
import { directionArtifact, type Direction } from "../../../directions/artifact.ts";
import { canonicalPoint, parsePoint, pointName } from "../../../core/sites.ts";
import { resolvePoints } from "../../../core/points.ts";
import { writeControlVector } from "../../../directions/control-vector.ts";
import { writeDirectionFile } from "../../../directions/file.ts";
import { CliError, numberFlag, parse, type Command } from "../../args.ts";
import { pointsFlag } from "./options.ts";

const help = `steerkit directions export — write a direction as a llama.cpp control vector (or a direction file)

Usage: steerkit directions export <direction file> --to gguf|safetensors --out <file> [options]

  <direction file>      .safetensors (Steerkit direction file), .gguf (control vector) or .json
  --to <format>         gguf: llama.cpp / repeng control vector (direction.N = resid_post.N, N >= 1)
                        safetensors: Steerkit direction file
  --out <file>
  --points <points>     which points to write (default: every point the file has; required for a
                        file holding one vector for every point)
  --scale <s>           multiply every vector (default 1)
  --relative-to mean-norm
                        scale is a multiple of each point's mean residual norm (from the file's
                        header) and vectors are made unit length first, as add-vector does
  --n-layers <n>        the model's block count (default: the file's n_layers header)
  --model-hint <arch>   controlvector.model_hint (default: the file's architecture header, or "llama")
`;

export const directionsExportCommand: Command = {
  summary: "export a direction as a llama.cpp/repeng control-vector GGUF (or a direction file)",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, {
      to: { type: "string" },
      out: { type: "string" },
      points: { type: "string", multiple: true },
      scale: { type: "string" },
      "relative-to": { type: "string" },
      "n-layers": { type: "string" },
      "model-hint": { type: "string" },
    }, true);
    if (positionals.length !== 1) throw new CliError("give exactly one direction file");
    const to = values.to;
    if (to !== "gguf" && to !== "safetensors") throw new CliError(`--to must be gguf or safetensors, got ${to === undefined ? "nothing" : `"${to}"`}`);
    if (values.out === undefined) throw new CliError("--out <file> is required");
    const relative = values["relative-to"];
    if (relative !== undefined && relative !== "mean-norm") throw new CliError(`--relative-to must be mean-norm, got "${relative}"`);
    const scale = numberFlag("scale", values.scale) ?? 1;
    const direction = await createArtifacts().register("input", directionArtifact, { path: positionals[0]! }).load(directionArtifact, "input");
    const nLayers = numberFlag("n-layers", values["n-layers"], { integer: true, min: 1 }) ?? headerNumber(direction, "n_layers");
    if (nLayers === undefined) throw new CliError("the file does not say how many layers its model has: give --n-layers");
    const vectors = scaled(direction, pointsFlag(values.points), nLayers, scale, relative === "mean-norm");
    if (to === "gguf") {
      const modelHint = values["model-hint"] ?? direction.metadata?.architecture ?? direction.metadata?.model_hint ?? "llama";
      try {
        writeControlVector(values.out, vectors, { modelHint, nLayers });
      } catch (e) {
        throw new CliError(`${(e as Error).message}${/block|outputs/.test((e as Error).message) ? " (choose exportable points with --points resid_post.1-N)" : ""}`);
      }
    } else {
      writeDirectionFile(values.out, { vectors, metadata: { ...(direction.metadata ?? {}), exported_scale: String(scale), ...(relative ? { exported_relative_to: relative } : {}) } });
    }
    console.log(`wrote ${values.out}: ${[...vectors.keys()].join(", ")}`);
  },
};

function headerNumber(d: Direction, key: string): number | undefined {
  const s = d.metadata?.[key];
  const n = s === undefined ? NaN : Number(s);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The chosen points' vectors, scaled as add-vector scales them. */
function scaled(d: Direction, points: ReturnType<typeof pointsFlag>, nLayers: number, scale: number, relative: boolean): Map<string, Float32Array> {
  let chosen: string[];
  try {
    chosen = points === undefined ? [...d.byPoint.keys()].map((k) => pointName(canonicalPoint(parsePoint(k), nLayers))) : resolvePoints(points, nLayers).map(pointName);
  } catch (e) {
    throw new CliError(`--points: ${(e as Error).message}`);
  }
  if (points === undefined && d.vector) throw new CliError("the file holds one vector for every point: choose points with --points");
  const out = new Map<string, Float32Array>();
  for (const p of chosen) {
    const v = d.byPoint.get(p) ?? d.vector;
    if (!v) throw new CliError(`the file has no vector for ${p} (it has ${[...d.byPoint.keys()].join(", ")})`);
    let factor = scale;
    if (relative) {
      const mean = d.meanNorms?.get(p);
      if (mean === undefined) throw new CliError(`--relative-to mean-norm: the file records no mean residual norm for ${p}`);
      factor = (scale * mean) / Math.hypot(...v);
    }
    const c = Float32Array.from(v, (x) => x * factor);
    if (c.some((x) => !Number.isFinite(x))) throw new CliError(`${p} times ${factor} overflows float32`);
    out.set(p, c);
  }
  return out;
}
