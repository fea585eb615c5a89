// The chat page's script (plain browser JavaScript, served inline by page.ts; no build step).
// It talks only to the server's public API: GET /v1/plugins and /v1/presets to build the steering
// panel, POST /v1/completions or /v1/chat/completions (streamed) twice from one seed, unsteered
// and steered, with a `trace` field when tokens are to be shaded.
"use strict";
const config = JSON.parse(document.getElementById("config").textContent);
const $ = (id) => document.getElementById(id);
const h = (tag, props = {}, ...children) => {
  const el = Object.assign(document.createElement(tag), props);
  for (const c of children) if (c != null) el.append(c);
  return el;
};
const headers = () => ({ "content-type": "application/json", ...($("key") && $("key").value ? { authorization: "Bearer " + $("key").value } : {}) });
const getJson = (path) => fetch(path, { headers: headers() }).then((r) => (r.ok ? r.json() : Promise.reject(new Error(path + ": HTTP " + r.status))));

let plugins = []; // from /v1/plugins: the ones a request may use (no trusted-only options), with a JSON Schema
let artifacts = []; // { name, kind }
const points = [];
for (let l = 0; l < config.nLayers; l++) points.push("resid_pre." + l, "resid_mid." + l, "resid_post." + l);

// ---- controls from JSON Schema ------------------------------------------------------------------
// Each control is { el, get() } where get() returns the value, or undefined to leave the option out.

const isScalarChoice = (s) => s.const !== undefined || Array.isArray(s.enum) || s.type === "null";
const choices = (s) => (s.const !== undefined ? [s.const] : s.type === "null" ? [null] : s.enum);

function branchLabel(s) {
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return "one of " + s.enum.join(" / ");
  if (s.type === "array") return s.items && s.items.type === "number" ? "numbers" : "list";
  if (s.type === "string") return "name";
  if (s.type === "object") return "range";
  return s.type || "value";
}

function control(schema, name, required, initial) {
  if (Array.isArray(schema.anyOf)) {
    // Scalar alternatives ("all" | "every" | ...) flatten into one select; other unions pick a branch first.
    const scalars = schema.anyOf.filter(isScalarChoice);
    const others = schema.anyOf.filter((b) => !isScalarChoice(b));
    const options = [];
    if (!required) options.push({ label: "default" + (schema.default !== undefined ? " (" + JSON.stringify(schema.default) + ")" : ""), value: undefined });
    for (const b of scalars) for (const v of choices(b)) options.push({ label: JSON.stringify(v), value: v });
    const branches = others.map((b) => ({ label: branchLabel(b), schema: b }));
    const select = h("select", { name });
    options.forEach((o, i) => select.append(h("option", { value: "v" + i, textContent: o.label })));
    branches.forEach((b, i) => select.append(h("option", { value: "b" + i, textContent: b.label })));
    const slot = h("span", { className: "branch" });
    let current = null;
    const show = () => {
      slot.replaceChildren();
      current = null;
      const k = select.value;
      if (k[0] === "b") {
        const b = branches[+k.slice(1)];
        current = control(b.schema, name, true, matches(b.schema, initial) ? initial : undefined);
        slot.append(current.el);
      }
    };
    const start = initial !== undefined ? options.findIndex((o) => o.value === initial) : required ? -1 : 0;
    if (start >= 0) select.value = "v" + start;
    else {
      const b = branches.findIndex((b) => matches(b.schema, initial));
      select.value = "b" + Math.max(0, b);
    }
    select.onchange = () => (show(), changed());
    show();
    return { el: h("span", { className: "union" }, select, slot), get: () => (select.value[0] === "v" ? options[+select.value.slice(1)].value : current.get()) };
  }
  if (isScalarChoice(schema)) {
    const select = h("select", { name });
    const values = required ? choices(schema) : [undefined, ...choices(schema)];
    values.forEach((v, i) => select.append(h("option", { value: String(i), textContent: v === undefined ? "default" + (schema.default !== undefined ? " (" + schema.default + ")" : "") : String(v) })));
    const start = values.indexOf(initial !== undefined ? initial : schema.default !== undefined && required ? schema.default : undefined);
    select.value = String(Math.max(0, start));
    select.onchange = changed;
    return { el: select, get: () => values[+select.value] };
  }
  switch (schema.type) {
    case "number":
    case "integer":
      return numberControl(schema, name, required, initial);
    case "boolean": {
      const select = h("select", { name });
      for (const [v, label] of [["", "default" + (schema.default !== undefined ? " (" + schema.default + ")" : "")], ["true", "yes"], ["false", "no"]]) select.append(h("option", { value: v, textContent: label }));
      select.value = initial === undefined ? "" : String(initial);
      select.onchange = changed;
      return { el: select, get: () => (select.value === "" ? undefined : select.value === "true") };
    }
    case "string": {
      const input = h("input", { name, type: "text", value: initial ?? schema.default ?? "", placeholder: required ? "required" : "optional" });
      // Names of registered artifacts are what string options usually take (a direction, an SAE).
      input.setAttribute("list", "artifactNames");
      input.oninput = changed;
      return { el: input, get: () => (input.value === "" ? undefined : input.value) };
    }
    case "array":
      return arrayControl(schema, name, required, initial);
    case "object":
      if (schema.properties) {
        // An optional group (sae-clamp's `when`) folds away, and is left out while none of its fields is set.
        const c = objectControl(schema, name, initial, !required);
        return required ? c : { el: h("details", { className: "group", open: initial !== undefined }, h("summary", { className: "hint", textContent: "optional" }), c.el), get: c.get };
      }
  }
  return jsonControl(name, initial ?? schema.default);
}

