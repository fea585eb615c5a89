/**
 * The SAE demo's Markdown report: the setup, the contrast candidates with their top contexts, and
 * the steering table. Only data from the run goes in (no timings, no machine names), so a rerun on
 * the same backend prints the same text and docs/sae-demo.md can be checked against it.
 */
import type { ActivatingContext } from "../src/sae/index.ts";
import type { Concept } from "./sae-demo-concepts.ts";
import type { Cell, Discovery, Sweep } from "./sae-demo-run.ts";

export interface Setup {
  readonly backend: string;
  readonly concept: Concept;
  /** The steered latents; the sweep's cells are these, then the control. */
  readonly latents: readonly number[];
  readonly control: number;
  readonly controlContexts: readonly ActivatingContext[];
  readonly seeds: number;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly prompts: readonly string[];
  readonly corpus: { readonly n: number; readonly seed: number };
}

const f2 = (x: number) => x.toFixed(2);
const pct = (x: number) => `${(x * 100).toFixed(0)}%`;
/** A context as `before[token]after`, one line, safe inside a Markdown table cell. */
const context = (c: ActivatingContext) => `\`${`${c.before}[${c.tokenText}]${c.after}`.replaceAll("\n", "⏎").replaceAll("`", "'").replaceAll("|", "\\|")}\``;
const quote = (s: string) => s.replaceAll("\n", " ⏎ ").replaceAll("|", "\\|");

export function report(s: Setup, d: Discovery, w: Sweep): string {
  const c = s.concept;
  const out: string[] = [];
  out.push(`# SAE demo: "${c.name}" on stories260K (${s.backend})`, "");
  out.push(
    `Concept words counted: ${c.forms.map((f) => `"${f}"`).join(", ")}. Point ${d.point}. Contrast: ${c.templates.length} template sentences with "${c.word}" ` +
      `(${d.tokensWith} tokens) vs. the same with ${c.others.map((o) => `"${o}"`).join(", ")} (${d.tokensWithout} tokens). ` +
      `Contexts: ${s.corpus.n} stories the model wrote (seeds ${s.corpus.seed}..${s.corpus.seed + s.corpus.n - 1}).`,
    "",
  );
  out.push("## Candidates (largest mean difference first)", "");
  out.push("| rank | latent | mean with | mean without | active tokens with / without | fires on corpus tokens | top contexts on the concept word |");
  out.push("|---:|---:|---:|---:|---:|---:|---:|");
  for (const k of d.candidates) {
    out.push(`| ${k.rank + 1} | ${k.latent} | ${f2(k.meanA)} | ${f2(k.meanB)} | ${k.activeA} / ${k.activeB} | ${k.active} / ${k.tokens} | ${k.onConcept} / ${k.contexts.length} |`);
  }
  const labelled = d.labelled.map((k) => k.latent);
  out.push(
    "",
    `Labelled "${c.name}" (at least half the top contexts on the word): ${labelled.length ? labelled.map((l) => `latent ${l}`).join(", ") : "none"}.` +
      (s.latents.join() !== labelled.join() ? ` Steered instead (--latent): ${s.latents.join(", ")}.` : ""),
    "",
  );
  const contexts = (title: string, list: readonly ActivatingContext[]) => {
    out.push(`### ${title}: top contexts`, "", "| activation | context |", "|---:|---|");
    for (const x of list) out.push(`| ${f2(x.activation)} | ${context(x)} |`);
    out.push("");
  };
  for (const k of d.candidates) contexts(`Latent ${k.latent}`, k.contexts);
  contexts(`Control latent ${s.control} (a fixed random pick, none of the candidates)`, s.controlContexts);
  out.push(`## Steering: sae-clamp, ${s.seeds} seeds`, "");
  out.push(
    `Seed i continues prompt i mod ${s.prompts.length} of ${s.prompts.map((p) => `"${p}"`).join(", ")}; ${s.maxTokens} tokens, temperature ${s.temperature} ` +
      `(top-k 40, top-p 0.95, min-p 0.05). The clamp is the paper's: the latent set to the value at every position. ` +
      `"with" = generations mentioning the concept at least once; "known" = share of generated words that also occur in the model's own stories (fluency check).`,
    "",
  );
  const cell = (x: Cell) => `${x.generationsWith} / ${s.seeds} | ${x.mentions} | ${pct(x.knownWords)}`;
  const names = [...s.latents.map((l) => `latent ${l}`), `control latent ${s.control}`];
  out.push(`| clamp value | ${names.map((n) => `${n}: with | mentions | known`).join(" | ")} |`);
  out.push(`|---:|${names.map(() => "---:|---:|---:").join("|")}|`);
  out.push(`| unsteered | ${names.map(() => cell(w.unsteered)).join(" | ")} |`);
  for (const r of w.rows) out.push(`| ${r.value} | ${r.cells.map(cell).join(" | ")} |`);
  out.push("", "### Seed 0 under each setting", "");
  out.push(`- unsteered: ${quote(w.unsteered.sample)}`);
  for (const r of w.rows) r.cells.forEach((x, i) => out.push(`- ${names[i]} = ${r.value}: ${quote(x.sample)}`));
  return out.join("\n");
}
