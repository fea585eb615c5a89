/**
 * SentencePiece as BPE: llama.cpp's SPM tokenizer repeatedly merges the adjacent pair whose
 * concatenation is the highest-scoring vocab piece, which is a BPE whose merge ranks are the pieces'
 * scores. This derives those merges the way HF's converters do, in its own module because it is the
 * one costly step of the conversion (tens of thousands of merges for a real vocabulary).
 */
import type { GgufTokenizerSpec } from "./spec.ts";

/**
 * SentencePiece merges as HF's `SentencePieceExtractor` derives them: every split of a vocab piece
 * into two vocab pieces is a merge, ranked by the merged piece's score (highest first). Ties keep
 * vocab order, which is what llama.cpp's leftmost-first tie-break gives for the usual
 * distinct-score vocabularies.
 */
export function spmMerges(tokens: readonly string[], scores: readonly number[] | null): [string, string][] {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.set(t, i));
  // Flat arrays rather than an object per merge: real vocabularies give tens of thousands of merges.
  const lefts: string[] = [];
  const rights: string[] = [];
  const mergeScores: number[] = [];
  const local: { left: string; right: string; leftId: number; rightId: number }[] = [];
  for (let id = 0; id < tokens.length; id++) {
    const piece = tokens[id]!;
    if (piece.length < 2 || idOf.get(piece) !== id) continue; // a duplicate text: llama.cpp resolves the text to its last id
    const score = scores ? scores[id]! : -id;
    local.length = 0;
    for (let k = 1; k < piece.length; k++) {
      // split between code points, as llama.cpp's symbols are whole UTF-8 characters
      const c = piece.charCodeAt(k);
      if (c >= 0xdc00 && c <= 0xdfff) continue;
      const left = piece.slice(0, k);
      const leftId = idOf.get(left);
      if (leftId === undefined) continue;
      const right = piece.slice(k);
      const rightId = idOf.get(right);
      if (rightId !== undefined) local.push({ left, right, leftId, rightId });
    }
    if (local.length > 1) local.sort((a, b) => a.leftId - b.leftId || a.rightId - b.rightId);
    for (const m of local) {
      lefts.push(m.left);
      rights.push(m.right);
      mergeScores.push(score);
    }
  }
  const order = Array.from({ length: lefts.length }, (_, i) => i);
  order.sort((a, b) => mergeScores[b]! - mergeScores[a]! || a - b);
  return order.map((i) => [lefts[i]!, rights[i]!]);
}

// GgufTokenizer builds three tokenizer.json variants of one spec; derive the merges once.
const spmMergesCache = new WeakMap<GgufTokenizerSpec, [string, string][]>();
export function memoSpmMerges(spec: GgufTokenizerSpec): [string, string][] {
  let merges = spmMergesCache.get(spec);
  if (!merges) spmMergesCache.set(spec, (merges = spmMerges(spec.tokens, spec.scores)));
  return merges;
}
