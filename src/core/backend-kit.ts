/**
 * What every backend checks at its edge, written once: the tokens a sequence is asked to evaluate
 * and the affine edits core hands it. Backends call these before touching native memory, so the
 * same bad input fails the same way (same code, same wording) on llama.cpp, ONNX and the reference
 * backend, and a server maps the code to an HTTP status without knowing which backend ran.
 */
import type { AffineEdit } from "./backend.ts";
import { SteerkitError } from "./errors.ts";
import { pointName } from "./sites.ts";

/** What a prefill is checked against. */
export interface PrefillLimits {
  /** Names the sequence and model in messages, e.g. `sequence 3 of stories260K`. */
  readonly subject: string;
  /** Tokens already in the sequence's KV cache. */
  readonly cached: number;
  readonly contextLength: number;
  readonly vocabSize: number;
}

/**
 * Check the tokens of a `prefill`/`decode` call: at least one, each an integer token id of the
 * model, and cached + new within the context. Throws INVALID_REQUEST or CONTEXT_OVERFLOW.
 */
export function checkPrefill(tokens: ArrayLike<number>, limits: PrefillLimits): void {
  const { subject, cached, contextLength, vocabSize } = limits;
  const n = tokens.length;
  if (n === 0) throw new SteerkitError("INVALID_REQUEST", `${subject}: prefill needs at least one token, got none`);
  // Before the token scan: a prompt that cannot fit fails in O(1), whatever its length.
  if (cached + n > contextLength) {
    throw new SteerkitError(
      "CONTEXT_OVERFLOW",
      `${subject}: ${cached} cached + ${n} new = ${cached + n} tokens exceed the context length ${contextLength}`,
    );
  }
  for (let i = 0; i < n; i++) {
    const t = tokens[i]!;
    if (!Number.isInteger(t) || t < 0 || t >= vocabSize) {
      throw new SteerkitError("INVALID_REQUEST", `${subject}: tokens[${i}] is ${t}, expected an integer token id in 0..${vocabSize - 1}`);
    }
  }
}

/**
 * Check an affine edit against a residual of width `dModel` before a backend copies it into native
 * memory or a graph input: rank an integer >= 0, `U` `[dModel, rank]` and `V` `[rank, dModel]`
 * Float32Arrays when rank > 0 (null or empty otherwise), `c` null or `[dModel]`, every value finite,
 * and `positions` null or `[from, to)` with integer `from >= 0` and `to > from` (integer or
 * Infinity). The values come from plugins' affine forms, so a bad edit is PLUGIN_FAILED.
 * `subject` names the model (the point is taken from the edit).
 */
export function checkAffineEdit(edit: AffineEdit, dModel: number, subject: string): void {
  const where = `${subject}: affine edit at ${safePointName(edit)}`;
  const bad = (message: string): never => {
    throw new SteerkitError("PLUGIN_FAILED", `${where}: ${message}`);
  };
  const { rank } = edit;
  if (!Number.isInteger(rank) || rank < 0) bad(`rank must be an integer >= 0, got ${rank}`);
  const matrix = (name: string, a: Float32Array | null, rows: number, cols: number) => {
    const n = rows * cols;
    if (n === 0) {
      if (a && a.length > 0) bad(`${name} must be null with rank 0, got ${a.length} values`);
      return;
    }
    if (!(a instanceof Float32Array) || a.length !== n) bad(`${name} must hold ${rows}x${cols} = ${n} values, got ${describe(a)}`);
    const i = firstNonFinite(a!);
    if (i >= 0) bad(`${name}[${i}] is ${a![i]}, expected a finite number`);
  };
  matrix("U", edit.U, dModel, rank);
  matrix("V", edit.V, rank, dModel);
  if (edit.c !== null) matrix("c", edit.c, 1, dModel);
  const range = edit.positions;
  if (range !== null && range !== undefined) {
    const { from, to } = range;
    if (!Number.isInteger(from) || from < 0) bad(`positions.from must be an integer >= 0, got ${from}`);
    if (!(Number.isInteger(to) || to === Infinity) || to <= from) bad(`positions.to must be an integer (or Infinity) > from ${from}, got ${to}`);
  }
}

function firstNonFinite(a: Float32Array): number {
  for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return i;
  return -1;
}

function describe(a: unknown): string {
  if (a === null || a === undefined) return String(a);
  if (ArrayBuffer.isView(a)) return `${a.constructor.name}(${(a as Float32Array).length})`;
  return typeof a;
}

function safePointName(edit: AffineEdit): string {
  try {
    return pointName(edit.point);
  } catch {
    return String(edit.point);
  }
}
