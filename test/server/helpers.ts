/** Shared by the server tests: the embedded model on llama.cpp, test plugins, request helpers. */
import { expect } from "bun:test";
import * as v from "valibot";
import { definePlugin } from "../../src/core/plugin.ts";
import type { Model } from "../../src/core/backend.ts";
import { createRegistry } from "../../src/plugins/index.ts";
import { createChatServer } from "../../src/server/index.ts";

/** Fails in its residual hook at step 2 (after two tokens). */
export const failsAtStep2 = definePlugin({
  name: "fails-at-step-2", options: v.object({}), needs: ["residual:read"],
  create: () => ({ points: [{ site: "resid_post", layer: 0 }], onResidual: (_x, ctx) => { if (ctx.step === 2) throw new Error("deliberate"); } }),
});

/** Records the prompt tokens each request's chain sees. */
export const seenPrompts: number[][] = [];
export const recordPrompt = definePlugin({
  name: "record-prompt", options: v.object({}), needs: [],
  create: () => ({ onRequest: (ctx, next) => { seenPrompts.push([...ctx.promptTokens]); return next(); } }),
});

/**
 * Holds every token from `from` on until the test opens the gate: a generation that stays busy
 * for as long as a test needs, without timing. Counts the tokens it let through.
 */
export function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const state = { passed: 0, open };
  const plugin = definePlugin({
    name: "gate", options: v.object({ from: v.optional(v.number(), 1) }), needs: [],
    create: (o) => ({ async onToken(ctx, next) { if (ctx.step >= o.from) await opened; state.passed++; await next(); } }),
  });
  return { plugin, state };
}

export function registry(...extra: Parameters<ReturnType<typeof createRegistry>["register"]>[0][]) {
  const r = createRegistry().register(failsAtStep2).register(recordPrompt);
  for (const p of extra) r.register(p);
  return r;
}

export const vec = (model: Model, x: number) => Array.from({ length: model.info.dModel }, (_, i) => (i % 2 ? x : -x));

/** Parse an OpenAI SSE body: the JSON chunks, and whether it ended with [DONE]. */
export function sseChunks(text: string): { chunks: any[]; done: boolean } {
  const events = text.trim().split("\n\n").filter((c) => !c.startsWith(":")); // SSE comments
  const datas = events.map((c) => /^data: (.*)$/s.exec(c)![1]!);
  const done = datas.at(-1) === "[DONE]";
  return { chunks: (done ? datas.slice(0, -1) : datas).map((d) => JSON.parse(d)), done };
}

/** Wait for a condition the server reaches by itself (bounded by the test's timeout). */
export async function until(cond: () => boolean | Promise<boolean>): Promise<void> {
  while (!(await cond())) await Bun.sleep(2);
}

export const json = (r: Response): Promise<any> => r.json();

/**
 * A chat server on `model` (8 sequences, a "concept" preset), batched or not, listening on a free
 * loopback port; `servers` collects them so the test file can stop them all.
 */
export async function listenBatched(model: Model, batched: boolean, servers: ReturnType<typeof Bun.serve>[]) {
  const server = await createChatServer({
    model,
    registry: registry(),
    parallel: 8,
    batched,
    presets: { concept: [{ plugin: "add-vector", options: { points: ["resid_post.2"], vector: vec(model, 3) } }] },
  });
  const http = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: server.fetch, idleTimeout: 0 });
  servers.push(http);
  const url = http.url.href.replace(/\/$/, "");
  const post = (body: unknown) => fetch(url + "/v1/completions", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  return { server, url, post };
}

/** Eight requests with different steering: a preset, inline native and JS-path recipes, a failing plugin, none. */
export function steeredRequests(model: Model) {
  return [
    { prompt: "Once upon a time", steering: "concept" },
    { prompt: "The cat", steering: [{ plugin: "ablate-direction", options: { points: ["resid_mid.3"], direction: vec(model, 1) } }] },
    { prompt: "Lily and Tom", steering: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(model, -2), positions: "generated" } }] },
    { prompt: "One day", steering: [{ plugin: "fails-at-step-2" }] },
    { prompt: "The sun was", steering: [{ plugin: "add-vector", options: { points: ["resid_pre.0", "resid_mid.4"], vector: vec(model, 0.5) } }] },
    { prompt: "A little dog" },
    { prompt: "She said", steering: "concept" },
    { prompt: "They went to the park" },
  ].map((r, i) => ({ ...r, max_tokens: 10 + 4 * i, temperature: 0 }));
}

/** The eight requests sent together to the batched server answer as they do one pass each on the unbatched one. */
export async function expectBatchedAnswersLikeUnbatched(model: Model, servers: ReturnType<typeof Bun.serve>[]): Promise<void> {
  const plain = await listenBatched(model, false, servers);
  const together = await listenBatched(model, true, servers);
  expect(plain.server.stats().batched).toBe(false);
  expect(together.server.stats().batched).toBe(true);
  const answer = async (r: Response) => {
    const body = await json(r);
    return body.error ? { error: body.error.message } : { text: body.choices[0].text, finish: body.choices[0].finish_reason };
  };
  const requests = steeredRequests(model);
  const expected = [];
  for (const r of requests) expected.push(await answer(await plain.post(r)));
  const got = await Promise.all(requests.map(async (r) => answer(await together.post(r))));
  expect(got).toEqual(expected);
  expect(got[3]).toEqual({ error: expect.stringContaining("deliberate") }); // failed alone
  await together.server.whenIdle();
}
