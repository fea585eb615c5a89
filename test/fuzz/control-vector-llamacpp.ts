// Control-vector mutants through both readers: Steerkit's (readControlVector, what the direction
// kind and add-vector use) and llama.cpp's own (common_control_vector_load, the code behind
// `--control-vector`, through llamacpp-cvec-dump.cpp built against the pinned llama.cpp). The
// campaign (campaign.ts, format "controlvector") proves Steerkit never aborts or hangs on these
// files; this asks the other question: when both accept a file, do they read the same vector from it
// (every layer, every value, bit for bit)? A file both accept with different vectors would be a
// misleading success; files only one of them accepts are listed with both reasons.
//
//   g++ -O1 -std=c++17 -o cvdump test/fuzz/llamacpp-cvec-dump.cpp -I<llama.cpp>/common -I<llama.cpp>/include \
//       -I<llama.cpp>/ggml/include -I<llama.cpp>/vendor <build>/bin/libllama-common.so <build>/bin/libllama.so \
//       <build>/bin/libggml-base.so -Wl,-rpath,<build>/bin
//   bun test/fuzz/control-vector-llamacpp.ts --dump ./cvdump [--count 10000] [--seed 42]
//
// (llama-completion itself is no oracle here: on a file its loader refuses it logs an error and
// generates unsteered with exit code 0, and under load its piped output was not reproducible.)
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { SteerkitError } from "../../src/core/errors.ts";
import { readControlVector } from "../../src/directions/control-vector.ts";
import { ggufLayout, mutateGguf, rng } from "./mutate.ts";

const { values } = parseArgs({
  options: { dump: { type: "string" }, count: { type: "string", default: "2000" }, seed: { type: "string", default: "42" } },
});
if (!values.dump) throw new Error("--dump <cvdump built from test/fuzz/llamacpp-cvec-dump.cpp> is required");

type Read = { ok: true; layers: Map<number, Float32Array>; width: number } | { ok: false; why: string };

function llamaCpp(path: string): Read {
  const p = Bun.spawnSync([values.dump!], { stdin: new TextEncoder().encode(path + "\n"), stderr: "pipe", timeout: 20_000 });
  if (p.signalCode) return { ok: false, why: `CRASHED: ${p.signalCode}` };
  const out = JSON.parse(p.stdout.toString().trim()) as { n_embd: number; data?: (number | string)[] };
  if (out.n_embd === -1) {
    const err = p.stderr.toString().split("\n").filter((l) => / E /.test(l)).map((l) => l.replace(/^[\d.]+ E (cmn  )?/, ""));
    return { ok: false, why: err.join("; ") || "refused" };
  }
  const layers = new Map<number, Float32Array>();
  const data = out.data!.map(Number);
  for (let l = 1; l * out.n_embd <= data.length; l++) layers.set(l, Float32Array.from(data.slice((l - 1) * out.n_embd, l * out.n_embd)));
  return { ok: true, layers, width: out.n_embd };
}

function steerkit(path: string): Read {
  try {
    const cv = readControlVector(path);
    return { ok: true, layers: new Map(cv.layers), width: cv.width };
  } catch (e) {
    if (e instanceof SteerkitError) return { ok: false, why: e.message };
    return { ok: false, why: `NOT A CLEAR ERROR: ${(e as Error).name}: ${(e as Error).message}` };
  }
}

/** Same vector at every layer either has (a layer only one lists must be all zeros in it). */
function same(a: Read & { ok: true }, b: Read & { ok: true }): boolean {
  if (a.width !== b.width) return false;
  for (const l of new Set([...a.layers.keys(), ...b.layers.keys()])) {
    const x = a.layers.get(l) ?? new Float32Array(a.width);
    const y = b.layers.get(l) ?? new Float32Array(a.width);
    for (let i = 0; i < a.width; i++) if (!Object.is(x[i], y[i])) return false;
  }
  return true;
}

const seed = new Uint8Array(readFileSync(join(import.meta.dir, "../../models/directions/stories260K-dog/dog.gguf")));
const layout = ggufLayout(seed);
const r = rng(Number(values.seed) * 7919 + 4); // the campaign's stream for this format (FORMATS index 4)
const work = mkdtempSync(join(tmpdir(), "steerkit-cv-llamacpp-"));
const count = Number(values.count);
const table = new Map<string, number>();
const examples = new Map<string, string[]>();
/** Why Steerkit refused the files only llama.cpp reads: its message with numbers and quoted text generalised. */
const stricter = new Map<string, number>();
try {
  for (let i = 0; i < count; i++) {
    const m = mutateGguf(seed, layout, r);
    const path = join(work, "cv.gguf");
    writeFileSync(path, m.bytes);
    const [a, b] = [steerkit(path), llamaCpp(path)];
    const key = a.ok && b.ok ? (same(a, b) ? "both read, same vector" : "both read, DIFFERENT vectors") : a.ok ? "only Steerkit reads it" : b.ok ? "only llama.cpp reads it" : "both refuse";
    table.set(key, (table.get(key) ?? 0) + 1);
    if (key === "only llama.cpp reads it" && !a.ok) {
      const why = a.why.replace(`${path}: `, "").replace(/"[^"]*"/g, '"…"').replace(/\d+/g, "N");
      stricter.set(why, (stricter.get(why) ?? 0) + 1);
    }
    const list = examples.get(key) ?? [];
    if (key !== "both read, same vector" && list.length < 6) {
      list.push(`${m.what}\n    Steerkit: ${a.ok ? `layers ${[...a.layers.keys()].join(",")}` : a.why}\n    llama.cpp: ${b.ok ? `layers ${[...b.layers.keys()].join(",")}` : b.why}`);
    }
    examples.set(key, list);
    if ((i + 1) % 250 === 0) process.stderr.write(`${i + 1}/${count}\r`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
console.log(`\n${count} control-vector mutants (seed ${values.seed}) of models/directions/stories260K-dog/dog.gguf`);
console.log("| outcome | files |\n|---|---:|");
for (const [k, n] of [...table].sort((x, y) => y[1] - x[1])) console.log(`| ${k} | ${n} |`);
console.log("\nWhy Steerkit refuses the files only llama.cpp reads:\n| Steerkit's reason | files |\n|---|---:|");
for (const [k, n] of [...stricter].sort((x, y) => y[1] - x[1])) console.log(`| ${k} | ${n} |`);
for (const [k, list] of examples) for (const e of list) console.log(`- ${k}: ${e.replaceAll(work + "/cv.gguf: ", "")}`);