function matches(schema, value) {
  if (value === undefined) return false;
  if (schema.type === "array") return Array.isArray(value);
  if (schema.type === "object") return typeof value === "object" && value !== null && !Array.isArray(value);
  if (schema.type === "integer") return Number.isInteger(value);
  return typeof value === schema.type;
}

/** A number: a slider beside a number box; the slider's range comes from the schema's bounds, else a sensible span around the default. */
function numberControl(schema, name, required, initial) {
  const integer = schema.type === "integer";
  const lo = schema.minimum ?? schema.exclusiveMinimum;
  const hi = schema.maximum ?? schema.exclusiveMaximum;
  const box = h("input", { name, type: "number", step: integer ? "1" : "any", placeholder: required ? "required" : schema.default !== undefined ? String(schema.default) : "optional" });
  if (lo !== undefined) box.min = String(lo);
  if (hi !== undefined) box.max = String(hi);
  const start = initial ?? (required ? schema.default : undefined);
  if (start !== undefined) box.value = String(start);
  const wrap = h("span", { className: "number" });
  // An index without an upper bound (a latent, a position) is a number box only: a slider would need a range we do not know.
  if (!(integer && hi === undefined)) {
    const span = Math.max(10, 4 * Math.abs(schema.default ?? 0));
    const slider = h("input", { type: "range", min: String(lo ?? -span), max: String(hi ?? span), step: integer ? "1" : String(((hi ?? span) - (lo ?? -span)) / 200) });
    slider.setAttribute("aria-label", name);
    slider.value = box.value || String(schema.default ?? 0);
    slider.oninput = () => ((box.value = slider.value), changed());
    box.addEventListener("input", () => (slider.value = box.value));
    wrap.append(slider);
  }
  box.addEventListener("input", changed);
  wrap.append(box);
  return { el: wrap, get: () => (box.value === "" ? undefined : Number(box.value)) };
}

