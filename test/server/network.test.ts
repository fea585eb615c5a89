/**
 * The server over real HTTP on loopback: overload (429), a client that disconnects, /health while
 * every sequence generates, the request timeout, and the official `openai` client streaming with a
 * `steering` field. Busy generations are held by a gate plugin the test opens, never by timing.
 */
import { afterAll, describe, expect, test } from "bun:test";
import OpenAI from "openai";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { createChatServer, type ChatServerOptions } from "../../src/server/index.ts";
import { gate, json, registry, sseChunks, until, vec } from "./helpers.ts";

const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
const servers: ReturnType<typeof Bun.serve>[] = [];
afterAll(() => {
  for (const s of servers) s.stop(true);
  model.dispose();
});

async function listen(options: Omit<ChatServerOptions, "model">) {
  const server = await createChatServer({ model, ...options });
  const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: server.fetch, idleTimeout: 0 });
  servers.push(http);
  const url = http.url.href.replace(/\/$/, "");
  const post = (path: string, body: unknown, init: RequestInit = {}) =>
    fetch(url + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...init });
  const metric = async (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(await (await fetch(url + "/metrics")).text())![1]);
  return { server, url, post, metric };
}

describe("the server over HTTP on loopback", () => {
  test("overload: a full queue is answered 429 with Retry-After; queued requests run when a sequence frees", async () => {
    const g = gate();
    const { server, post } = await listen({ registry: registry(g.plugin), parallel: 1, maxQueue: 1 });
    const busy = await post("/v1/completions", { prompt: "Once upon a time", max_tokens: 8, stream: true, steering: [{ plugin: "gate" }] });
    expect(server.stats()).toMatchObject({ active: 1, queued: 0 });
    const waiting = post("/v1/completions", { prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
    await until(() => server.stats().queued === 1);
    const refused = await post("/v1/completions", { prompt: "Once upon a time", max_tokens: 4 });
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect((await json(refused)).error).toMatchObject({ type: "rate_limit_error", code: "QUEUE_FULL" });
    g.state.open();
    expect(sseChunks(await busy.text()).done).toBe(true);
    const queued = await waiting;
    expect(queued.status).toBe(200);
    expect((await json(queued)).choices[0].text).toStartWith(", there was");
    await server.whenIdle();
  });

  test("a client that disconnects cancels its generation and frees its sequence for the next request, even while a plugin's onToken hangs", async () => {
    const g = gate();
    const { server, post, metric } = await listen({ registry: registry(g.plugin), parallel: 1, maxQueue: 4 });
    const client = new AbortController();
    const res = await post("/v1/completions", { prompt: "Once upon a time", max_tokens: 400, ignore_eos: true, stream: true, steering: [{ plugin: "gate", options: { from: 2 } }] }, { signal: client.signal });
    const reader = res.body!.getReader();
    await reader.read(); // the first token has streamed; the second waits at the gate
    client.abort();
    await until(async () => (await metric("steerkit_client_disconnects_total")) === 1);
    // The gate's onToken is still waiting: the cancel frees the sequence without it (core races middleware against the signal).
    await server.whenIdle();
    expect(server.stats()).toMatchObject({ active: 0, queued: 0 });
    g.state.open();
    expect(g.state.passed).toBeLessThan(5); // of 400: the generation stopped
    expect(await metric("steerkit_requests_cancelled_total")).toBe(1);
    expect(server.stats()).toMatchObject({ active: 0, queued: 0 });
    const next = await post("/v1/completions", { prompt: "Once upon a time", max_tokens: 4 });
    expect(next.status).toBe(200);
  });

  test("a client that leaves while queued drops out of the queue", async () => {
    const g = gate();
    const { server, post } = await listen({ registry: registry(g.plugin), parallel: 1, maxQueue: 4 });
    const busy = await post("/v1/completions", { prompt: "Once", max_tokens: 4, stream: true, steering: [{ plugin: "gate" }] });
    const client = new AbortController();
    const queued = post("/v1/completions", { prompt: "Once", max_tokens: 4 }, { signal: client.signal }).catch((e: Error) => e);
    await until(() => server.stats().queued === 1);
    client.abort();
    expect(await queued).toBeInstanceOf(Error);
    await until(() => server.stats().queued === 0);
    g.state.open();
    await busy.text();
    await server.whenIdle();
  });

  test("/health answers while every sequence is generating, before any of them ends", async () => {
    const { server, url, post } = await listen({ parallel: 2 });
    const order: string[] = [];
    const long = (i: number) => post("/v1/completions", { prompt: "Once upon a time", max_tokens: 480, ignore_eos: true, stream: true }).then(async (r) => {
      const reader = r.body!.getReader();
      await reader.read();
      order.push(`started ${i}`);
      while (!(await reader.read()).done);
      order.push(`ended ${i}`);
    });
    const streams = [long(0), long(1)];
    await until(() => order.length === 2);
    const health = await json(await fetch(url + "/health"));
    order.push("health");
    expect(health).toMatchObject({ status: "ok", active: 2, parallel: 2 });
    await Promise.all(streams);
    expect(order.indexOf("health")).toBe(2);
    await server.whenIdle();
  });

  test("the request timeout stops a generation: 504 for JSON, an error chunk for a stream", async () => {
    const g = gate();
    const { server, post } = await listen({ registry: registry(g.plugin), requestTimeoutMs: 30 });
    const body = { prompt: "Once", max_tokens: 8, steering: [{ plugin: "gate", options: { from: 2 } }] };
    const answers = Promise.all([post("/v1/completions", body), post("/v1/completions", { ...body, stream: true })]);
    // Both wait at the gate; a timer due after their deadline opens it (timers fire in order), and
    // the generations, past their deadline, stop at the next token.
    await Bun.sleep(60);
    g.state.open();
    const [plain, streamed] = await answers;
    expect(plain.status).toBe(504);
    expect((await json(plain)).error).toMatchObject({ type: "timeout_error", code: "TIMEOUT" });
    const { chunks, done } = sseChunks(await streamed.text());
    expect(done).toBe(true);
    expect(chunks.at(-1).error.code).toBe("TIMEOUT");
    await server.whenIdle();
  });

  test("close() stops running generations, refuses new requests with 503, and resolves once all have ended", async () => {
    const g = gate();
    const { server, post } = await listen({ registry: registry(g.plugin), parallel: 1 });
    const running = await post("/v1/completions", { prompt: "Once", max_tokens: 8, stream: true, steering: [{ plugin: "gate", options: { from: 2 } }] });
    const closed = server.close();
    g.state.open();
    await closed;
    const { chunks, done } = sseChunks(await running.text());
    expect(done).toBe(true);
    expect(chunks.at(-1).error.code).toBe("CANCELLED");
    const after = await post("/v1/completions", { prompt: "Once", max_tokens: 1 });
    expect(after.status).toBe(503);
    expect((await json(after)).error.code).toBe("SHUTTING_DOWN");
  });

  test("the official openai client streams a chat completion with a steering field", async () => {
    const { url } = await listen({ apiKey: "test-key" });
    const client = new OpenAI({ baseURL: url + "/v1", apiKey: "test-key" });
    const id = (await client.models.list()).data[0]!.id;
    const steering = [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(model, 4) } }];
    const run = async (extra: object) => {
      // Fields the client does not know are sent in the body as they are.
      const stream = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, temperature: 0, stream: true, stream_options: { include_usage: true }, ...extra });
      let text = "";
      let usage = null;
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta.content ?? "";
        usage = chunk.usage ?? usage;
      }
      return { text, usage };
    };
    const plain = await run({});
    const steered = await run({ steering });
    expect(steered.text).not.toBe(plain.text);
    expect(steered.usage).toMatchObject({ completion_tokens: 16 });
    const direct = await fetch(url + "/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: "Bearer test-key" },
      body: JSON.stringify({ messages: [{ role: "user", content: "Tell me a story" }], max_tokens: 16, temperature: 0, steering }),
    });
    expect((await json(direct)).choices[0].message.content).toBe(steered.text);
    const refused = await client.chat.completions.create({ model: id, messages: [{ role: "user", content: "x" }], steering: [{ plugin: "logger", options: { file: "/tmp/x" } }] } as never).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OpenAI.PermissionDeniedError);
  });
});
