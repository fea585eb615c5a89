import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import type { Model, Sequence } from "../../src/core/backend.ts";
import { OptionsError, PluginError, SteerkitError } from "../../src/core/errors.ts";
import { generate, stream, type GenerationEvent } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { addVector } from "../../src/plugins/index.ts";
import { loadTestModel } from "../../src/testing/index.ts";

const model = await loadTestModel();

/** The real model, with a count of live sequences: lets a test see that a sequence was freed. */
function counting(m: Model): Model & { live: () => number } {
  let live = 0;
  return {
    info: m.info,
    capabilities: m.capabilities,
    tokenize: (text, o) => m.tokenize(text, o),
    detokenize: (t) => m.detokenize(t),
    applyChatTemplate: (msgs, o) => m.applyChatTemplate(msgs, o),
    dispose: () => {},
    createSequence(o) {
      const s = m.createSequence(o);
      live++;
      let freed = false;
      const wrapped: Sequence = {
        get id() { return s.id; },
        get length() { return s.length; },
        prefill: (t) => s.prefill(t),
        decode: (t) => s.decode(t),
        reset: () => s.reset(),
        free: () => {
          if (!freed) live--;
          freed = true;
          s.free();
        },
      };
      return wrapped;
    },
    live: () => live,
  };
}

const prompt = "Once upon a time";

describe("generate on the embedded model (reference backend)", () => {
  test("greedy decoding writes the known story", async () => {
    const r = await generate(model, { prompt, maxTokens: 24, temperature: 0 });
    expect(r.promptTokens).toEqual([1, 403, 407, 261, 378]);
    expect(r.text.startsWith(", there was a little girl named Lily.")).toBe(true);
    expect(r.tokens.length).toBe(24);
    expect(r.finishReason).toBe("length");
  });
  test("same seed, same tokens; another seed, other tokens", async () => {
    const a = await generate(model, { prompt, maxTokens: 40, temperature: 1, seed: 1234 });
    const b = await generate(model, { prompt, maxTokens: 40, temperature: 1, seed: 1234 });
    const c = await generate(model, { prompt, maxTokens: 40, temperature: 1, seed: 99 });
    expect(b.tokens).toEqual(a.tokens);
    expect(c.tokens).not.toEqual(a.tokens);
    expect(a.seed).toBe(1234);
  });
  test("stop strings cut the text and end generation", async () => {
    const r = await generate(model, { prompt, maxTokens: 60, temperature: 0, stop: ["Lily"] });
    expect(r.finishReason).toBe("stop");
    expect(r.text).toBe(", there was a little girl named ");
  });
  test("streaming yields the same text as generate, then a done event", async () => {
    const full = await generate(model, { prompt, maxTokens: 30, temperature: 0 });
    const events: GenerationEvent[] = [];
    for await (const ev of stream(model, { prompt, maxTokens: 30, temperature: 0 })) events.push(ev);
    const done = events.at(-1)!;
    expect(done.type).toBe("done");
    const text = events.map((e) => (e.type === "done" ? "" : e.text)).join("");
    expect(text).toBe(full.text);
    expect(done.type === "done" && done.result.tokens).toEqual(full.tokens);
  });
  test("EOS ends generation unless ignored", async () => {
    // The story model rarely ends within a test's budget, so a logits hook makes EOS win at step 3.
    const eosAt3 = definePlugin({
      name: "eos-at-3", options: v.object({}), needs: ["logits:write"],
      create: ({}, { model: info }) => ({ onLogits: (l, ctx) => { if (ctx.step === 3) l[info.eosTokens[0]!] = 1e9; } }),
    });
    const r = await generate(model, { prompt, maxTokens: 20, temperature: 0, plugins: [eosAt3({})] });
    expect(r.finishReason).toBe("eos");
    expect(r.tokens.length).toBe(3); // logits of step 3 choose the 4th token: EOS
    const ignored = await generate(model, { prompt, maxTokens: 5, temperature: 0, ignoreEos: true, plugins: [eosAt3({})] });
    expect(ignored.tokens.length).toBe(5);
    expect(ignored.tokens[3]).toBe(model.info.eosTokens[0]!);
  });
});

describe("abort", () => {
  test("aborting mid-generation rejects with the reason and frees the sequence", async () => {
    const m = counting(model);
    const ac = new AbortController();
    let seen = 0;
    const p = generate(m, {
      prompt, maxTokens: 200, temperature: 0, signal: ac.signal,
      plugins: [definePlugin({ name: "watch", options: v.object({}), needs: [], create: () => ({ onToken: async (_c, next) => { await next(); if (++seen === 5) ac.abort(new Error("user left")); } }) })({})],
    });
    expect(p).rejects.toThrow("user left");
    await p.catch(() => {});
    expect(seen).toBe(5);
    expect(m.live()).toBe(0);
  });
  test("cancelling a stream frees the sequence", async () => {
    const m = counting(model);
    const reader = stream(m, { prompt, maxTokens: 200, temperature: 0 }).getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    await new Promise((r) => setTimeout(r, 20));
    expect(m.live()).toBe(0);
  });
  test("an already-aborted signal starts nothing", async () => {
    const m = counting(model);
    expect(generate(m, { prompt, signal: AbortSignal.abort() })).rejects.toThrow();
    expect(m.live()).toBe(0);
  });
});

