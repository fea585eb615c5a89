import { openModel } from "../../adapters/index.ts";
import { allPoints, pointName, toLlamaCppTensor, toTransformerLens } from "../../core/sites.ts";
import { CliError, parse, type Command } from "../args.ts";

const help = `steerkit inspect — describe a model and its hook sites

Usage: steerkit inspect <model> [--backend <name>] [--json]

  <model>            .gguf file or ONNX export directory
  --backend <name>   llama-cpp | onnx | reference (default: from the path)
  --json             print one JSON object
`;

export const inspectCommand: Command = {
  summary: "show a model's architecture, size, vocabulary and hook sites",
  help,
  async run(argv) {
    const { values, positionals } = parse(argv, { backend: { type: "string" }, json: { type: "boolean" } }, true);
    if (positionals.length !== 1) throw new CliError(`expected one model path, got ${positionals.length}`);
    const model = await openModel(positionals[0]!, { backend: values.backend });
    try {
      const { info } = model;
      const sites = allPoints(info.nLayers).map((p) => ({
        point: pointName(p),
        transformerLens: toTransformerLens(p),
        llamaCpp: toLlamaCppTensor(p, info.nLayers, info.architecture),
      }));
      if (values.json) {
        console.log(JSON.stringify({ ...info, capabilities: model.capabilities, hasChatTemplate: info.chatTemplate !== null, sites }));
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
      ];
      for (const [k, v] of rows) console.log(`${k.padEnd(16)} ${v}`);
      console.log(`\nhook sites (${sites.length}; layers are 0-based, resid_pre.L = resid_post.(L-1)):`);
      for (const s of sites) console.log(`  ${s.point.padEnd(14)} ${s.transformerLens.padEnd(26)} ${s.llamaCpp}`);
    } finally {
      model.dispose();
    }
  },
};