function arrayControl(schema, name, required, initial) {
  const items = schema.items || {};
  if (items.type === "object" && items.properties) {
    // A list of objects (sae-clamp's latents): one fieldset each, add and remove.
    const list = h("div", { className: "list" });
    const rows = [];
    const add = (value) => {
      const c = objectControl(items, name, value);
      const row = h("div", { className: "item" }, c.el, h("button", { type: "button", className: "remove", textContent: "×", title: "remove", onclick: () => (rows.splice(rows.indexOf(entry), 1), row.remove(), changed()) }));
      const entry = { c };
      rows.push(entry);
      list.append(row);
    };
    for (const v of Array.isArray(initial) && initial.length ? initial : required ? [undefined] : []) add(v);
    const more = h("button", { type: "button", textContent: "+ " + name.replace(/s$/, ""), onclick: () => (add(undefined), changed()) });
    return { el: h("div", {}, list, more), get: () => (rows.length ? rows.map((r) => r.c.get()) : undefined) };
  }
  if (["number", "integer", "string"].includes(items.type)) {
    // Short lists as comma-separated text (points, latent indices, a vector).
    const numeric = items.type !== "string";
    const input = h("input", { name, type: "text", value: Array.isArray(initial) ? initial.join(", ") : "", placeholder: numeric ? "comma-separated numbers" : name === "points" ? "e.g. resid_post.2, resid_post.3" : "comma-separated" });
    input.oninput = changed;
    return {
      el: input,
      get: () => {
        const parts = input.value.split(",").map((s) => s.trim()).filter(Boolean);
        if (parts.length === 0) return undefined;
        return numeric ? parts.map(Number) : parts;
      },
    };
  }
  return jsonControl(name, initial);
}

function objectControl(schema, name, initial, omitEmpty = false) {
  const box = h("div", { className: "fields" });
  const fields = [];
  for (const [key, prop] of Object.entries(schema.properties)) {
    if (prop["x-steerkit-trusted-only"]) continue; // the server's own configuration sets these, never a request
    const required = (schema.required || []).includes(key);
    const c = control(prop, key, required, initial ? initial[key] : undefined);
    fields.push([key, c]);
    box.append(h("label", { className: "field" }, h("span", { className: "key", textContent: key, title: required ? "required" : "optional" }), c.el));
  }
  return {
    el: box,
    get: () => {
      const out = {};
      for (const [key, c] of fields) {
        const v = c.get();
        if (v !== undefined) out[key] = v;
      }
      return omitEmpty && Object.keys(out).length === 0 ? undefined : out;
    },
  };
}

function jsonControl(name, initial) {
  const input = h("textarea", { name, rows: 2, spellcheck: false, value: initial === undefined ? "" : JSON.stringify(initial), placeholder: "JSON" });
  input.oninput = changed;
  return {
    el: input,
    get: () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch (e) {
        throw new Error(name + " is not JSON: " + e.message);
      }
    },
  };
}

// ---- the steering panel ---------------------------------------------------------------------------

const entries = []; // { plugin, form }

function addEntry(pluginName, initial) {
  const row = h("div", { className: "entry" });
  const select = h("select", { className: "plugin", "aria-label": "plugin" });
  for (const p of plugins) select.append(h("option", { value: p.name, textContent: p.name }));
  const entry = { row, select, form: null };
  const describe = h("p", { className: "hint" });
  const formSlot = h("div");
  const render = (value) => {
    const p = plugins.find((q) => q.name === select.value);
    describe.textContent = p.description;
    entry.form = p.schema ? objectControl(p.schema, p.name, value) : jsonControl("options", value);
    formSlot.replaceChildren(entry.form.el);
  };
  select.value = pluginName;
  select.onchange = () => (render(undefined), changed());
  const remove = h("button", { type: "button", className: "remove", textContent: "×", title: "remove this plugin", onclick: () => (entries.splice(entries.indexOf(entry), 1), row.remove(), changed()) });
  row.append(h("div", { className: "entry-head" }, select, remove), describe, formSlot);
  render(initial);
  entries.push(entry);
  $("entries").append(row);
}

/** What the steered column sends as `steering`: a preset's name, the built recipe, or the JSON typed in. */
function steering() {
  const source = $("source").value;
  if (source === "json") {
    try {
      return JSON.parse($("recipe").value || "[]");
    } catch (e) {
      throw new Error("the recipe is not JSON: " + e.message);
    }
  }
  if (source.startsWith("preset:")) return source.slice(7);
  return entries.map((e) => {
    const options = e.form.get();
    return options && Object.keys(options).length ? { plugin: e.select.value, options } : { plugin: e.select.value };
  });
}

