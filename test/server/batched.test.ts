/**
 * The chat server's default batched path (llama.cpp sequences decoded together in shared passes, on
 * a native thread): per-request steering comes out as it does unbatched, and the event loop answers
 * /health while eight streams generate.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { DEFAULT_MODEL_PATH } from "../../src/default-model.ts";
import { expectBatchedAnswersLikeUnbatched, json, listenBatched, steeredRequests } from "./helpers.ts";

const model = await llamaCpp.load(DEFAULT_MODEL_PATH, { threads: 1 });
const servers: ReturnType<typeof Bun.serve>[] = [];
afterAll(() => {
  for (const s of servers) s.stop(true);
  model.dispose();
});

const listen = (batched: boolean) => listenBatched(model, batched, servers);
const requests = steeredRequests(model);

describe("the batched chat server", () => {
  test("eight requests with their own steering, together: the same answers as one pass per request", async () => {
    await expectBatchedAnswersLikeUnbatched(model, servers);
  });

  test("/health answers quickly while eight streams generate (passes run off the JS thread)", async () => {
    const { server, url, post } = await listen(true);
    let open = 8;
    const streams = Array.from({ length: 8 }, (_, i) =>
      post({ prompt: requests[i]!.prompt, max_tokens: 120, ignore_eos: true, stream: true }).then(async (r) => {
        const reader = r.body!.getReader();
        while (!(await reader.read()).done);
        open--;
      }),
    );
    await Bun.sleep(20);
    const latencies: number[] = [];
    while (open === 8 && latencies.length < 20) {
      const t0 = performance.now();
      expect((await json(await fetch(url + "/health"))).active).toBe(8);
      latencies.push(performance.now() - t0);
      await Bun.sleep(5);
    }
    await Promise.all(streams);
    expect(latencies.length).toBeGreaterThan(3);
    latencies.sort((a, b) => a - b);
    if (process.env.DEBUG_HEALTH) console.log(latencies.map((x) => x.toFixed(1)).join(" "));
    // Generous for a loaded CI machine; bench/batched.ts reports the number on the 271M model.
    expect(latencies[Math.floor(latencies.length / 2)]!).toBeLessThan(50);
    await server.whenIdle();
  });
});
