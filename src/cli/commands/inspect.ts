import { openModel } from "../../adapters/index.ts";
import { allPoints, pointName, toLlamaCppTensor, toTransformerLens } from "../../core/sites.ts";
import { checkFiniteWeights } from "../../formats/gguf-scan.ts";
import { readGgufHeader } from "../../formats/gguf.ts";
import { CliError, parse, type Command } from "../args.ts";
import { progressBar } from "../progress.ts";

const help = `steerkit inspect — describe a model and its hook sites

Usage: steerkit inspect <model> [--backend <name>] [--check-weights] [--json]

  <model>            .gguf file or ONNX export directory
  --backend <name>   llama-cpp | onnx | reference (default: from the path)
  --check-weights    read every weight of a .gguf and refuse NaN / Inf, naming the tensor
                     (loading checks only the 1-D tensors: a full scan reads the whole file)
  --json             print one JSON object
`;

export const inspectCommand: Command = {
  summary: "show a model's architecture, size, vocabulary and hook sites",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, { backend: { type: "string" }, json: { type: "boolean" }, "check-weights": { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new CliError(`expected one model path, got ${positionals.length}`);
    let weights: { tensors: number; bytes: number } | null = null;
    if (values["check-weights"]) {
      if (!positionals[0]!.toLowerCase().endsWith(".gguf")) throw new CliError(`--check-weights reads .gguf files; ${positionals[0]} is not one`);
      const file = readGgufHeader(positionals[0]!);
      const total = file.tensors.reduce((n, t) => n + t.byteLength, 0);
      const bar = progressBar(Math.ceil(total / 1e6), "weights (MB)");
      const scan = checkFiniteWeights(file, "all", { onProgress: (done) => bar.update(Math.floor(done / 1e6)) })!;
      bar.done();
      weights = { tensors: scan.tensorsScanned, bytes: scan.bytesScanned };
    }
    const model = await openModel(positionals[0]!, { backend: values.backend });
    try {
      const { info } = model;
      const sites = allPoints(info.nLayers).map((p) => ({
        point: pointName(p),
        transformerLens: toTransformerLens(p),
        llamaCpp: toLlamaCppTensor(p, info.nLayers, info.architecture),
      }));
      if (values.json) {
        console.log(JSON.stringify({ ...info, capabilities: model.capabilities, hasChatTemplate: info.chatTemplate !== null, sites, ...(weights ? { weightsChecked: weights } : {}) }));
        return;
      }
      const rows: [string, string][] = [
        ["model", info.name],
        ["backend", info.backend],
        ["architecture", info.architecture],
        ["layers", String(info.nLayers)],
        ["width (dModel)", String(info.dModel)],
        ["vocabulary", String(info.vocabSize)],
        ["context", String(info.contextLength)],
        ["BOS / EOS", `${info.bosToken ?? "none"} / ${info.eosTokens.join(", ") || "none"}`],
        ["chat template", info.chatTemplate === null ? "none (plain-completion fallback)" : `${info.chatTemplate.length} chars`],
        ["capabilities", model.capabilities.join(", ")],
        ...(weights ? [["weights", `all finite (${weights.tensors} tensors, ${(weights.bytes / 1e6).toFixed(1)} MB read)`] as [string, string]] : []),
      ];
      for (const [k, v] of rows) console.log(`${k.padEnd(16)} ${v}`);
      console.log(`\nhook sites (${sites.length}; layers are 0-based, resid_pre.L = resid_post.(L-1)):`);
      for (const s of sites) console.log(`  ${s.point.padEnd(14)} ${s.transformerLens.padEnd(26)} ${s.llamaCpp}`);
    } finally {
      model.dispose();
    }
  },
};