function changed() {
  const source = $("source").value;
  $("builder").hidden = source !== "plugins";
  $("recipe").hidden = source !== "json";
  try {
    $("recipeView").textContent = JSON.stringify(steering(), null, 1);
  } catch (e) {
    $("recipeView").textContent = e.message;
  }
}

// ---- shading --------------------------------------------------------------------------------------

/** The `trace` field both requests carry, or null. */
function trace() {
  const kind = $("shade").value;
  if (kind === "sae") return { sae: $("shadeSae").value, latent: +$("shadeLatent").value };
  if (kind === "direction") return { direction: $("shadeDirection").value, point: $("shadePoint").value };
  return null;
}

function shadeControls() {
  const kind = $("shade").value;
  $("shadeSaeRow").hidden = kind !== "sae";
  $("shadeDirectionRow").hidden = kind !== "direction";
  $("legend").hidden = kind === "";
}

// Values by column and position; one scale for both columns so that they compare.
const values = [new Map(), new Map()];
const spans = [new Map(), new Map()];

function shadeAll() {
  let max = 0;
  for (const m of values) for (const v of m.values()) max = Math.max(max, Math.abs(v));
  const signed = $("shade").value === "direction";
  for (let col = 0; col < 2; col++) {
    for (const [pos, span] of spans[col]) {
      const v = values[col].get(pos);
      if (v === undefined) continue;
      const a = max > 0 ? Math.min(1, Math.abs(v) / max) : 0;
      span.style.backgroundColor = v >= 0 || !signed ? `rgba(245, 140, 20, ${(0.75 * a).toFixed(3)})` : `rgba(40, 110, 230, ${(0.75 * a).toFixed(3)})`;
      span.title = `position ${pos}: ${v.toFixed(3)}`;
      span.dataset.value = String(v);
    }
  }
  const what = signed ? `projection onto "${$("shadeDirection").value}" at ${$("shadePoint").value}` : `latent ${$("shadeLatent").value} of SAE "${$("shadeSae").value}"`;
  $("legendText").textContent = `${what}; largest |value| ${max.toFixed(3)}` + (signed ? " (orange +, blue −)" : "");
}

// ---- generating -----------------------------------------------------------------------------------

let controller = null;

function showError(stats, message) {
  stats.append(h("span", { className: "error", textContent: message }));
}

async function run(col, body) {
  const out = $("out" + col), stats = $("stats" + col);
  out.replaceChildren();
  stats.textContent = "";
  values[col].clear();
  spans[col].clear();
  const chat = "messages" in body;
  try {
    const res = await fetch(chat ? "/v1/chat/completions" : "/v1/completions", { method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!res.ok) {
      const e = await res.json();
      showError(stats, (e.error.param ? e.error.param + ": " : "") + e.error.message);
      return;
    }
    out.classList.add("streaming");
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, k);
        buf = buf.slice(k + 2);
        if (!event.startsWith("data: ")) continue; // SSE comments
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) {
          showError(stats, chunk.error.message);
          continue;
        }
        if (chunk.steerkit && chunk.steerkit.trace) {
          values[col].set(chunk.steerkit.trace.position, chunk.steerkit.trace.value);
          shadeAll();
        }
        const c = chunk.choices[0];
        if (!c) continue;
        const text = chat ? c.delta.content || "" : c.text;
        if (text) {
          const span = h("span", { className: "tok", textContent: text });
          const positions = (chunk.steerkit && chunk.steerkit.positions) || [];
          if (positions.length) span.dataset.pos = String(positions[positions.length - 1]);
          for (const p of positions) spans[col].set(p, span);
          out.append(span);
          if (positions.length && values[col].size) shadeAll();
        }
        if (c.finish_reason && chunk.steerkit) stats.textContent = c.finish_reason + " · " + chunk.steerkit.timings.tokensPerSecond.toFixed(0) + " tok/s · seed " + chunk.steerkit.seed;
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(stats, e.message);
  } finally {
    out.classList.remove("streaming");
  }
}

