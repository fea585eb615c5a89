import type { ModelInfo } from "../src/index.ts";

const escape = (s: string) => s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);

/** The chat page: plain HTML and a little script, no build step. */
export function page(info: ModelInfo): string {
  const mid = Math.floor(info.nLayers / 2);
  const presets = {
    none: [],
    "add a vector": [{ plugin: "add-vector", options: { points: [`resid_post.${mid}`], vector: Array.from({ length: info.dModel }, (_, i) => (i % 2 ? 1 : -1)), scale: 0.25 } }],
    "ablate a direction": [{ plugin: "ablate-direction", options: { direction: Array.from({ length: info.dModel }, (_, i) => Math.sin(i + 1)) } }],
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Steerkit chat</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.45 system-ui, sans-serif; max-width: 900px; margin: 2rem auto; padding: 0 1rem; color: #222; }
 h1 { font-size: 1.3rem; margin-bottom: .2rem } .sub { color: #666; margin-top: 0 }
 #log { border: 1px solid #ddd; border-radius: 8px; padding: 1rem; min-height: 12rem; white-space: pre-wrap; }
 .user { color: #0b5394; font-weight: 600 } .assistant { color: #222 } .error { color: #b00020 }
 textarea, input, select, button { font: inherit } textarea { width: 100%; box-sizing: border-box }
 .row { display: flex; gap: .75rem; flex-wrap: wrap; align-items: center; margin: .6rem 0 }
 label { font-size: .9rem; color: #444 } input[type=number] { width: 5.5rem }
 details { margin: .6rem 0 } #stats { color: #666; font-size: .85rem }
</style></head><body>
<h1>Steerkit chat</h1>
<p class="sub">${escape(info.name)} · ${escape(info.backend)} · ${info.nLayers} layers · d=${info.dModel}${info.chatTemplate ? "" : " · no chat template: messages become a plain transcript"}</p>
<div id="log"></div>
<div class="row"><label><input type="radio" name="mode" value="complete" checked> complete text</label>
<label><input type="radio" name="mode" value="chat"> chat</label></div>
<textarea id="input" rows="3">Once upon a time</textarea>
<details open><summary>Steering recipe (per request)</summary>
<div class="row"><label>preset <select id="preset">${Object.keys(presets).map((k) => `<option>${escape(k)}</option>`).join("")}</select></label></div>
<textarea id="recipe" rows="5" spellcheck="false">[]</textarea></details>
<div class="row">
 <label>max tokens <input id="maxTokens" type="number" value="96" min="1"></label>
 <label>temperature <input id="temperature" type="number" value="0.8" step="0.1" min="0"></label>
 <label>top-p <input id="topP" type="number" value="0.95" step="0.05" min="0" max="1"></label>
 <label>seed <input id="seed" type="number" placeholder="random" min="0"></label>
 <button id="send">Send</button> <button id="stop" disabled>Stop</button> <button id="clear">Clear</button>
</div>
<div id="stats"></div>
<script>
const presets = ${JSON.stringify(presets)};
const $ = (id) => document.getElementById(id);
const history = [];
let controller = null;
$("preset").onchange = () => { $("recipe").value = JSON.stringify(presets[$("preset").value], null, 1); };
$("clear").onclick = () => { history.length = 0; $("log").textContent = ""; $("stats").textContent = ""; };
$("stop").onclick = () => controller && controller.abort();
function line(cls, text) { const s = document.createElement("span"); s.className = cls; s.textContent = text; $("log").append(s); return s; }
$("send").onclick = async () => {
  let recipe;
  try { recipe = JSON.parse($("recipe").value || "[]"); } catch (e) { line("error", "\\nrecipe is not JSON: " + e.message + "\\n"); return; }
  const mode = document.querySelector("input[name=mode]:checked").value;
  const text = $("input").value;
  const body = { recipe, stream: true, maxTokens: +$("maxTokens").value, temperature: +$("temperature").value, topP: +$("topP").value };
  if ($("seed").value !== "") body.seed = +$("seed").value;
  if (mode === "chat") { history.push({ role: "user", content: text }); body.messages = history.slice(); line("user", "\\nUser: " + text + "\\n"); }
  else { body.prompt = text; line("user", "\\n" + text); }
  const out = line("assistant", mode === "chat" ? "Assistant: " : "");
  controller = new AbortController(); $("send").disabled = true; $("stop").disabled = false;
  let reply = "";
  try {
    const res = await fetch("/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) { const err = await res.json(); line("error", "\\n" + err.error + (err.issues ? "\\n" + err.issues.map((i) => "  " + i.path + ": " + i.message).join("\\n") : "") + "\\n"); return; }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read(); if (done) break;
      buf += value; let i;
      while ((i = buf.indexOf("\\n\\n")) >= 0) {
        const chunk = buf.slice(0, i); buf = buf.slice(i + 2);
        const ev = /^event: (.*)$/m.exec(chunk)?.[1]; const data = JSON.parse(/^data: (.*)$/m.exec(chunk)?.[1] ?? "null");
        if (ev === "token") { reply += data.text; out.textContent += data.text; }
        else if (ev === "done") $("stats").textContent = data.tokens.length + " tokens · " + data.finishReason + " · " + data.timings.tokensPerSecond.toFixed(1) + " tok/s · seed " + data.seed;
        else if (ev === "error") line("error", "\\n" + data.error + "\\n");
      }
    }
  } catch (e) { if (e.name !== "AbortError") line("error", "\\n" + e.message + "\\n"); }
  finally { if (mode === "chat") history.push({ role: "assistant", content: reply }); $("send").disabled = false; $("stop").disabled = true; controller = null; out.textContent += "\\n"; }
};
</script></body></html>`;
}
