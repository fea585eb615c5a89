// Fuzz worker: a child process that loads one input after another, as a user's process would, and
// reports each outcome on stdout. It is a separate process so that an abort (SIGABRT from a
// llama.cpp assertion, a native crash in onnxruntime) or a hang costs the campaign one worker, which
// the parent (campaign.ts) notices, records against the input in flight and replaces.
//
// Protocol: one line per input on stdin, `<format>\t<path>`; one JSON line per input on stdout,
// `{ "outcome": "loaded" | "clean" | "unclean" | "misleading", "message": ... }`. "clean" is a
// SteerkitError (what Steerkit promises for a bad file); "unclean" is any other exception (a
// TypeError, a RangeError...), which the campaign counts separately: not a crash, but not the clear
// error either. "misleading" is an input that loaded but whose first forward pass gives non-finite
// logits (or an SAE non-finite activations): the failure a user would meet later, far from the file.
import { createInterface } from "node:readline";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { generate } from "../../src/core/generate.ts";
import { readGgufHeader } from "../../src/formats/gguf.ts";
import { checkFiniteWeights } from "../../src/formats/gguf-scan.ts";
import { checkFiniteInitializers, readOnnxFile } from "../../src/formats/onnx/index.ts";
import { join } from "node:path";
import { addVector } from "../../src/plugins/index.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import { SteerkitError } from "../../src/core/errors.ts";
import type { Model } from "../../src/core/backend.ts";
import { loadSae } from "../../src/sae/load.ts";
import { encoderInput, newRowScale, preActivation } from "../../src/sae/sae.ts";

export type FuzzFormat = "gguf" | "onnx" | "sae" | "direction" | "controlvector";

/** A load that "succeeded" into non-finite numbers. */
class Misleading extends Error {}

/** Result lines start with this; anything else on stdout (a native library printing) is ignored. */
export const RESULT_MARK = "@@steerkit-fuzz ";

const PROMPT = "Once upon a time, \u00e9\u2603 <s></s>\n\t{}";

/** Tokenize, detokenize and run one forward pass on a loaded model, then free everything. */
async function exercise(m: Model, afterLoad?: () => string): Promise<void> {
  try {
    const tokens = m.tokenize(PROMPT).slice(0, 16);
    m.detokenize(tokens);
    const seq = m.createSequence();
    try {
      const logits = await seq.prefill(tokens.length > 0 ? tokens : [0]);
      const bad = logits.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) throw new Misleading(`loaded, but logit ${bad} of the first forward pass is ${logits[bad]}${afterLoad ? ` (${afterLoad()})` : ""}`);
    } finally {
      seq.free();
    }
  } finally {
    m.dispose();
  }
}

/** For a misleading load: whether the opt-in full weight scan (`checkWeights: "all"`) would have refused the file. */
function fullScan(check: () => unknown): string {
  try {
    check();
    return `checkWeights "all" finds nothing`;
  } catch (e) {
    return `checkWeights "all" refuses it: ${(e as Error).message.replace(/^.*?: /, "").slice(0, 160)}`;
  }
}

/** stories260K on llama.cpp, loaded once per worker: the model control-vector mutants are applied to. */
let steered: Model | null = null;

async function load(format: FuzzFormat, path: string): Promise<void> {
  switch (format) {
    case "gguf": {
      // Load, tokenize and run one forward pass: graph-build assertions happen at the first decode.
      // With the default weight check (1-D tensors); a NaN logit says whether the full scan catches it.
      return exercise(await llamaCpp.load(path, { contextLength: 32, threads: 1 }), () => fullScan(() => checkFiniteWeights(readGgufHeader(path), "all")));
    }
    case "onnx": {
      const { onnx } = await import("../../src/adapters/onnx/index.ts");
      return exercise(await onnx.load(path, { contextLength: 32, threads: 1 }), () => fullScan(() => checkFiniteInitializers(readOnnxFile(join(path, "model.onnx")), "all")));
    }
    case "sae": {
      const sae = loadSae(path);
      const x = new Float32Array(sae.info.dIn).fill(0.5);
      const input = new Float32Array(sae.info.dIn);
      encoderInput(sae, x, input, newRowScale());
      for (let i = 0; i < Math.min(sae.info.dSae, 8); i++) {
        const a = preActivation(sae, input, i);
        if (!Number.isFinite(a)) throw new Misleading(`loaded, but latent ${i}'s pre-activation is ${a}`);
      }
      return;
    }
    case "direction": {
      await createArtifacts().register("d", directionArtifact, { path }).load(directionArtifact, "d");
      return;
    }
    case "controlvector": {
      // As Steerkit loads it (the direction kind reads .gguf control vectors), then as llama.cpp applies
      // it: add-vector on stories260K takes the native control-vector path (llama_set_adapter_cvec).
      const artifacts = createArtifacts().register("d", directionArtifact, { path });
      await artifacts.load(directionArtifact, "d");
      steered ??= await llamaCpp.load(DEFAULT_MODEL_PATH, { contextLength: 32, threads: 1 });
      try {
        await generate(steered, { prompt: "Once upon a time", maxTokens: 2, temperature: 0, plugins: [addVector({ vector: "d" })], artifacts });
      } catch (e) {
        // Sampling's answer to all-NaN logits: the vector loaded but made the model's numbers non-finite.
        if (e instanceof RangeError && /every logit is/.test(e.message)) throw new Misleading(`loaded, but ${e.message}`);
        throw e;
      }
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
      result =
        e instanceof Misleading
          ? { outcome: "misleading", message }
          : e instanceof SteerkitError
            ? { outcome: "clean", message }
            : { outcome: "unclean", message: `${(e as Error)?.name}: ${message}` };
    }
    process.stdout.write(`${RESULT_MARK}${JSON.stringify(result)}\n`);
  }
}
