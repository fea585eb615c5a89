/**
 * A small random-weight llama GGUF for tests, written by the project's generator
 * (bench/make-random-gguf.ts, F16 matrices, stories260K's vocabulary padded to `vocab`), in a child
 * process as a user runs it. The vocabulary-size flag is read from the script, since the generator
 * is being extended (`--vocab <n>` became `--vocab-size <n>` beside a `--vocab stories|bpe` choice).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

const SCRIPT = join(import.meta.dir, "..", "..", "bench", "make-random-gguf.ts");

export interface RandomGgufShape {
  readonly d: number;
  readonly layers: number;
  readonly ff: number;
  readonly heads: number;
  readonly kvHeads: number;
  readonly vocab: number;
  readonly ctx: number;
}

/**
 * Write the model to `out` (throws with the generator's stderr on failure).
 *
 * @example
 * ```ts
 * writeRandomLlamaGguf("/tmp/m.gguf", { d: 256, layers: 2, ff: 512, heads: 4, kvHeads: 2, vocab: 512, ctx: 256 });
 * ```
 */
export function writeRandomLlamaGguf(out: string, s: RandomGgufShape): string {
  const vocabFlag = readFileSync(SCRIPT, "utf8").includes('"vocab-size"') ? "--vocab-size" : "--vocab";
  const args = ["--out", out, "--d", s.d, "--layers", s.layers, "--ff", s.ff, "--heads", s.heads, "--kv-heads", s.kvHeads, vocabFlag, s.vocab, "--ctx", s.ctx];
  const p = Bun.spawnSync(["bun", SCRIPT, ...args.map(String)], { stdout: "pipe", stderr: "pipe" });
  if (p.exitCode !== 0) throw new Error(`bench/make-random-gguf.ts failed: ${p.stderr.toString()}`);
  return out;
}