$("send").onclick = async () => {
  let steer;
  try {
    steer = steering();
  } catch (e) {
    $("stats1").replaceChildren();
    showError($("stats1"), e.message);
    return;
  }
  const seed = $("seed").value === "" ? Math.floor(Math.random() * 2 ** 32) : +$("seed").value;
  const base = { stream: true, max_tokens: +$("maxTokens").value, temperature: +$("temperature").value, seed };
  const t = trace();
  if (t) base.trace = t;
  const mode = document.querySelector("input[name=mode]:checked").value;
  if (mode === "chat") base.messages = [{ role: "user", content: $("input").value }];
  else base.prompt = $("input").value;
  $("legend").hidden = !t;
  controller = new AbortController();
  $("send").disabled = true;
  $("stop").disabled = false;
  document.body.dataset.state = "running";
  await Promise.all([run(0, base), run(1, { ...base, steering: steer })]);
  $("send").disabled = false;
  $("stop").disabled = true;
  controller = null;
  document.body.dataset.state = "done";
};
$("stop").onclick = () => controller && controller.abort();

// ---- start ----------------------------------------------------------------------------------------

async function start() {
  const [pluginList, presetList] = await Promise.all([getJson("/v1/plugins"), getJson("/v1/presets").catch(() => ({ data: [] }))]);
  // Plugins with trusted-only options are recorders (logger, sae-latents): a request cannot give them
  // a sink, so they are not offered here; what they record reaches the page through `trace`.
  plugins = pluginList.data.filter((p) => p.trustedOptions.length === 0);
  artifacts = pluginList.artifacts || [];
  $("artifactNames").replaceChildren(...artifacts.map((a) => h("option", { value: a.name, textContent: a.kind })));

  // Built afresh each time (start runs again when an API key is entered).
  entries.length = 0;
  $("entries").replaceChildren();
  $("stats1").replaceChildren();
  const source = $("source");
  source.replaceChildren();
  source.append(h("option", { value: "plugins", textContent: "plugins (below)" }));
  for (const p of presetList.data) source.append(h("option", { value: "preset:" + p.name, textContent: "preset: " + p.name + (p.description ? " — " + p.description : "") }));
  source.append(h("option", { value: "json", textContent: "recipe JSON" }));
  source.onchange = changed;

  // A first plugin to steer with: a registered direction added at its own points, or a made-up
  // vector in the middle of the model when the server has none.
  const direction = artifacts.find((a) => a.kind === "direction");
  if (plugins.some((p) => p.name === "add-vector")) {
    const mid = Math.floor(config.nLayers / 2);
    addEntry("add-vector", direction ? { vector: direction.name, scale: 1 } : { points: ["resid_post." + mid], vector: Array.from({ length: config.dModel }, (_, i) => (i % 2 ? 1 : -1)), scale: 0.5 });
  } else if (plugins.length) addEntry(plugins[0].name);
  $("addEntry").onclick = () => (addEntry(plugins[0].name), changed());
  $("recipe").value = JSON.stringify(steering());

  const saes = artifacts.filter((a) => a.kind === "sae");
  const directions = artifacts.filter((a) => a.kind === "direction");
  $("shadeSae").replaceChildren(...saes.map((a) => h("option", { value: a.name, textContent: a.name })));
  $("shadeDirection").replaceChildren(...directions.map((a) => h("option", { value: a.name, textContent: a.name })));
  $("shadePoint").replaceChildren(...points.map((p) => h("option", { value: p, textContent: p })));
  $("shadePoint").value = "resid_post." + Math.floor(config.nLayers / 2);
  for (const [kind, list] of [["sae", saes], ["direction", directions]]) $("shade").querySelector(`option[value=${kind}]`).hidden = !list.length;
  $("shade").value = directions.length ? "direction" : saes.length ? "sae" : "";
  $("shade").onchange = shadeControls;
  shadeControls();
  changed();
  document.body.dataset.state = "ready";
}

const failed = (e) => showError($("stats1"), "could not load the plugin list: " + e.message + ($("key") ? " (enter the API key)" : ""));
start().catch(failed);
if ($("key")) $("key").addEventListener("change", () => start().catch(failed));
