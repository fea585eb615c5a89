/**
 * `steerkit sae features`: feature discovery from a shell (src/sae/discover.ts does the work).
 * Three modes: active latents per token of one prompt; latents that differ most between two
 * prompt files (contrast); top-activating contexts of one latent over a text file. `--json` prints
 * one object; a progress bar with an ETA goes to stderr on a terminal.
 */
import { openModel } from "../../../adapters/index.ts";
import { createArtifacts } from "../../../core/artifacts.ts";
import { DEFAULT_MODEL_PATH } from "../../../default-model.ts";
import { saeArtifact } from "../../../sae/artifact.ts";
import { activeLatents, contrastLatents, topContexts } from "../../../sae/discover.ts";
import type { Sae } from "../../../sae/sae.ts";
import { CliError, numberFlag, parse, type Command, readFlagFile } from "../../args.ts";
import { progressBar } from "../../progress.ts";

export const featuresHelp = `steerkit sae features — find SAE latents: per token, by contrast, or by top contexts

Usage: steerkit sae features <sae-dir> [--model <m>] --prompt <text>
       steerkit sae features <sae-dir> [--model <m>] --contrast <a.txt> --against <b.txt>
       steerkit sae features <sae-dir> [--model <m>] --latent <i> --texts <file.txt>

  <sae-dir>              an SAE directory (SAELens, sparsify or Gemma Scope layout)
  --model <path>         .gguf file or ONNX export directory (default: the embedded stories260K.gguf)
  --backend <name>       llama-cpp | onnx | reference (default: from the path)
  --prompt <text>        list the strongest active latents at each token
  --contrast <file>      prompts of set A, one per line; with --against <file> (set B): latents whose
                         mean activation per token differs most (--higher-in a|b to rank one way)
  --chat                 render each line as a user turn with the model's chat template (and its
                         generation prompt), as the model sees a request
  --positions all|last   contrast: every prompt token (default) or only each prompt's last one
                         (with --chat: where the model decides how to answer)
  --latent <i> --texts <file>
                         the token windows (one text per line) where latent i fires hardest
  --point <p>            the point to read (default: the SAE's own; another needs --override-point)
  --override-point       read the SAE at a point other than its own
  --top <n>              how many latents or contexts to list (default 10)
  --topk exact|approximate
                         TopK SAEs: exact (default; full encode per token) or approximate
  --threads <n>          CPU threads for the backend
  --json                 print one JSON object
`;

export interface FeaturesIo {
  /** Load the SAE at `dir` (the CLI registers it as a file artifact). */
  loadSae(dir: string): Promise<Sae>;
  print(line: string): void;
}

const defaultIo: FeaturesIo = {
  loadSae: (dir) => createArtifacts().register("sae", saeArtifact, { path: dir }).load(saeArtifact, "sae"),
  print: (line) => console.log(line),
};

function lines(file: string, flag: string): string[] {
  const text = readFlagFile(flag, file);
  const out = text.split("\n").map((l) => l.trim()).filter((l) => l.length > 0);
  if (out.length === 0) throw new CliError(`--${flag}: ${file} has no non-empty lines`);
  return out;
}

