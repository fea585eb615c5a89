/**
 * The chat server on an ONNX model whose export batches: it takes `model.batched` (as it does for
 * llama.cpp), and eight differently steered requests give the answers they give one pass each.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { createChatServer } from "../../src/server/index.ts";
import { json, registry, vec } from "../server/helpers.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-onnx-server-batched-"));
let model: OnnxRuntimeModel;
const servers: ReturnType<typeof Bun.serve>[] = [];
beforeAll(async () => {
  await convertGgufToOnnx(DEFAULT_MODEL_PATH, dir);
  model = await onnx.load(dir, { threads: 1, contextLength: 256 });
});
afterAll(() => {
  for (const s of servers) s.stop(true);
  model?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

async function listen(batched: boolean) {
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
  return { server, post };
}

describe("the chat server on a batched ONNX model", () => {
  test("eight requests with their own steering, together: the same answers as one pass per request", async () => {
    const requests = [
      { prompt: "Once upon a time", steering: "concept" },
      { prompt: "The cat", steering: [{ plugin: "ablate-direction", options: { points: ["resid_mid.3"], direction: vec(model, 1) } }] },
      { prompt: "Lily and Tom", steering: [{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: vec(model, -2), positions: "generated" } }] },
      { prompt: "One day", steering: [{ plugin: "fails-at-step-2" }] },
      { prompt: "The sun was", steering: [{ plugin: "add-vector", options: { points: ["resid_pre.0", "resid_mid.4"], vector: vec(model, 0.5) } }] },
      { prompt: "A little dog" },
      { prompt: "She said", steering: "concept" },
      { prompt: "They went to the park" },
    ].map((r, i) => ({ ...r, max_tokens: 10 + 4 * i, temperature: 0 }));
    const plain = await listen(false);
    const together = await listen(true);
    expect(plain.server.stats().batched).toBe(false);
    expect(together.server.stats().batched).toBe(true);
    const answer = async (r: Response) => {
      const body = await json(r);
      return body.error ? { error: body.error.message } : { text: body.choices[0].text, finish: body.choices[0].finish_reason };
    };
    const expected = [];
    for (const r of requests) expected.push(await answer(await plain.post(r)));
    const got = await Promise.all(requests.map(async (r) => answer(await together.post(r))));
    expect(got).toEqual(expected);
    expect(got[3]).toEqual({ error: expect.stringContaining("deliberate") }); // failed alone
    await together.server.whenIdle();
  });
});