describe("plugins in generation", () => {
  test("an in-place residual edit changes the text; the chain sees every step", async () => {
    const plain = await generate(model, { prompt, maxTokens: 20, temperature: 0 });
    const v8 = new Array(model.info.dModel).fill(0).map((_, i) => (i % 2 ? 3 : -3));
    const steered = await generate(model, { prompt, maxTokens: 20, temperature: 0, plugins: [addVector({ points: ["resid_post.2"], vector: v8 })] });
    expect(steered.text).not.toBe(plain.text);
  });
  test("a throwing hook stops generation with an error naming it, frees the sequence, and the model keeps working", async () => {
    const m = counting(model);
    const boom = definePlugin({
      name: "boom", options: v.object({}), needs: ["residual:write"],
      create: () => ({ points: [{ site: "resid_mid", layer: 1 }], onResidual: (_x, ctx) => { if (ctx.step === 3) throw new Error("kaput"); } }),
    });
    const p = generate(m, { prompt, maxTokens: 10, temperature: 0, plugins: [boom({})] });
    expect(p).rejects.toBeInstanceOf(PluginError);
    expect(p).rejects.toThrow('plugin "boom" failed in onResidual at resid_mid.1: kaput');
    await p.catch(() => {});
    expect(m.live()).toBe(0);
    const after = await generate(m, { prompt, maxTokens: 8, temperature: 0 });
    expect(after.text.startsWith(", there was a little girl")).toBe(true);
  });
  test("logits hooks edit before sampling; onToken can end generation; onRequest can answer without generating", async () => {
    const force = definePlugin({
      name: "force", options: v.object({ token: v.number() }), needs: ["logits:write"],
      create: (o) => ({ onLogits: (l) => { l.fill(-1e9); l[o.token] = 0; } }),
    });
    const r = await generate(model, { prompt, maxTokens: 3, temperature: 0.9, seed: 5, plugins: [force({ token: 403 })] });
    expect(r.tokens).toEqual([403, 403, 403]);
    const stopAt = definePlugin({ name: "stop-at", options: v.object({}), needs: [], create: () => ({ onToken: async (c, next) => { if (c.step < 3) await next(); } }) });
    const s = await generate(model, { prompt, maxTokens: 10, temperature: 0, plugins: [stopAt({})] });
    expect(s.tokens.length).toBe(2);
    expect(s.finishReason).toBe("plugin");
    const canned = definePlugin({ name: "canned", options: v.object({}), needs: [], create: () => ({ onRequest: (c) => c.respond("cached answer") }) });
    const m = counting(model);
    const c = await generate(m, { prompt, plugins: [canned({})] });
    expect(c).toMatchObject({ text: "cached answer", finishReason: "respond", tokens: [] });
    expect(m.live()).toBe(0);
  });
});

describe("bad requests name the problem", () => {
  test("options", async () => {
    expect(generate(model, { prompt, temperature: -1 })).rejects.toBeInstanceOf(OptionsError);
    expect(generate(model, { prompt, temperature: -1, maxTokens: 0 })).rejects.toThrow(/temperature[\s\S]*maxTokens|maxTokens[\s\S]*temperature/);
    expect(generate(model, {})).rejects.toThrow(/exactly one of prompt, messages or tokens/);
    expect(generate(model, { prompt, tokens: [1] })).rejects.toThrow(/exactly one/);
    expect(generate(model, { tokens: [1, 99999] })).rejects.toThrow("tokens[1] = 99999 is not a token id of this model (0..511)");
  });
  test("a prompt longer than the context", async () => {
    const tokens = new Array(model.info.contextLength).fill(403);
    const p = generate(model, { tokens });
    expect(p).rejects.toBeInstanceOf(SteerkitError);
    expect(p).rejects.toThrow(/prompt has 512 tokens; the context holds 512/);
  });
  test("generation stops at the end of the context", async () => {
    const tokens = new Array(model.info.contextLength - 3).fill(403);
    const r = await generate(model, { tokens, maxTokens: 50, temperature: 0, ignoreEos: true });
    expect(r.finishReason).toBe("context");
    expect(r.promptTokens.length + r.tokens.length).toBeLessThanOrEqual(model.info.contextLength);
  });
});
