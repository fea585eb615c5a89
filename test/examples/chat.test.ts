/**
 * `bun examples/chat.ts` as a user runs it: starts on the embedded model with no other step, binds
 * 127.0.0.1, prints the URL, and serves presets and artifacts given by flags.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const dir = mkdtempSync(join(tmpdir(), "steerkit-chat-example-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function start(args: string[]) {
  const proc = Bun.spawn(["bun", "examples/chat.ts", "--port", "0", ...args], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
  afterAll(() => proc.kill());
  const reader = proc.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/http:\/\/\S+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the example exited: ${out}${await new Response(proc.stderr).text()}`);
    out += value;
  }
  return { out, url: /http:\/\/\S+/.exec(out)![0].replace(/\/$/, "") };
}

describe("examples/chat.ts", () => {
  test("--help lists the flags", async () => {
    const help = Bun.spawnSync(["bun", "examples/chat.ts", "--help"], { cwd: ROOT });
    const text = help.stdout.toString();
    for (const flag of ["--model", "--host", "--port", "--context", "--threads", "--parallel", "--presets", "--direction", "--sae", "--plugin", "--api-key"]) expect(text).toContain(flag);
  });

  test("bad start-up input is one line on stderr and exit 1: a plugin package that does not load, a bad number", () => {
    const bad = Bun.spawnSync(["bun", "examples/chat.ts", "--plugin", "steerkit-plugin-does-not-exist", "--port", "0"], { cwd: ROOT });
    expect(bad.exitCode).toBe(1);
    expect(bad.stderr.toString().trim()).toStartWith('steerkit chat: plugin package "steerkit-plugin-does-not-exist": importing it failed');
    expect(bad.stderr.toString().trim().split("\n").length).toBe(1);
    const port = Bun.spawnSync(["bun", "examples/chat.ts", "--port", "abc"], { cwd: ROOT });
    expect(port.exitCode).toBe(1);
    expect(port.stderr.toString().trim()).toBe('steerkit chat: --port must be a whole number, got "abc"');
  });

  test("starts on the embedded model on 127.0.0.1 and serves presets and artifacts from flags", async () => {
    const presets = join(dir, "presets");
    const direction = join(dir, "concept.json");
    Bun.spawnSync(["mkdir", "-p", presets]);
    writeFileSync(direction, JSON.stringify(Array.from({ length: 64 }, (_, i) => (i % 2 ? 4 : -4))));
    writeFileSync(join(presets, "concept.json"), JSON.stringify({ description: "the concept, added", recipe: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "concept" } }] }));
    const { out, url } = await start(["--presets", presets, "--direction", `concept=${direction}`, "--sae", "features=test/fixtures/sae/saelens-v6-relu-f32-cnr"]);
    expect(out).toContain("llama (llama-cpp, 5 layers)");
    expect(url).toStartWith("http://127.0.0.1:");
    expect(await (await fetch(url + "/health")).json()).toMatchObject({ status: "ok" });
    expect(((await (await fetch(url + "/v1/presets")).json()) as any).data).toEqual([{ name: "concept", description: "the concept, added", plugins: ["add-vector"] }]);
    expect(((await (await fetch(url + "/v1/plugins")).json()) as any).artifacts).toEqual([
      { name: "concept", kind: "direction", source: "file" },
      { name: "features", kind: "sae", source: "file" },
      // On the embedded model its shipped SAE and direction are registered too.
      { name: "sae", kind: "sae", source: "file" },
      { name: "dog", kind: "direction", source: "file" },
    ]);
    const ask = (steering: unknown) =>
      fetch(url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time", max_tokens: 12, temperature: 0, steering }) }).then((r) => r.json() as Promise<any>);
    const [plain, preset] = await Promise.all([ask(null), ask("concept")]);
    expect(plain.choices[0].text).toStartWith(", there was a little girl named Lily");
    expect(preset.choices[0].text).not.toBe(plain.choices[0].text);
  });
});
