/**
 * llama.cpp's text-based special-token rules (llama-vocab.cpp, "auto-detect special tokens by
 * text"): many GGUFs omit EOT/EOM/FIM ids or mark them as normal tokens, and llama.cpp fixes that up
 * from the token texts. Generation stops and special-token splitting depend on it, so we apply the
 * same lists and the same exceptions (gpt-oss's `<|end|>`, `</s>` next to `<|tool_response>`), kept
 * apart from the metadata reader because they are a fact about llama.cpp, not about the file format.
 */
import { TokenType } from "./spec.ts";

// Token texts llama.cpp recognises whatever the file says (llama-vocab.cpp, "auto-detect special
// tokens by text"): it forces them to control tokens and ends generation on some of them.
const EOT_TEXTS = ["<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>"];
const FIM_TEXTS = {
  pre: ["<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>"],
  suf: ["<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>"],
  mid: ["<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>"],
  pad: ["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
  rep: ["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"],
  sep: ["<|file_sep|>"],
} as const;
const EOG_TEXTS = new Set([
  "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
  "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>",
  "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
]);
const FORCED_USER_DEFINED = new Set(["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"]);

export interface SpecialTokens {
  eotId: number | null;
  eomId: number | null;
  eogIds: number[];
}

/** Apply llama.cpp's text-based special-token rules to `types` (in place); returns EOT/EOM/EOG. */
export function detectSpecialTokens(
  tokens: readonly string[],
  types: number[],
  ids: { eos: number | null; eot: number | null; eom: number | null; fim: Record<keyof typeof FIM_TEXTS, number | null> },
): SpecialTokens {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.set(t, i)); // a later duplicate wins, as in llama.cpp's token_to_id
  const control = (id: number) => {
    if (types[id] !== TokenType.CONTROL) types[id] = TokenType.CONTROL;
  };
  // llama.cpp walks an unordered map here; when several candidates exist we take the first in list order.
  const find = (texts: readonly string[]): number | null => {
    for (const t of texts) {
      const id = idOf.get(t);
      if (id !== undefined) return id;
    }
    return null;
  };
  let eot = ids.eot;
  if (eot === null && (eot = find(EOT_TEXTS)) !== null) control(eot);
  let eom = ids.eom;
  if (eom === null && (eom = idOf.get("<|eom_id|>") ?? null) !== null) control(eom);
  const fim = { ...ids.fim };
  for (const k of Object.keys(FIM_TEXTS) as (keyof typeof FIM_TEXTS)[]) {
    if (fim[k] === null && (fim[k] = find(FIM_TEXTS[k])) !== null) control(fim[k]!);
  }
  const eog = new Set<number>();
  for (const id of [fim.pad, fim.rep, fim.sep]) if (id !== null) eog.add(id);
  for (const [text, id] of idOf) {
    if (EOG_TEXTS.has(text)) {
      eog.add(id);
      control(id);
    }
  }
  for (const [text, id] of idOf) if (FORCED_USER_DEFINED.has(text)) types[id] = TokenType.USER_DEFINED;
  for (const id of [ids.eos, eot, eom]) if (id !== null) eog.add(id);
  const textOf = (id: number) => tokens[id]!;
  const eogTexts = new Set([...eog].map(textOf));
  // gpt-oss style vocabularies: <|end|> ends a message, not the generation.
  if ((eogTexts.has("<|return|>") && eogTexts.has("<|call|>") && eogTexts.has("<|end|>")) || (eogTexts.has("<|call|>") && eogTexts.has("<|flush|>") && eogTexts.has("<|end|>"))) {
    for (const id of eog) if (textOf(id) === "<|end|>") (eog.delete(id), (types[id] = TokenType.USER_DEFINED));
  }
  if (eogTexts.has("<|tool_response>") && eogTexts.has("</s>")) {
    for (const id of eog) if (textOf(id) === "</s>") (eog.delete(id), (types[id] = TokenType.NORMAL));
  }
  return { eotId: eot, eomId: eom, eogIds: [...eog].sort((a, b) => a - b) };
}

/**
 * llama.cpp's per-token strip attributes (llama-vocab.cpp, "Handle per token attributes"; they are not
 * in the GGUF): chosen by model name, pre-tokenizer or architecture. With RSTRIP the whitespace after
 * the token is dropped when the text is split at special tokens, LSTRIP the whitespace before it.
 * `types` are the token types after {@link detectSpecialTokens}, as llama.cpp builds its special-token
 * cache from them. Returns null when llama.cpp would fail to load (a token the rule names is missing).
 */
export function stripAttributes(
  tokens: readonly string[],
  types: readonly number[],
  names: { readonly model: string; readonly pre: string; readonly arch: string },
): { lstrip: number[]; rstrip: number[] } | { missing: string } {
  const idOf = new Map<string, number>();
  tokens.forEach((t, i) => idOf.set(t, i));
  const lstrip = new Set<number>();
  const rstrip = new Set<number>();
  const name = names.model.toLowerCase(); // llama.cpp lowercases general.name (ASCII, std::tolower)
  const any = (s: string, subs: readonly string[]) => subs.some((x) => s.includes(x));
  if (any(names.pre, ["jina-v2-de", "jina-v2-es", "jina-v2-code"]) || any(names.arch, ["nomic-bert-moe", "jina-bert-v3"])) {
    const mask = idOf.get("<mask>");
    if (mask !== undefined) lstrip.add(mask); // llama.cpp only warns when it is missing
  } else if (any(name, ["phi-3", "phi3"])) {
    types.forEach((t, id) => {
      if (t === TokenType.CONTROL || t === TokenType.USER_DEFINED || t === TokenType.UNKNOWN) rstrip.add(id);
    });
    // token_to_id.at(): a missing text throws and the model does not load.
    for (const text of ["</s>", "<unk>", "<s>", "<|endoftext|>"]) if (!idOf.has(text)) return { missing: text };
    rstrip.add(idOf.get("</s>")!);
    for (const text of ["<unk>", "<s>", "<|endoftext|>"]) rstrip.delete(idOf.get(text)!);
  } else if (any(name, ["modern-bert"])) {
    const mask = idOf.get("[MASK]");
    if (mask !== undefined) lstrip.add(mask);
  }
  const sorted = (s: Set<number>) => [...s].sort((a, b) => a - b);
  return { lstrip: sorted(lstrip), rstrip: sorted(rstrip) };
}
