/**
 * The page at `/`: plain HTML and a little script on the server's own OpenAI-compatible API, no
 * build step. One prompt streams twice from the same seed, unsteered on the left and steered on the
 * right, so what the steering does is what differs between the columns.
 */
import type { ModelInfo } from "../core/backend.ts";

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** The page's HTML for a model. */
export function page(info: ModelInfo, options: { apiKey: boolean }): string {
  const mid = Math.floor(info.nLayers / 2);
  const example = [{ plugin: "add-vector", options: { points: [`resid_post.${mid}`], vector: Array.from({ length: info.dModel }, (_, i) => (i % 2 ? 1 : -1)), scale: 0.5 } }];
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Steerkit</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
 h1 { font-size: 1.3rem; margin: 0 } .sub { color: #666; margin: .2rem 0 1rem }
 .cols { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem } .col h2 { font-size: .95rem; margin: .2rem 0; color: #555 }
 .out { border: 1px solid #ddd; border-radius: 8px; padding: .8rem; min-height: 10rem; white-space: pre-wrap }
 .steered .out { border-color: #9bc3e8; background: #f6fafe } .error { color: #b00020 } .stats { color: #666; font-size: .82rem; min-height: 1.2em }
 textarea, input, select, button { font: inherit } textarea { width: 100%; box-sizing: border-box }
 .row { display: flex; gap: .75rem; flex-wrap: wrap; align-items: center; margin: .6rem 0 } label { font-size: .9rem; color: #444 }
 input[type=number] { width: 5.5rem } details { margin: .6rem 0 }
</style></head><body>
<h1>Steerkit</h1>
<p class="sub">${escape(info.name)} · ${escape(info.backend)} · ${info.nLayers} layers · d=${info.dModel} · context ${info.contextLength}${info.chatTemplate ? "" : " · no chat template: chat becomes a plain transcript"}</p>
<div class="row"><label><input type="radio" name="mode" value="text" checked> complete text</label><label><input type="radio" name="mode" value="chat"> chat</label>
${options.apiKey ? '<label>API key <input id="key" type="password" autocomplete="off"></label>' : ""}</div>
<textarea id="input" rows="3">Once upon a time</textarea>
<details open><summary>Steering (right column)</summary>
<div class="row"><label>preset <select id="preset"><option value="">custom recipe below</option></select></label></div>
<textarea id="recipe" rows="4" spellcheck="false">${escape(JSON.stringify(example))}</textarea></details>
<div class="row">
 <label>max tokens <input id="maxTokens" type="number" value="96" min="1"></label>
 <label>temperature <input id="temperature" type="number" value="0.8" step="0.1" min="0" max="2"></label>
 <label>seed <input id="seed" type="number" placeholder="random" min="0"></label>
 <button id="send">Generate</button> <button id="stop" disabled>Stop</button>
</div>
<div class="cols">
 <div class="col plain"><h2>unsteered</h2><div class="out" id="out0"></div><div class="stats" id="stats0"></div></div>
 <div class="col steered"><h2>steered</h2><div class="out" id="out1"></div><div class="stats" id="stats1"></div></div>
</div>
<script>
const $ = (id) => document.getElementById(id);
let controller = null;
const headers = () => ({ "content-type": "application/json", ...($("key") && $("key").value ? { authorization: "Bearer " + $("key").value } : {}) });
fetch("/v1/presets", { headers: headers() }).then((r) => r.ok ? r.json() : { data: [] }).then((list) => {
  for (const p of list.data) { const o = document.createElement("option"); o.value = p.name; o.textContent = p.name + (p.description ? " — " + p.description : ""); $("preset").append(o); }
});
$("stop").onclick = () => controller && controller.abort();
async function run(i, body) {
  const out = $("out" + i), stats = $("stats" + i);
  out.textContent = ""; stats.textContent = "";
  const chat = "messages" in body;
  try {
    const res = await fetch(chat ? "/v1/chat/completions" : "/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) { const e = await res.json(); stats.innerHTML = ""; stats.append(Object.assign(document.createElement("span"), { className: "error", textContent: (e.error.param ? e.error.param + ": " : "") + e.error.message })); return; }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read(); if (done) break;
      buf += value; let k;
      while ((k = buf.indexOf("\\n\\n")) >= 0) {
        const event = buf.slice(0, k); buf = buf.slice(k + 2);
        if (!event.startsWith("data: ")) continue; // SSE comments
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) { stats.append(Object.assign(document.createElement("span"), { className: "error", textContent: chunk.error.message })); continue; }
        const c = chunk.choices[0]; if (!c) continue;
        out.textContent += chat ? (c.delta.content || "") : c.text;
        if (chunk.steerkit) stats.textContent = c.finish_reason + " · " + chunk.steerkit.timings.tokensPerSecond.toFixed(0) + " tok/s · seed " + chunk.steerkit.seed;
      }
    }
  } catch (e) { if (e.name !== "AbortError") stats.textContent = e.message; }
}
$("send").onclick = async () => {
  let steering = $("preset").value;
  if (!steering) { try { steering = JSON.parse($("recipe").value || "[]"); } catch (e) { $("stats1").textContent = "recipe is not JSON: " + e.message; return; } }
  const seed = $("seed").value === "" ? Math.floor(Math.random() * 2 ** 32) : +$("seed").value;
  const base = { stream: true, max_tokens: +$("maxTokens").value, temperature: +$("temperature").value, seed };
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "chat") base.messages = [{ role: "user", content: $("input").value }]; else base.prompt = $("input").value;
  controller = new AbortController(); $("send").disabled = true; $("stop").disabled = false;
  await Promise.all([run(0, base), run(1, { ...base, steering })]);
  $("send").disabled = false; $("stop").disabled = true; controller = null;
};
</script></body></html>`;
}