export function makeFeaturesCommand(io: FeaturesIo = defaultIo): Command {
  return {
    summary: "find SAE latents: active per token, by contrast of two prompt sets, or top contexts",
    help: featuresHelp,
    async run(argv) {
      const { values, positionals } = parse(
        argv,
        {
          model: { type: "string" },
          backend: { type: "string" },
          prompt: { type: "string" },
          contrast: { type: "string" },
          against: { type: "string" },
          "higher-in": { type: "string" },
          chat: { type: "boolean" },
          positions: { type: "string" },
          latent: { type: "string" },
          texts: { type: "string" },
          point: { type: "string" },
          "override-point": { type: "boolean" },
          top: { type: "string" },
          topk: { type: "string" },
          threads: { type: "string" },
          json: { type: "boolean" },
        },
        true,
      );
      if (positionals.length !== 1) throw new CliError(`expected one SAE directory, got ${positionals.length}`);
      const modes = [values.prompt !== undefined, values.contrast !== undefined, values.latent !== undefined].filter(Boolean).length;
      if (modes !== 1) throw new CliError("give exactly one of --prompt, --contrast (with --against) or --latent (with --texts)");
      if (values.contrast !== undefined && values.against === undefined) throw new CliError("--contrast needs --against <file> (set B)");
      if (values.latent !== undefined && values.texts === undefined) throw new CliError("--latent needs --texts <file>");
      if (values.topk !== undefined && values.topk !== "exact" && values.topk !== "approximate") throw new CliError(`--topk must be exact or approximate, got "${values.topk}"`);
      const higherIn = values["higher-in"];
      if (higherIn !== undefined && higherIn !== "a" && higherIn !== "b") throw new CliError(`--higher-in must be a or b, got "${higherIn}"`);
      const positions = values.positions;
      if (positions !== undefined && positions !== "all" && positions !== "last") throw new CliError(`--positions must be all or last, got "${positions}"`);
      if (positions !== undefined && values.contrast === undefined) throw new CliError("--positions applies to --contrast only");
      const top = numberFlag("top", values.top, { integer: true, min: 1, max: 10000 }) ?? 10;
      const latent = numberFlag("latent", values.latent, { integer: true, min: 0 });
      const threads = numberFlag("threads", values.threads, { integer: true, min: 1 });
      const setA = values.contrast !== undefined ? lines(values.contrast, "contrast") : [];
      const setB = values.against !== undefined ? lines(values.against, "against") : [];
      const texts = values.texts !== undefined ? lines(values.texts, "texts") : [];

      const sae = await io.loadSae(positionals[0]!);
      const model = await openModel(values.model ?? DEFAULT_MODEL_PATH, { backend: values.backend, ...(threads ? { threads } : {}) });
      try {
        const common = { topk: values.topk as "exact" | "approximate" | undefined, overridePoint: values["override-point"] ?? false, top, format: values.chat ? ("chat" as const) : ("text" as const) };
        const point = values.point;
        if (values.prompt !== undefined) {
          const r = await activeLatents(model, sae, point, values.prompt, common);
          if (values.json) return io.print(JSON.stringify(r));
          io.print(`active latents per token at ${r.point} (strongest first, top ${top}):`);
          for (const t of r.tokens) {
            io.print(`${String(t.position).padStart(4)} ${JSON.stringify(t.text).padEnd(14)} ${t.latents.map((l) => `${l.latent}:${l.activation.toFixed(3)}`).join(" ") || "-"}`);
          }
          return;
        }
        if (values.contrast !== undefined) {
          const bar = progressBar(setA.length + setB.length, "contrast");
          const r = await contrastLatents(model, sae, point, setA, setB, { ...common, ...(higherIn ? { higherIn } : {}), ...(positions ? { positions } : {}), onProgress: (d) => bar.update(d) });
          bar.done();
          if (values.json) return io.print(JSON.stringify(r));
          io.print(`latents at ${r.point}: set A ${setA.length} prompts / ${r.tokensA} tokens, set B ${setB.length} prompts / ${r.tokensB} tokens`);
          io.print(`${"latent".padStart(7)} ${"mean A".padStart(9)} ${"mean B".padStart(9)} ${"A − B".padStart(9)} ${"active A".padStart(9)} ${"active B".padStart(9)}`);
          for (const c of r.latents) {
            io.print(`${String(c.latent).padStart(7)} ${c.meanA.toFixed(4).padStart(9)} ${c.meanB.toFixed(4).padStart(9)} ${c.diff.toFixed(4).padStart(9)} ${String(c.activeA).padStart(9)} ${String(c.activeB).padStart(9)}`);
          }
          return;
        }
        const bar = progressBar(texts.length, `latent ${latent}`);
        const r = await topContexts(model, sae, point, latent!, texts, { ...common, onProgress: (d) => bar.update(d) });
        bar.done();
        if (values.json) return io.print(JSON.stringify(r));
        io.print(`latent ${r.latent} at ${r.point}: active at ${r.active} of ${r.tokens} tokens; top ${r.contexts.length}:`);
        for (const c of r.contexts) io.print(`${c.activation.toFixed(3).padStart(9)}  text ${c.text} pos ${c.position}: ${JSON.stringify(c.before)} [${c.tokenText}] ${JSON.stringify(c.after)}`);
      } finally {
        model.dispose();
      }
    },
  };
}

export const featuresCommand = makeFeaturesCommand();
