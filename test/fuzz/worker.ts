// Fuzz worker: a child process that loads one input after another, as a user's process would, and
// reports each outcome on stdout. It is a separate process so that an abort (SIGABRT from a
// llama.cpp assertion, a native crash in onnxruntime) or a hang costs the campaign one worker, which
// the parent (campaign.ts) notices, records against the input in flight and replaces.
//
// Protocol: one line per input on stdin, `<format>\t<path>`; one JSON line per input on stdout,
// `{ "outcome": "loaded" | "clean" | "unclean", "message": ... }`. "clean" is a SteerkitError (what
// Steerkit promises for a bad file); "unclean" is any other exception (a TypeError, a RangeError...),
// which the campaign counts separately: not a crash, but not the clear error either.
import { createInterface } from "node:readline";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { SteerkitError } from "../../src/core/errors.ts";
import type { Model } from "../../src/core/backend.ts";
import { loadSae } from "../../src/sae/load.ts";
import { encoderInput, newRowScale, preActivation } from "../../src/sae/sae.ts";

export type FuzzFormat = "gguf" | "onnx" | "sae" | "direction";

/** Result lines start with this; anything else on stdout (a native library printing) is ignored. */
export const RESULT_MARK = "@@steerkit-fuzz ";

const PROMPT = "Once upon a time, \u00e9\u2603 <s></s>\n\t{}";

/** Tokenize, detokenize and run one forward pass on a loaded model, then free everything. */
async function exercise(m: Model): Promise<void> {
  try {
    const tokens = m.tokenize(PROMPT).slice(0, 16);
    m.detokenize(tokens);
    const seq = m.createSequence();
    try {
      await seq.prefill(tokens.length > 0 ? tokens : [0]);
    } finally {
      seq.free();
    }
  } finally {
    m.dispose();
  }
}

async function load(format: FuzzFormat, path: string): Promise<void> {
  switch (format) {
    case "gguf": {
      // Load, tokenize and run one forward pass: graph-build assertions happen at the first decode.
      return exercise(await llamaCpp.load(path, { contextLength: 32, threads: 1 }));
    }
    case "onnx": {
      const { onnx } = await import("../../src/adapters/onnx/index.ts");
      return exercise(await onnx.load(path, { contextLength: 32, threads: 1 }));
    }
    case "sae": {
      const sae = loadSae(path);
      const x = new Float32Array(sae.info.dIn).fill(0.5);
      const input = new Float32Array(sae.info.dIn);
      encoderInput(sae, x, input, newRowScale());
      for (let i = 0; i < Math.min(sae.info.dSae, 8); i++) preActivation(sae, input, i);
      return;
    }
    case "direction": {
      await createArtifacts().register("d", directionArtifact, { path }).load(directionArtifact, "d");
      return;
    }
  }
}

if (import.meta.main) {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [format, path] = line.split("\t") as [FuzzFormat, string];
    let result: { outcome: string; message?: string };
    try {
      await load(format, path);
      result = { outcome: "loaded" };
    } catch (e) {
      const message = (e as Error)?.message ?? String(e);
      result = e instanceof SteerkitError ? { outcome: "clean", message } : { outcome: "unclean", message: `${(e as Error)?.name}: ${message}` };
    }
    process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
  }
}
