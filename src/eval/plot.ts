/**
 * The trade-off plot, as a standalone SVG: for one capability set, the capability score on x and
 * the refusal rate on y, one curve per condition family (its runs in sweep order, each point
 * labelled with its swept value) and per prompt set (solid for sets the model should refuse, dashed
 * for sets it should comply with), 95% intervals as whiskers in both directions. A condition
 * without a sweep is one marker. What a reader wants to see at a glance: how far each strength
 * moves refusal on unsafe prompts, what it does to safe ones, and what capability it costs.
 *
 * Written by hand (a few dozen lines of SVG) rather than with a charting library: the output must
 * be a dependency-free, deterministic file that renders anywhere (GitHub, a browser, an editor).
 */
import type { EvalReport, ReportRow } from "./report.ts";

const W = 820;
const H = 520;
const M = { left: 70, right: 230, top: 50, bottom: 60 };
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"];
const MARKERS = ["circle", "square", "triangle", "diamond"] as const;

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
const fmt = (x: number) => String(Math.round(x * 100) / 100);

/** Round tick positions covering [lo, hi]. */
function ticks(lo: number, hi: number, count = 6): number[] {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= count) ?? 10 * mag;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Math.round(t / step) * step);
  return out;
}

/** 1-2-5 ticks inside [lo, hi] for a log axis. */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of [1, 2, 5]) {
      const t = m * 10 ** e;
      if (t >= lo && t <= hi) out.push(t);
    }
  }
  return out;
}

function marker(kind: (typeof MARKERS)[number], x: number, y: number, colour: string, filled: boolean): string {
  const fill = filled ? colour : "white";
  const common = `fill="${fill}" stroke="${colour}" stroke-width="1.5"`;
  switch (kind) {
    case "circle":
      return `<circle cx="${fmt(x)}" cy="${fmt(y)}" r="4.5" ${common}/>`;
    case "square":
      return `<rect x="${fmt(x - 4)}" y="${fmt(y - 4)}" width="8" height="8" ${common}/>`;
    case "triangle":
      return `<path d="M${fmt(x)},${fmt(y - 5)} L${fmt(x + 5)},${fmt(y + 4)} L${fmt(x - 5)},${fmt(y + 4)} Z" ${common}/>`;
    case "diamond":
      return `<path d="M${fmt(x)},${fmt(y - 5.5)} L${fmt(x + 5.5)},${fmt(y)} L${fmt(x)},${fmt(y + 5.5)} L${fmt(x - 5.5)},${fmt(y)} Z" ${common}/>`;
  }
}

/**
 * The trade-off plot for one capability set (its name), as SVG text; null when the report has no
 * prompt sets or no such capability set.
 * @example
 * ```ts
 * const svg = tradeoffSvg(report, "cloze");
 * if (svg) writeFileSync("out/tradeoff-cloze.svg", svg);
 * ```
 */
