/**
 * A one-line progress bar with an ETA on stderr, for long discovery runs. Library code reports
 * progress through callbacks (`onProgress`); only the CLI draws. It draws only on a terminal, so
 * piped stderr (tests, logs) stays clean, and at most 10 times a second.
 *
 * `progressBar(total, label)` with `update`/`done` is a subset of the trainer's bar on the sae-train
 * branch (same rendering), so a merge can keep theirs and delete this file.
 */

export interface ProgressBar {
  update(done: number): void;
  done(): void;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  if (s >= 60) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${s}s`;
}

/** One line: `label [#####-----] 5/10 50% 3s eta 3s`. */
export function renderProgress(label: string, done: number, total: number, elapsedSeconds: number, width = 24): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(frac * width);
  const eta = done > 0 && done < total ? ` eta ${formatDuration((elapsedSeconds / done) * (total - done))}` : "";
  return `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${done}/${total} ${(frac * 100).toFixed(0)}% ${formatDuration(elapsedSeconds)}${eta}`;
}

export function progressBar(total: number, label: string, stream: { write(s: string): unknown; isTTY?: boolean } = process.stderr): ProgressBar {
  const draw = stream.isTTY === true;
  const start = performance.now();
  let count = 0;
  let last = -Infinity;
  const line = () => renderProgress(label, count, total, (performance.now() - start) / 1000);
  return {
    update(d) {
      count = d;
      const t = performance.now();
      if (!draw || (t - last < 100 && count < total)) return;
      last = t;
      stream.write(`\r${line()}\x1b[K`);
    },
    done() {
      if (draw) stream.write(`\r${line()}\x1b[K\n`);
    },
  };
}
