/**
 * Turning generated tokens into text as they come, and stopping at stop strings.
 *
 * Tokens are not text: a UTF-8 character may span tokens and SentencePiece decoders treat the first
 * token of a string differently. So each step decodes a short window (a few tokens already shown
 * plus the new ones) and emits only what the window adds, holding back a trailing U+FFFD
 * (an incomplete character). This is the "prefix/read offset" method of Hugging Face's
 * text-generation-inference; its cost per token is bounded by the window, not the text length.
 */

export class IncrementalDetokenizer {
  private readonly tokens: number[];
  private prefixOffset: number;
  private readOffset: number;

  /** `context` are tokens before the generated ones (the prompt's tail), decoded but never emitted. */
  constructor(
    private readonly detokenize: (tokens: ArrayLike<number>) => string,
    context: readonly number[] = [],
  ) {
    this.tokens = context.slice(-4);
    this.prefixOffset = 0;
    this.readOffset = this.tokens.length;
  }

  /** Add a token; returns the text it completes (possibly ""). */
  push(token: number): string {
    this.tokens.push(token);
    const prefix = this.detokenize(this.tokens.slice(this.prefixOffset, this.readOffset));
    const text = this.detokenize(this.tokens.slice(this.prefixOffset));
    if (text.length > prefix.length && !text.endsWith("\uFFFD")) {
      const delta = text.startsWith(prefix) ? text.slice(prefix.length) : text.slice(commonPrefix(prefix, text));
      this.prefixOffset = this.readOffset;
      this.readOffset = this.tokens.length;
      return delta;
    }
    return "";
  }

  /** Text still held back at the end (an incomplete character, decoded as-is). */
  flush(): string {
    if (this.readOffset === this.tokens.length) return "";
    const prefix = this.detokenize(this.tokens.slice(this.prefixOffset, this.readOffset));
    const text = this.detokenize(this.tokens.slice(this.prefixOffset));
    this.prefixOffset = this.readOffset = this.tokens.length;
    return text.slice(commonPrefix(prefix, text));
  }
}

function commonPrefix(a: string, b: string): number {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
}

/**
 * Stop strings over streamed text. `push` returns the text that is safe to show: it holds back a
 * tail that could still become a stop string, and cuts the text where a stop string completes.
 */
export class StopStringMatcher {
  private pending = "";
  stopped = false;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.longest = stops.reduce((m, s) => Math.max(m, s.length), 0);
  }

  push(delta: string): string {
    if (this.stopped) return "";
    if (this.stops.length === 0) return delta;
    this.pending += delta;
    let cut = -1;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.stopped = true;
      const out = this.pending.slice(0, cut);
      this.pending = "";
      return out;
    }
    // Hold back the longest tail that is a prefix of some stop string.
    let hold = 0;
    for (let len = Math.min(this.longest - 1, this.pending.length); len > 0; len--) {
      const tail = this.pending.slice(this.pending.length - len);
      if (this.stops.some((s) => s.startsWith(tail))) {
        hold = len;
        break;
      }
    }
    const out = this.pending.slice(0, this.pending.length - hold);
    this.pending = this.pending.slice(this.pending.length - hold);
    return out;
  }

  /** The held-back text, at the end of generation. */
  flush(): string {
    const out = this.stopped ? "" : this.pending;
    this.pending = "";
    return out;
  }
}