export function tradeoffSvg(report: EvalReport, capability: string, title?: string): string | null {
  const first = report.rows[0];
  const cap = first?.capability.find((c) => c.set === capability);
  if (!first || !cap || first.behaviour.length === 0) return null;
  const capOf = (row: ReportRow) => row.capability.find((c) => c.set === capability)!;
  const isAcc = cap.metric === "accuracy";
  const scaleX = isAcc ? 100 : 1;

  // x range: the capability values and their intervals, padded. Perplexity that spans more than an
  // order of magnitude (a strong edit can multiply it by 100) is drawn on a log axis.
  const xs = report.rows.flatMap((r) => [capOf(r).value, capOf(r).ci.low, capOf(r).ci.high]).filter(Number.isFinite).map((x) => x * scaleX);
  let x0 = xs.length ? Math.min(...xs) : 0;
  let x1 = xs.length ? Math.max(...xs) : 1;
  const log = !isAcc && x0 > 0 && x1 / x0 > 8;
  let xt: number[];
  if (isAcc) {
    // Room beyond 0% and 100% so markers there are not cut by the frame; no ticks out there.
    [x0, x1] = [Math.max(-3, x0 - 5), Math.min(103, x1 + 5)];
    xt = ticks(Math.max(0, x0), Math.min(100, x1)).filter((t) => t >= x0 && t <= x1);
  } else if (log) {
    [x0, x1] = [x0 / 1.15, x1 * 1.15];
    xt = logTicks(x0, x1);
  } else {
    const pad = (x1 - x0) * 0.08 || Math.max(1, x1 * 0.05);
    [x0, x1] = [Math.max(0, x0 - pad), x1 + pad];
    xt = ticks(x0, x1);
  }
  if (!log && !isAcc) {
    x0 = Math.min(x0, xt[0]!);
    x1 = Math.max(x1, xt[xt.length - 1]!);
  }
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const axis = (x: number) => (log ? Math.log(x) : x);
  const ax = (x: number) => M.left + ((axis(x) - axis(x0)) / (axis(x1) - axis(x0) || 1)) * pw;
  const px = (x: number) => ax(x * scaleX);
  const py = (y: number) => M.top + (1 - y) * ph;

  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(title ?? `Refusal vs ${capability} ${cap.metric} — ${report.model.name} (${report.model.backend})`)}</text>`);
  // grid and axes
  for (const t of ticks(0, 100, 5)) {
    const y = py(t / 100);
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${fmt(y)}" y2="${fmt(y)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 8}" y="${fmt(y + 4)}" text-anchor="end">${t}%</text>`);
  }
  for (const t of xt) {
    const x = ax(t);
    out.push(`<line x1="${fmt(x)}" x2="${fmt(x)}" y1="${M.top}" y2="${M.top + ph}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${fmt(x)}" y="${M.top + ph + 18}" text-anchor="middle">${isAcc ? `${fmt(t)}%` : fmt(t)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333"/>`);
  const xLabel = isAcc ? `${capability}: accuracy (higher is better)` : `${capability}: perplexity (lower is better${log ? "; log scale" : ""})`;
  out.push(`<text x="${M.left + pw / 2}" y="${H - 18}" text-anchor="middle" font-size="13">${esc(xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle" font-size="13">refusal rate (judged)</text>`);

  // one colour per condition family, one marker per prompt set
  const families = [...new Set(report.rows.map((r) => r.condition))];
  const colourOf = (c: string) => COLOURS[families.indexOf(c) % COLOURS.length]!;
  const sets = first.behaviour.map((b) => b);
  sets.forEach((b, si) => {
    const kind = MARKERS[si % MARKERS.length]!;
    const dashed = b.expect === "comply";
    for (const family of families) {
      const rows = report.rows.filter((r) => r.condition === family);
      const colour = colourOf(family);
      const pts = rows
        .map((r) => ({ r, c: capOf(r), b: r.behaviour[si]! }))
        .filter((p) => Number.isFinite(p.c.value) && Number.isFinite(p.b.rate));
      if (pts.length > 1) {
        const d = pts.map((p, i) => `${i ? "L" : "M"}${fmt(px(p.c.value))},${fmt(py(p.b.rate))}`).join(" ");
        out.push(`<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
      }
      for (const p of pts) {
        const x = px(p.c.value);
        const y = py(p.b.rate);
        if (Number.isFinite(p.b.ci.low)) out.push(`<line x1="${fmt(x)}" x2="${fmt(x)}" y1="${fmt(py(p.b.ci.low))}" y2="${fmt(py(p.b.ci.high))}" stroke="${colour}" stroke-opacity="0.45"/>`);
        if (Number.isFinite(p.c.ci.low)) out.push(`<line x1="${fmt(px(p.c.ci.low))}" x2="${fmt(px(p.c.ci.high))}" y1="${fmt(y)}" y2="${fmt(y)}" stroke="${colour}" stroke-opacity="0.45"/>`);
        out.push(marker(kind, x, y, colour, !dashed));
        if (p.r.value !== null && si === 0) out.push(`<text x="${fmt(x + 7)}" y="${fmt(y - 6)}" fill="${colour}" font-size="10">${esc(typeof p.r.value === "string" ? p.r.value : JSON.stringify(p.r.value))}</text>`);
      }
    }
  });

  // legend: conditions (colour), then prompt sets (marker and line style)
  let ly = M.top + 6;
  const lx = M.left + pw + 20;
  out.push(`<text x="${lx}" y="${ly}" font-weight="bold">condition</text>`);
  for (const family of families) {
    ly += 18;
    const swept = report.rows.find((r) => r.condition === family && r.sweepPath !== null);
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="${colourOf(family)}" stroke-width="3"/>`);
    out.push(`<text x="${lx + 28}" y="${ly}">${esc(family)}</text>`);
    if (swept) {
      ly += 14;
      out.push(`<text x="${lx + 28}" y="${ly}" fill="#555" font-size="10">sweep: ${esc(swept.sweepPath!)}</text>`);
    }
  }
  ly += 28;
  out.push(`<text x="${lx}" y="${ly}" font-weight="bold">prompt set</text>`);
  sets.forEach((b, si) => {
    ly += 18;
    const dashed = b.expect === "comply";
    out.push(`<line x1="${lx}" x2="${lx + 22}" y1="${ly - 4}" y2="${ly - 4}" stroke="#333" stroke-width="2"${dashed ? ' stroke-dasharray="6 4"' : ""}/>`);
    out.push(marker(MARKERS[si % MARKERS.length]!, lx + 11, ly - 4, "#333", !dashed));
    out.push(`<text x="${lx + 28}" y="${ly}">${esc(b.set)} (expect ${b.expect})</text>`);
  });
  ly += 28;
  out.push(`<text x="${lx}" y="${ly}" fill="#555" font-size="11">whiskers: 95% intervals</text>`);
  out.push(`<text x="${lx}" y="${ly + 15}" fill="#555" font-size="11">labels: swept value (on the first set)</text>`);
  out.push("</svg>");
  return out.join("\n") + "\n";
}
