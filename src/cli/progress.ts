/**
 * A one-line progress bar with an ETA, on stderr, for long CLI runs (SAE training, feature
 * discovery). Library code never prints: it reports progress through callbacks and the CLI wires
 * them here. Redraws are rate-limited (10 per second) and only happen on a terminal, so piped
 * stderr (tests, logs) stays clean; `done()` always prints one summary line when drawing.
 */

export interface ProgressBar {
  /** Advance by `n` units (default 1); `info` is shown after the counts (e.g. "fvu 0.21"). */
  tick(n?: number, info?: string): void;
  /** Set the absolute count. */
  update(done: number, info?: string): void;
  /** Finish the line (prints the final state and a newline). */
  done(info?: string): void;
}

export interface ProgressOptions {
  /** Where to draw (default process.stderr). */
  readonly stream?: { write(s: string): unknown; isTTY?: boolean };
  /** Draw even when the stream is not a terminal (default: only on a TTY). */
  readonly force?: boolean;
  /** Clock in ms (tests). */
  readonly now?: () => number;
  readonly width?: number;
}

/** Seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** The text of one progress line (no carriage return). */
export function renderProgress(label: string, done: number, total: number, elapsedSeconds: number, info = "", width = 24): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(frac * width);
  const bar = "#".repeat(filled) + "-".repeat(width - filled);
  const eta = done > 0 && done < total ? ` eta ${formatDuration((elapsedSeconds / done) * (total - done))}` : "";
  return `${label} [${bar}] ${done}/${total} ${(frac * 100).toFixed(0)}% ${formatDuration(elapsedSeconds)}${eta}${info ? ` ${info}` : ""}`;
}

export function progressBar(total: number, label: string, options: ProgressOptions = {}): ProgressBar {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? (() => performance.now());
  const draw = options.force === true || stream.isTTY === true;
  const start = now();
  let count = 0;
  let lastDraw = -Infinity;
  let lastInfo = "";
  let finished = false;
  const line = () => renderProgress(label, count, total, (now() - start) / 1000, lastInfo, options.width);
  const redraw = (forceDraw: boolean) => {
    if (!draw || finished) return;
    const t = now();
    if (!forceDraw && t - lastDraw < 100) return;
    lastDraw = t;
    stream.write(`\r${line()}\x1b[K`);
  };
  return {
    tick(n = 1, info) {
      count += n;
      if (info !== undefined) lastInfo = info;
      redraw(count >= total);
    },
    update(d, info) {
      count = d;
      if (info !== undefined) lastInfo = info;
      redraw(count >= total);
    },
    done(info) {
      if (info !== undefined) lastInfo = info;
      if (draw && !finished) stream.write(`\r${line()}\x1b[K\n`);
      finished = true;
    },
  };
}
