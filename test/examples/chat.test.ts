import { afterAll, describe, expect, test } from "bun:test";
import * as v from "valibot";
import { createChatApp } from "../../examples/chat.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts, directionArtifact } from "../../src/core/artifacts.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { createRegistry } from "../../src/plugins/index.ts";

const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
afterAll(() => model.dispose());
const registry = createRegistry().register(
  definePlugin({
    name: "fails-at-step-2", options: v.object({}), needs: ["residual:read"],
    create: () => ({ points: [{ site: "resid_post", layer: 0 }], onResidual: (_x, ctx) => { if (ctx.step === 2) throw new Error("deliberate"); } }),
  }),
);
const app = createChatApp(model, registry);
const post = (body: unknown) =>
  app.fetch(new Request("http://local/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) }));

/** Response bodies are checked field by field below. */
const json = (r: Response): Promise<any> => r.json();

function sseEvents(text: string): { event: string; data: any }[] {
  return text.trim().split("\n\n").map((chunk) => ({
    event: /^event: (.*)$/m.exec(chunk)![1]!,
    data: JSON.parse(/^data: (.*)$/m.exec(chunk)![1]!),
  }));
}

const vec = (x: number) => Array.from({ length: model.info.dModel }, (_, i) => (i % 2 ? x : -x));

describe("chat example server on the embedded model (llama.cpp)", () => {
  test("a request recipe cannot make the server write a file or import a package", async () => {
    const target = `/tmp/steerkit-chat-test-${process.pid}.jsonl`;
    const res = await post({ prompt: "Once", maxTokens: 2, recipe: [{ plugin: "logger", options: { file: target } }] });
    expect(res.status).toBe(403);
    const body = await json(res);
    expect(body.code).toBe("UNTRUSTED_OPTION");
    expect(body.error).toContain('"file" may be set only by trusted configuration');
    expect(await Bun.file(target).exists()).toBe(false);
    const pkg = await post({ prompt: "Once", maxTokens: 2, recipe: [{ plugin: "steerkit-plugin-logit-bias", options: {} }] });
    expect(pkg.status).toBe(400);
    expect((await json(pkg)).code).toBe("UNKNOWN_PLUGIN");
  });
  test("a request names a direction the server registered; an unknown name is a 400 naming it", async () => {
    const artifacts = createArtifacts().register("concept", directionArtifact, { value: vec(4) });
    const withArtifacts = createChatApp(model, createRegistry(), artifacts);
    const ask = (recipe: unknown) =>
      withArtifacts.fetch(new Request("http://local/api/generate", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Once upon a time", maxTokens: 12, temperature: 0, stream: false, recipe }) }));
    const named = await json(await ask([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "concept" } }]));
    const inline = await json(await ask([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(4) } }]));
    const plain = await json(await ask([]));
    expect(named.tokens).toEqual(inline.tokens);
    expect(named.tokens).not.toEqual(plain.tokens);
    const unknown = await ask([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "nope" } }]);
    expect(unknown.status).toBe(400);
    expect(await json(unknown)).toMatchObject({ code: "UNKNOWN_ARTIFACT", error: 'no direction named "nope" is registered; registered directions: concept' });
    const info = await json(await withArtifacts.fetch(new Request("http://local/api/info")));
    expect(info.artifacts).toEqual([{ name: "concept", kind: "direction", source: "memory" }]);
  });
  test("serves the page and the model info", async () => {
    const page = await app.fetch(new Request("http://local/"));
    expect(await page.text()).toContain("Steerkit chat");
    const info = await json(await app.fetch(new Request("http://local/api/info")));
    expect(info.model.nLayers).toBe(5);
    expect(info.plugins.map((p: { name: string }) => p.name)).toContain("add-vector");
  });
  test("JSON answer: the known story", async () => {
    const res = await post({ prompt: "Once upon a time", maxTokens: 12, temperature: 0, stream: false });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.text.startsWith(", there was a little girl named Lily")).toBe(true);
  });
  test("streamed answer: token events, then done with the same text", async () => {
    const res = await post({ prompt: "Once upon a time", maxTokens: 12, temperature: 0 });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseEvents(await res.text());
    const done = events.at(-1)!;
    expect(done.event).toBe("done");
    expect(events.slice(0, -1).map((e) => e.data.text).join("")).toBe(done.data.text);
  });
  test("concurrent requests with different recipes do not leak into each other", async () => {
    const body = (recipe: unknown[]) => ({ prompt: "Once upon a time", maxTokens: 16, temperature: 0, stream: false, recipe });
    const steerA = [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(4) } }];
    const steerB = [{ plugin: "add-vector", options: { points: ["resid_mid.3"], vector: vec(-4) } }];
    const alone = [];
    for (const r of [[], steerA, steerB]) alone.push((await json(await post(body(r)))).text);
    const together = await Promise.all([[], steerA, steerB, [], steerA].map(async (r) => (await json(await post(body(r)))).text));
    expect(together).toEqual([alone[0], alone[1], alone[2], alone[0], alone[1]]);
    expect(new Set(alone).size).toBe(3);
  });
  test("bad requests get 400 with the failing fields, and the server keeps serving", async () => {
    expect((await post("{not json")).status).toBe(400);
    const bad = await post({ prompt: "x", temperature: -1, maxTokens: "many" });
    expect(bad.status).toBe(400);
    expect((await json(bad)).issues.map((i: { path: string }) => i.path).sort()).toEqual(["maxTokens", "temperature"]);
    const unknown = await post({ prompt: "x", recipe: [{ plugin: "nope" }] });
    expect(unknown.status).toBe(400);
    expect((await json(unknown)).error).toMatch(/unknown plugin "nope".*known plugins: .*add-vector/);
    const width = await post({ prompt: "x", recipe: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: [1, 2] } }] });
    expect(width.status).toBe(400);
    expect((await json(width)).error).toContain("vector has 2 values; the model's residual has 64");
    const layer = await post({ prompt: "x", recipe: [{ plugin: "add-vector", options: { points: ["resid_post.9"], vector: vec(1) } }] });
    expect((await json(layer)).error).toContain("layer 9 of resid_post is outside 0..4");
    const neither = await post({ maxTokens: 3 });
    expect((await json(neither)).error).toMatch(/exactly one of prompt, messages or tokens/);
    const ok = await post({ prompt: "Once upon a time", maxTokens: 4, temperature: 0, stream: false });
    expect(ok.status).toBe(200);
  });
  test("a plugin failing mid-stream ends that stream with an error event; other requests are unaffected", async () => {
    const [failing, fine] = await Promise.all([
      post({ prompt: "Once upon a time", maxTokens: 10, recipe: [{ plugin: "fails-at-step-2" }] }),
      post({ prompt: "Once upon a time", maxTokens: 10, temperature: 0, stream: false }),
    ]);
    const events = sseEvents(await failing.text());
    expect(events.filter((e) => e.event === "token").length).toBe(2);
    expect(events.at(-1)).toEqual({ event: "error", data: { error: 'plugin "fails-at-step-2" failed in onResidual at resid_post.0: deliberate', code: "PLUGIN_FAILED" } });
    expect((await json(fine)).text.startsWith(", there was a little girl")).toBe(true);
  });
});
