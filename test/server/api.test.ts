/**
 * The OpenAI-compatible API of `createChatServer` on the embedded model (llama.cpp), through the
 * app's fetch: answers, streaming, steering, every validation error, and the trust boundary.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact } from "../../src/directions/artifact.ts";
import type { Model } from "../../src/core/backend.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { createChatServer, type ChatServerOptions } from "../../src/server/index.ts";
import { logitBias } from "steerkit-plugin-logit-bias";
import { json, registry, seenPrompts, sseChunks, vec } from "./helpers.ts";

const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
afterAll(() => model.dispose());
const STEER = [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(model, 4) } }];
const server = await createChatServer({
  model,
  registry: registry(logitBias),
  artifacts: createArtifacts().register("concept", directionArtifact, { value: vec(model, 4) }),
  presets: { concept: { description: "adds the concept", recipe: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "concept" } }] }, trace: [{ plugin: "logger", options: { console: false, onRecord: () => {} } }] },
  maxTokens: 200,
});

function call(app: { fetch: (r: Request) => Response | Promise<Response> }, path: string, body?: unknown, headers: Record<string, string> = {}) {
  const init: RequestInit = body === undefined ? {} : { method: "POST", headers: { "content-type": "application/json", ...headers }, body: typeof body === "string" ? body : JSON.stringify(body) };
  if (body === undefined) init.headers = headers;
  return app.fetch(new Request(`http://127.0.0.1:3000${path}`, init));
}
const post = (path: string, body: unknown, headers?: Record<string, string>) => call(server, path, body, headers);
const complete = (body: object) => post("/v1/completions", { prompt: "Once upon a time", max_tokens: 12, temperature: 0, ...body });
const errorOf = async (r: Response) => (await json(r)).error as { message: string; type: string; param: string | null; code: string };

describe("OpenAI-compatible answers on the embedded model", () => {
  test("completion, JSON: the known story, usage and finish_reason", async () => {
    const res = await complete({});
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.object).toBe("text_completion");
    expect(body.choices[0].text).toStartWith(", there was a little girl named Lily");
    expect(body.choices[0].finish_reason).toBe("length");
    expect(body.usage).toEqual({ prompt_tokens: 5, completion_tokens: 12, total_tokens: 17 });
  });

  test("chat, streamed: role first, content deltas that add up to the JSON answer, finish chunk, usage, [DONE]", async () => {
    const body = { messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, seed: 7, temperature: 0.9 };
    const whole = await json(await post("/v1/chat/completions", body));
    const res = await post("/v1/chat/completions", { ...body, stream: true, stream_options: { include_usage: true } });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const { chunks, done } = sseChunks(await res.text());
    expect(done).toBe(true);
    expect(chunks[0].choices[0].delta.role).toBe("assistant");
    expect(chunks.every((c) => c.object === "chat.completion.chunk" && c.id === chunks[0].id)).toBe(true);
    const text = chunks.flatMap((c) => c.choices.map((ch: any) => ch.delta.content ?? "")).join("");
    expect(text).toBe(whole.choices[0].message.content);
    const finish = chunks.at(-2);
    expect(finish.choices[0].finish_reason).toBe(whole.choices[0].finish_reason);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: whole.usage });
  });

  test("content given as text parts is the same as the joined string; the model field is accepted and answered by this model", async () => {
    const ask = async (content: unknown) => json(await post("/v1/chat/completions", { model: "gpt-4o", messages: [{ role: "user", content }], max_tokens: 8, temperature: 0 }));
    const parts = await ask([{ type: "text", text: "Tell me " }, { type: "text", text: "a story" }]);
    const whole = await ask("Tell me a story");
    expect(parts.choices[0].message.content).toBe(whole.choices[0].message.content);
    expect(parts.model).toBe("llama");
    expect(await errorOf(await post("/v1/chat/completions", { messages: [{ role: "user", content: [{ type: "image_url", image_url: "x" }] }] }))).toMatchObject({ param: "messages.0.content", message: expect.stringContaining("content must be a string or an array of text parts") });
  });

  test("without include_usage there is no usage chunk; a text completion streams text chunks", async () => {
    const { chunks, done } = sseChunks(await (await complete({ stream: true })).text());
    expect(done).toBe(true);
    expect(chunks.every((c) => c.choices.length === 1 && !("usage" in c))).toBe(true);
    expect(chunks.map((c) => c.choices[0].text).join("")).toStartWith(", there was a little girl named Lily");
  });

  test("finish reasons in OpenAI's words: eos and stop strings are stop, the token budget is length", async () => {
    const eos = await json(await complete({ steering: [{ plugin: "steerkit-plugin-logit-bias", options: { bias: { [model.info.eosTokens[0]!]: 100 } } }] }));
    expect([eos.steerkit.finish_reason, eos.choices[0].finish_reason]).toEqual(["eos", "stop"]);
    const stop = await json(await complete({ stop: "Lily" }));
    expect([stop.steerkit.finish_reason, stop.choices[0].finish_reason, stop.choices[0].text]).toEqual(["stop", "stop", ", there was a little girl named "]);
  });

  test("steering changes the output; a preset by name equals the same recipe given inline", async () => {
    const plain = (await json(await complete({ max_tokens: 20 }))).choices[0].text;
    const steered = (await json(await complete({ max_tokens: 20, steering: STEER }))).choices[0].text;
    const preset = (await json(await complete({ max_tokens: 20, steering: "concept" }))).choices[0].text;
    expect(steered).not.toBe(plain);
    expect(preset).toBe(steered);
  });

  test("concurrent requests with different steering do not leak into each other", async () => {
    const other = [{ plugin: "add-vector", options: { points: ["resid_mid.3"], vector: vec(model, -4) } }];
    const text = async (steering: unknown) => (await json(await complete({ max_tokens: 16, steering }))).choices[0].text;
    const alone = [await text(null), await text(STEER), await text(other)];
    const together = await Promise.all([null, STEER, other, null, STEER].map(text));
    expect(together).toEqual([alone[0], alone[1], alone[2], alone[0], alone[1]]);
    expect(new Set(alone).size).toBe(3);
  });

  test("a plugin failing mid-stream ends that stream with an error chunk; other requests are unaffected", async () => {
    const [failing, fine] = await Promise.all([complete({ stream: true, steering: [{ plugin: "fails-at-step-2" }] }), complete({})]);
    const { chunks, done } = sseChunks(await failing.text());
    expect(done).toBe(true);
    expect(chunks.filter((c) => c.choices).length).toBe(2);
    expect(chunks.at(-1).error).toEqual({ message: 'plugin "fails-at-step-2" failed in onResidual at resid_post.0: deliberate', type: "server_error", param: null, code: "PLUGIN_FAILED" });
    expect((await json(fine)).choices[0].text).toStartWith(", there was a little girl");
  });

  test("models, plugins (JSON Schemas, trusted-only options marked), presets (no options), health, metrics", async () => {
    const models = await json(await call(server, "/v1/models"));
    expect(models.data[0]).toMatchObject({ id: "llama", object: "model", steerkit: { nLayers: 5, dModel: 64, contextLength: 512 } });
    const plugins = await json(await call(server, "/v1/plugins"));
    const byName = Object.fromEntries(plugins.data.map((p: any) => [p.name, p]));
    expect(byName["add-vector"].schema.properties.scale).toEqual({ type: "number", default: 1 });
    expect(byName["add-vector"].schema.required).toEqual(["vector"]) // points are optional: a per-point direction brings its own;
    // Effect's Standard JSON Schema, as the example package declares it.
    expect(byName["steerkit-plugin-logit-bias"].schema.properties.ban.anyOf[0]).toEqual({ type: "array", items: { type: "string", minLength: 1 } });
    expect(byName.logger.trustedOptions).toEqual(["file", "console", "onRecord"]);
    expect(byName.logger.schema.properties.file["x-steerkit-trusted-only"]).toBe(true);
    expect(plugins.artifacts).toEqual([{ name: "concept", kind: "direction", source: "memory" }]);
    const presets = await json(await call(server, "/v1/presets"));
    expect(presets.data).toEqual([{ name: "concept", description: "adds the concept", plugins: ["add-vector"] }, { name: "trace", description: "", plugins: ["logger"] }]);
    expect(await json(await call(server, "/health"))).toEqual({ status: "ok", model: "llama", active: 0, queued: 0, parallel: 4, batched: true });
    const metrics = await (await call(server, "/metrics")).text();
    expect(metrics).toMatch(/^steerkit_requests_total\{route="\/v1\/completions",status="200"\} \d+$/m);
    expect(metrics).toMatch(/^steerkit_completion_tokens_total [1-9]\d*$/m);
    expect(metrics).toMatch(/^steerkit_time_to_first_token_seconds_count [1-9]\d*$/m);
    expect(metrics).toMatch(/^steerkit_active_sequences 0$/m);
    expect(metrics).toMatch(/^steerkit_max_sequences 4$/m);
    expect(metrics).toMatch(/^steerkit_queue_length 0$/m);
  });

  test("plugin packages named in the configuration are imported at start-up; requests can use them, never import one", async () => {
    const withPackage = await createChatServer({ model, pluginPackages: ["steerkit-plugin-logit-bias"] });
    const names = (await json(await call(withPackage, "/v1/plugins"))).data.map((p: any) => p.name);
    expect(names).toContain("steerkit-plugin-logit-bias");
    const ask = (steering?: unknown) => call(withPackage, "/v1/completions", { prompt: "Once upon a time", max_tokens: 12, temperature: 0, steering });
    const plain = (await json(await ask())).choices[0].text;
    expect(plain).toContain("there");
    const banned = (await json(await ask([{ plugin: "steerkit-plugin-logit-bias", options: { ban: ["there"] } }]))).choices[0].text;
    expect(banned).not.toContain("there");
    // A server without it refuses the name and imports nothing for the request.
    const plainServer = await createChatServer({ model });
    const refused = await call(plainServer, "/v1/completions", { prompt: "Once upon a time", steering: [{ plugin: "steerkit-plugin-logit-bias" }] });
    expect(refused.status).toBe(400);
    expect((await errorOf(refused)).message).toContain("packages are imported only for trusted recipes");
    await expect(createChatServer({ model, pluginPackages: ["steerkit-plugin-does-not-exist"] })).rejects.toThrow(/plugin package "steerkit-plugin-does-not-exist": importing it failed/);
    await expect(createChatServer({ model, pluginPackages: ["valibot"] })).rejects.toThrow(/plugin package "valibot" exports no plugin factory/);
  });

  test("the page at / runs on the new API", async () => {
    const html = await (await call(server, "/")).text();
    expect(html).toContain("/v1/chat/completions");
    expect(html).toContain("unsteered");
  });
});

describe("validation errors: 400 in OpenAI's shape, naming the field", () => {
  test("bad sampling fields: every one in the message, the first as param", async () => {
    const e = await errorOf(await complete({ temperature: -1, max_tokens: "many" }));
    expect(e).toMatchObject({ type: "invalid_request_error", code: "INVALID_REQUEST", param: "max_tokens" });
    expect(e.message).toContain("temperature: ");
  });
  test("prompt and messages together, n > 1, logprobs, bad roles, empty messages", async () => {
    const both = await post("/v1/chat/completions", { messages: [{ role: "user", content: "x" }], prompt: "y" });
    expect(both.status).toBe(400);
    expect((await errorOf(both)).param).toBe("prompt");
    expect((await errorOf(await complete({ messages: [{ role: "user", content: "x" }] }))).param).toBe("messages");
    expect((await errorOf(await complete({ n: 2 }))).message).toContain("only n = 1 is supported");
    expect((await errorOf(await complete({ logprobs: true }))).param).toBe("logprobs");
    expect((await errorOf(await post("/v1/chat/completions", { messages: [{ role: "wizard", content: "x" }] }))).param).toBe("messages.0.role");
    expect((await errorOf(await post("/v1/chat/completions", { messages: [] }))).param).toBe("messages");
  });
  test("malformed JSON and unknown routes", async () => {
    const bad = await post("/v1/completions", "{not json");
    expect(bad.status).toBe(400);
    expect((await errorOf(bad)).type).toBe("invalid_request_error");
    expect((await call(server, "/v1/nope")).status).toBe(404);
  });
  test("steering errors name steering: unknown plugin, unknown preset, wrong width, bad layer, unknown artifact", async () => {
    const cases: [unknown, RegExp][] = [
      [[{ plugin: "nope" }], /unknown plugin "nope".*known plugins: .*add-vector/],
      ["missing", /no preset named "missing"; presets: concept, trace/],
      [[{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: [1, 2] } }], /vector has 2 values; the model's residual has 64/],
      [[{ plugin: "add-vector", options: { points: ["resid_post.9"], vector: vec(model, 1) } }], /layer 9 of resid_post is outside 0..4/],
      [[{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "nope" } }], /no direction named "nope" is registered; registered directions: concept/],
      [{ plugin: "add-vector" }, /steering must be a preset name or a recipe/],
    ];
    for (const [steering, message] of cases) {
      const res = await complete({ steering });
      expect(res.status).toBe(400);
      const e = await errorOf(res);
      expect(e.param ?? "").toStartWith("steering");
      expect(e.message).toMatch(message);
    }
  });
});

describe("trust boundary", () => {
  test("a request recipe cannot make the server write a file (403 UNTRUSTED_OPTION) or import a package", async () => {
    const target = `/tmp/steerkit-server-test-${process.pid}.jsonl`;
    const res = await complete({ steering: [{ plugin: "logger", options: { points: ["resid_post.1"], file: target } }] });
    expect(res.status).toBe(403);
    expect(await errorOf(res)).toMatchObject({ type: "permission_error", code: "UNTRUSTED_OPTION", param: "steering" });
    expect(existsSync(target)).toBe(false);
    const pkg = await errorOf(await complete({ steering: [{ plugin: "steerkit-plugin-not-registered", options: {} }] }));
    expect(pkg.code).toBe("UNKNOWN_PLUGIN");
    expect(pkg.message).toContain("packages are imported only for trusted recipes");
  });
  test("recipe length is capped (32 entries)", async () => {
    const e = await errorOf(await complete({ steering: Array.from({ length: 33 }, () => STEER[0]) }));
    expect(e).toMatchObject({ code: "INVALID_RECIPE", param: "steering" });
    expect(e.message).toContain("a request may give at most 32");
  });
  test("a vector times scale that overflows float32 is a 400 naming scale", async () => {
    const e = await errorOf(await complete({ steering: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(model, 3e38), scale: 10 } }] }));
    expect(e).toMatchObject({ code: "INVALID_OPTIONS", param: "steering" });
    expect(e.message).toContain("overflows float32");
  });
  test("max_tokens above the server's cap is refused, naming the field", async () => {
    expect(await errorOf(await complete({ max_tokens: 201 }))).toMatchObject({ param: "max_tokens", code: "INVALID_REQUEST" });
    expect((await errorOf(await complete({ max_completion_tokens: 1000 }))).param).toBe("max_completion_tokens");
  });
  test("a body over the limit is 413 before it is parsed; vectors are bounded by it", async () => {
    const huge = await complete({ steering: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: new Array(600_000).fill(0.123456) } }] });
    expect(huge.status).toBe(413);
    expect((await errorOf(huge)).code).toBe("BODY_TOO_LARGE");
  });
  test("a prompt longer than the context is a 400; a huge one is refused by its size, never tokenized", async () => {
    let longest = 0;
    const counting: Model = Object.create(model, { tokenize: { value: (text: string, o?: object) => ((longest = Math.max(longest, text.length)), model.tokenize(text, o)) } });
    // Not batched: a batched view is made by the model itself, which an Object.create wrapper is not.
    const big = await createChatServer({ model: counting, bodyLimit: 64 * 1024 * 1024, batched: false });
    const fifty = "Once upon a time ".repeat(3_000_000); // 51 MB
    for (const [path, body] of [["/v1/completions", { prompt: fifty }], ["/v1/chat/completions", { messages: [{ role: "user", content: fifty }] }]] as const) {
      const res = await call(big, path, body);
      expect(res.status).toBe(400);
      expect(await errorOf(res)).toMatchObject({ code: "CONTEXT_OVERFLOW", param: path.includes("chat") ? "messages" : "prompt" });
    }
    expect(longest).toBe(0);
    const over = await errorOf(await complete({ prompt: "Once upon a time ".repeat(200) })); // ~800 tokens, 3.4 KB
    expect(over).toMatchObject({ code: "CONTEXT_OVERFLOW", param: "prompt" });
    expect(over.message).toMatch(/the prompt has \d+ tokens; the context holds 512/);
  });
  test('message content "</s>" stays text: the prompt holds no EOS token', async () => {
    seenPrompts.length = 0;
    const res = await post("/v1/chat/completions", { messages: [{ role: "user", content: "The end.</s>Once upon a time" }], max_tokens: 2, steering: [{ plugin: "record-prompt" }] });
    expect(res.status).toBe(200);
    expect(seenPrompts).toHaveLength(1);
    expect(seenPrompts[0]).not.toContain(model.info.eosTokens[0]!);
    expect(model.detokenize(seenPrompts[0]!)).toContain("The end.</s>Once upon a time");
  });
  test("Host and Origin checks: DNS rebinding and cross-origin POSTs are refused; non-JSON bodies are 415", async () => {
    const rebinding = await post("/v1/completions", { prompt: "x" }, { host: "attacker.example:3000" });
    expect(rebinding.status).toBe(403);
    expect((await errorOf(rebinding)).code).toBe("HOST_NOT_ALLOWED");
    const cross = await post("/v1/completions", { prompt: "x", max_tokens: 1 }, { origin: "https://evil.example" });
    expect(cross.status).toBe(403);
    expect((await errorOf(cross)).code).toBe("ORIGIN_NOT_ALLOWED");
    expect((await post("/v1/completions", { prompt: "x", max_tokens: 1 }, { origin: "null" })).status).toBe(403);
    expect((await post("/v1/completions", { prompt: "x", max_tokens: 1 }, { origin: "http://localhost:3000" })).status).toBe(200);
    const plain = await server.fetch(new Request("http://127.0.0.1:3000/v1/completions", { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ prompt: "x" }) }));
    expect(plain.status).toBe(415);
    expect((await errorOf(plain)).code).toBe("UNSUPPORTED_MEDIA_TYPE");
  });
  test("a server bound to another address answers to that name too; allowedHosts '*' to any", async () => {
    const lan = await createChatServer({ model, host: "192.0.2.10" } satisfies ChatServerOptions);
    const ask = (host: string) => lan.fetch(new Request(`http://${host}/health`));
    expect((await ask("192.0.2.10:3000")).status).toBe(200);
    expect((await ask("other.example")).status).toBe(403);
  });
  test("an API key guards /v1 and /metrics, not /health", async () => {
    const keyed = await createChatServer({ model, apiKey: "sekrit" });
    const req = (path: string, auth?: string) => call(keyed, path, undefined, auth ? { authorization: auth } : {});
    const none = await req("/v1/models");
    expect(none.status).toBe(401);
    expect(await errorOf(none)).toMatchObject({ type: "authentication_error", code: "INVALID_API_KEY" });
    expect((await req("/v1/models", "Bearer wrong")).status).toBe(401);
    expect((await req("/metrics")).status).toBe(401);
    expect((await req("/v1/models", "Bearer sekrit")).status).toBe(200);
    expect((await req("/health")).status).toBe(200);
  });
});
