/**
 * {@link GgufTokenizer}: encode/decode exactly as llama.cpp does, by running the converted
 * tokenizer.json in @huggingface/tokenizers (a maintained implementation of the same algorithms)
 * rather than porting llama.cpp's tokenizers. Where HF's decode and llama.cpp's detokenize disagree
 * (which leading space is dropped, which token kinds print nothing, its space clean-up rules), this
 * class follows llama.cpp.
 */
import { Tokenizer } from "@huggingface/tokenizers";
import { keepByteOrderMarks } from "./byte-order-mark.ts";
import { readTokenizerSpec } from "./read-spec.ts";
import { SPACE_MARK, TokenType, type GgufLike, type GgufTokenizerSpec } from "./spec.ts";
import { buildTokenizerConfig, buildTokenizerJson } from "./tokenizer-json.ts";

export interface EncodeOptions {
  /** Add BOS (and EOS) when the model's tokenizer adds them (llama.cpp `add_special`). Default true. */
  readonly addSpecial?: boolean;
  /** Turn control-token text such as `<s>` into that token (llama.cpp `parse_special`). Default false. */
  readonly parseSpecial?: boolean;
}

/**
 * Encode/decode as llama.cpp's `llama_tokenize` / `llama_detokenize(remove_special = true,
 * unparse_special = false)`, running the converted tokenizer in @huggingface/tokenizers.
 */
export class GgufTokenizer {
  private readonly withSpecial: Tokenizer;
  /** Encodes without splitting out control tokens, and decodes (with HF's leading-space strip undone where llama.cpp keeps it). */
  private readonly plain: Tokenizer;
  private readonly silent: Uint8Array;

  constructor(readonly spec: GgufTokenizerSpec) {
    const config = buildTokenizerConfig(spec);
    this.withSpecial = keepByteOrderMarks(new Tokenizer(buildTokenizerJson(spec, { parseSpecial: true, cleanUpInDecoder: false }), config));
    this.plain = keepByteOrderMarks(new Tokenizer(buildTokenizerJson(spec, { parseSpecial: false, cleanUpInDecoder: false }), config));
    // Token kinds llama.cpp's token_to_piece prints as nothing (without unparse_special).
    this.silent = new Uint8Array(spec.tokens.length);
    spec.types.forEach((t, i) => {
      const printable = t === TokenType.NORMAL || t === TokenType.BYTE || t === TokenType.USER_DEFINED;
      this.silent[i] = printable ? 0 : 1;
    });
  }

  static fromGguf(file: GgufLike): GgufTokenizer {
    return new GgufTokenizer(readTokenizerSpec(file));
  }

  get vocabSize(): number {
    return this.spec.tokens.length;
  }

  encode(text: string, options: EncodeOptions = {}): number[] {
    const addSpecial = options.addSpecial ?? true;
    const tok = options.parseSpecial ? this.withSpecial : this.plain;
    const ids = text.length === 0 ? [] : tok.encode(text, { add_special_tokens: false }).ids;
    if (addSpecial && this.spec.addBos) ids.unshift(this.spec.bosId!);
    if (addSpecial && this.spec.addEos) ids.push(this.spec.eosId!);
    return ids;
  }

  decode(ids: ArrayLike<number>): string {
    let start = 0;
    let end = ids.length;
    let removeSpace = this.spec.addSpacePrefix;
    // llama.cpp drops a leading BOS and then keeps the space the first word carries.
    if (this.spec.addBos && end > 0 && ids[0] === this.spec.bosId) {
      removeSpace = false;
      start = 1;
    }
    if (this.spec.addEos && end > start && ids[end - 1] === this.spec.eosId) end--;
    const kept: number[] = [];
    for (let i = start; i < end; i++) {
      const id = ids[i]!;
      if (!Number.isInteger(id) || id < 0 || id >= this.silent.length) {
        throw new RangeError(`token id ${id} is outside the vocabulary (0..${this.silent.length - 1})`);
      }
      if (this.silent[id]) {
        if (i === start) removeSpace = false; // the strip applies to the first token only, even if it prints nothing
        continue;
      }
      kept.push(id);
    }
    if (kept.length === 0) return "";
    // HF's SentencePiece decoder always strips one leading space (when the tokenizer adds one);
    // llama.cpp only strips it from the first token, and not after a dropped BOS.
    const text = this.hfDecode(kept, !removeSpace);
    return this.spec.cleanSpaces ? llamaCleanSpaces(text) : text;
  }

  /** The text of one token as llama.cpp's `token_to_piece` gives it (no strip, specials print nothing). */
  piece(id: number): string {
    if (this.silent[id]) return "";
    return this.hfDecode([id], true);
  }

  private hfDecode(ids: number[], keepLeadingSpace: boolean): string {
    const text = this.plain.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (!keepLeadingSpace || !this.spec.addSpacePrefix || this.spec.kind !== "spm") return text;
    const first = this.spec.tokens[ids[0]!]!;
    const startsWithSpace = first.startsWith(SPACE_MARK) || first.startsWith(" ") || first === "<0x20>";
    return startsWithSpace ? " " + text : text;
  }
}

/** llama.cpp's `clean_spaces` pass of detokenize (differs from HF's `clean_up_tokenization`: no " n't"). */
function llamaCleanSpaces(text: string): string {
  return text
    .replace(/ ([?!.,])/g, "$1")
    .replace(/ ' /g, "'")
    .replace(/ '(s|m|re|ve)/g, "'$1");
}
