/**
 * The page at `/`: plain HTML, CSS and one script (`page-client.js`, inlined) on the server's own
 * public API, no build step. One prompt streams twice from the same seed, unsteered on the left
 * and steered on the right, so what the steering does is what differs between the columns.
 *
 * The steering panel is built from `GET /v1/plugins`: each plugin's JSON Schema becomes controls
 * (numbers as sliders with a box, enums and booleans as selects, strings with the registered
 * artifacts' names offered, lists as comma-separated text, lists of objects as repeatable
 * fieldsets, anything else as JSON); presets and a raw recipe are the other sources. Tokens are
 * shaded by a `trace` (an SAE latent's activation, or the projection onto a direction at a point)
 * on one scale across both columns.
 *
 * The script is a separate file so that it is real JavaScript to read and lint, not a string in a
 * template; it is inlined, so the page is one response.
 */
import { readFileSync } from "node:fs";
import type { ModelInfo } from "../core/backend.ts";

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

let script: string | null = null;
const clientScript = () => (script ??= readFileSync(new URL("./page-client.js", import.meta.url), "utf8"));

/** The page's HTML for a model. */
export function page(info: ModelInfo, options: { apiKey: boolean }): string {
  // JSON inside <script>: "<" escaped so no text in it can close the element.
  const config = JSON.stringify({ nLayers: info.nLayers, dModel: info.dModel }).replace(/</g, "\\u003c");
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Steerkit · ${escape(info.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<style>
 :root { --line: #dde1e6; --muted: #667; --accent: #2f6fb0 }
 * { box-sizing: border-box } [hidden] { display: none !important }
 body { font: 15px/1.5 system-ui, sans-serif; margin: 0; color: #1d2228; background: #f7f8fa }
 header { padding: .8rem 1.5rem; border-bottom: 1px solid var(--line); background: #fff }
 h1 { font-size: 1.25rem; margin: 0 } .sub { color: var(--muted); margin: .1rem 0 0; font-size: .9rem }
 .layout { display: grid; grid-template-columns: minmax(300px, 380px) 1fr; gap: 1.2rem; padding: 1rem 1.5rem; max-width: 1500px; margin: 0 auto }
 aside section, .work { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: .8rem 1rem; margin-bottom: 1rem }
 h2 { font-size: .95rem; margin: 0 0 .5rem } h2 small { color: var(--muted); font-weight: normal }
 label { font-size: .88rem; color: #333 } .hint { color: var(--muted); font-size: .8rem; margin: .2rem 0 .4rem }
 textarea, input, select, button { font: inherit; font-size: .9rem } textarea { width: 100% }
 input[type=text] { width: 100% } input[type=number] { width: 5.5rem } input[type=range] { flex: 1; min-width: 6rem }
 button { border: 1px solid #b9c2cc; background: #fff; border-radius: 6px; padding: .2rem .7rem; cursor: pointer }
 button:disabled { opacity: .5; cursor: default } #send { background: var(--accent); border-color: var(--accent); color: #fff; padding: .3rem 1.2rem }
 .row { display: flex; gap: .75rem; flex-wrap: wrap; align-items: center; margin: .5rem 0 }
 .entry { border: 1px solid var(--line); border-radius: 8px; padding: .5rem .6rem; margin: .5rem 0; background: #fbfcfd }
 .entry-head { display: flex; gap: .5rem; align-items: center } .entry-head select { flex: 1; font-weight: 600 }
 .fields { display: grid; gap: .35rem; min-width: 0; flex: 1 } .field { display: grid; grid-template-columns: 6.5rem minmax(0, 1fr); gap: .4rem; align-items: center }
 .field input[type=text], .field select, .field textarea { width: 100%; max-width: 100% } .field .union select, .field .number input { width: auto }
 .group summary { cursor: pointer }
 .field .key { font-family: ui-monospace, monospace; font-size: .8rem; color: #445 }
 .union, .number { display: flex; gap: .35rem; align-items: center; flex-wrap: wrap; min-width: 0 } .branch { flex: 1; display: flex; min-width: 0 }
 .number { flex-wrap: nowrap } .number input[type=range] { min-width: 3rem } .number input[type=number] { width: 4.5rem }
 .item .field { grid-template-columns: 3.6rem minmax(0, 1fr) }
 .item { display: flex; gap: .3rem; align-items: start; border-left: 3px solid var(--line); padding-left: .4rem; margin: .3rem 0 }
 .remove { padding: 0 .45rem; color: #a33 } pre { font-size: .75rem; max-height: 12rem; overflow: auto; background: #f3f5f7; padding: .4rem; margin: .3rem 0 }
 .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; margin-top: .8rem }
 .col h3 { font-size: .9rem; margin: .2rem 0; color: #555 }
 .out { border: 1px solid var(--line); border-radius: 8px; padding: .8rem; min-height: 12rem; white-space: pre-wrap; line-height: 1.7; background: #fff }
 .steered .out { border-color: #9bc3e8 } .out.streaming { box-shadow: 0 0 0 2px #e6f0fa }
 .tok { border-radius: 3px } .error { color: #b00020 } .stats { color: var(--muted); font-size: .82rem; min-height: 1.2em }
 .legend { font-size: .8rem; color: var(--muted); margin-top: .4rem } .scale { display: inline-block; width: 8rem; height: .7rem; vertical-align: middle; border-radius: 3px; background: linear-gradient(90deg, rgba(40,110,230,.75), #fff, rgba(245,140,20,.75)) }
 @media (max-width: 900px) { .layout, .cols { grid-template-columns: 1fr } }
</style></head><body data-state="loading">
<header><h1>Steerkit</h1>
<p class="sub">${escape(info.name)} · ${escape(info.backend)} · ${info.nLayers} layers · d=${info.dModel} · context ${info.contextLength}${info.chatTemplate ? "" : " · no chat template: chat becomes a plain transcript"}</p></header>
<div class="layout">
<aside>
 <section id="steeringPanel"><h2>Steering <small>right column</small></h2>
  <label>source <select id="source"></select></label>
  <div id="builder"><div id="entries"></div><button type="button" id="addEntry">+ add a plugin</button></div>
  <textarea id="recipe" rows="6" spellcheck="false" hidden aria-label="recipe JSON"></textarea>
  <details><summary class="hint">recipe sent</summary><pre id="recipeView"></pre></details>
 </section>
 <section id="shadingPanel"><h2>Shading <small>both columns</small></h2>
  <label>shade tokens by <select id="shade"><option value="">nothing</option><option value="sae">an SAE latent's activation</option><option value="direction">the projection onto a direction</option></select></label>
  <div class="row" id="shadeSaeRow"><label>SAE <select id="shadeSae"></select></label><label>latent <input id="shadeLatent" type="number" min="0" value="0"></label></div>
  <div class="row" id="shadeDirectionRow"><label>direction <select id="shadeDirection"></select></label><label>at <select id="shadePoint"></select></label></div>
  <div class="legend" id="legend" hidden><span class="scale"></span> <span id="legendText"></span><br>each generated token's value at its own row (the last token has none: the model never read it)</div>
 </section>
 <section><h2>Sampling</h2>
  <div class="row"><label>max tokens <input id="maxTokens" type="number" value="96" min="1"></label>
  <label>temperature <input id="temperature" type="number" value="0.8" step="0.1" min="0" max="2"></label>
  <label>seed <input id="seed" type="number" placeholder="random" min="0"></label></div>
  ${options.apiKey ? '<div class="row"><label>API key <input id="key" type="password" autocomplete="off"></label></div>' : ""}
 </section>
</aside>
<main class="work">
 <div class="row"><label><input type="radio" name="mode" value="text" checked> complete text</label><label><input type="radio" name="mode" value="chat"> chat</label></div>
 <textarea id="input" rows="3" aria-label="prompt">Once upon a time</textarea>
 <div class="row"><button id="send">Generate</button> <button id="stop" disabled>Stop</button></div>
 <div class="cols">
  <div class="col plain"><h3>unsteered</h3><div class="out" id="out0"></div><div class="stats" id="stats0"></div></div>
  <div class="col steered"><h3>steered</h3><div class="out" id="out1"></div><div class="stats" id="stats1"></div></div>
 </div>
</main>
</div>
<datalist id="artifactNames"></datalist>
<script type="application/json" id="config">${config}</script>
<script>
${clientScript()}
</script></body></html>`;
}
