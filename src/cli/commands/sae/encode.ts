import { decode, encode, newRowScale, type Sae } from "../../../sae/sae.ts";
import { CliError, parse, type Command, readFlagFile } from "../../args.ts";
import { openSae, saeFlags, saeFlagsHelp } from "./options.ts";

const help = `steerkit sae encode — encode vectors with an SAE and decode them back (dense, no model needed)

Usage: steerkit sae encode <dir> --input <vectors.json> [--point <point>] [--norm-scaling-factor <f>] [--json]

  <dir>                        an SAELens, sparsify (<hookpoint>/) or Gemma Scope directory
  --input <vectors.json>       a JSON array of input vectors, each d_in numbers: [[...], [...]]
${saeFlagsHelp}

--json prints { "acts": [[d_sae numbers per vector]], "recon": [[d_in numbers per vector]] }, so any SAE
can be checked against another implementation; without it, a summary per vector.
`;

/** Parse and check the input vectors: an array of arrays of d_in finite numbers. */
export function parseVectors(value: unknown, dIn: number): number[][] {
  if (!Array.isArray(value)) throw new CliError("--input must hold a JSON array of vectors");
  if (value.length > 0 && value.every((v) => typeof v === "number")) throw new CliError("--input must hold an array of vectors ([[...], ...]); wrap a single vector in brackets");
  value.forEach((v, r) => {
    if (!Array.isArray(v) || v.length !== dIn) throw new CliError(`--input vector ${r} must be an array of ${dIn} numbers (the SAE's d_in), got ${Array.isArray(v) ? `${v.length} values` : typeof v}`);
    v.forEach((x, i) => {
      if (typeof x !== "number" || !Number.isFinite(x)) throw new CliError(`--input vector ${r}[${i}] is ${JSON.stringify(x)}, expected a finite number`);
    });
  });
  return value as number[][];
}

/** Dense encode + decode of each vector. */
export function encodeAll(sae: Sae, vectors: readonly number[][]): { acts: Float32Array[]; recon: Float32Array[] } {
  const scratch = new Float32Array(sae.info.dIn);
  const acts: Float32Array[] = [];
  const recon: Float32Array[] = [];
  for (const x of vectors) {
    const a = new Float32Array(sae.info.dSae);
    const out = new Float32Array(sae.info.dIn);
    const row = newRowScale();
    encode(sae, x, a, scratch, row);
    decode(sae, a, out, row);
    acts.push(a);
    recon.push(out);
  }
  return { acts, recon };
}

export const saeEncodeCommand: Command = {
  summary: "encode vectors (JSON) and decode them: dense activations and reconstructions",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, { ...saeFlags, input: { type: "string" } }, true);
    if (positionals.length !== 1) throw new CliError(`expected one SAE directory, got ${positionals.length}`);
    if (values.input === undefined) throw new CliError("--input <vectors.json> is required");
    const text = readFlagFile("input", values.input);
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw new CliError(`--input: ${values.input} is not valid JSON: ${(e as Error).message}`);
    }
    const sae = openSae(positionals[0]!, values);
    const vectors = parseVectors(parsed, sae.info.dIn);
    const { acts, recon } = encodeAll(sae, vectors);
    if (values.json) {
      console.log(JSON.stringify({ acts: acts.map((a) => Array.from(a)), recon: recon.map((r) => Array.from(r)) }));
      return;
    }
    vectors.forEach((x, r) => {
      const a = acts[r]!;
      const active = [...a.keys()].filter((i) => a[i]! !== 0).sort((i, j) => a[j]! - a[i]!);
      let err = 0;
      let norm = 0;
      for (let i = 0; i < x.length; i++) {
        err += (x[i]! - recon[r]![i]!) ** 2;
        norm += x[i]! ** 2;
      }
      const top = active.slice(0, 5).map((i) => `${i}=${a[i]!.toPrecision(4)}`).join(", ");
      const relErr = norm > 0 ? Math.sqrt(err / norm).toPrecision(3) : "n/a";
      console.log(`vector ${r}: ${active.length} active latents${top ? ` (top: ${top})` : ""}; reconstruction error ‖x - x̂‖/‖x‖ = ${relErr}`);
    });
  },
};
