/** Shared by the server tests: the embedded model on llama.cpp, test plugins, request helpers. */
import * as v from "valibot";
import { definePlugin } from "../../src/core/plugin.ts";
import type { Model } from "../../src/core/backend.ts";
import { createRegistry } from "../../src/plugins/index.ts";

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
