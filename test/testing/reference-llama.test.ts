import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import type { AffineEdit, Model, ResidualHooks } from "../../src/core/backend.ts";
import { compileChain } from "../../src/core/chain.ts";
import { generate } from "../../src/core/generate.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import { allPoints, type HookPoint, pointName } from "../../src/core/sites.ts";
import { argmax, type Tensor } from "../../src/core/tensor.ts";
import { ablateDirection, addVector } from "../../src/plugins/steering.ts";
import { loadReferenceLlama, referenceLlama } from "../../src/testing/reference-llama.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const STORY =
  "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";
const D = 64;
const N_LAYERS = 5;

let model: Model;
beforeAll(async () => {
  model = await referenceLlama.load(MODEL, { contextLength: 512 });
});

async function greedy(m: Model, prompt: number[], steps: number, hooks?: ResidualHooks): Promise<number[]> {
  const seq = m.createSequence({ hooks });
  let logits = await seq.prefill(prompt);
  const out: number[] = [];
  for (let i = 0; i < steps; i++) {
    const t = argmax(logits);
    out.push(t);
    logits = await seq.decode(t);
  }
  seq.free();
  return out;
}

/** Hand-built hooks: `fn` runs at every listed point (no affine edits). */
function jsHooks(points: readonly HookPoint[], fn: (p: HookPoint, x: Tensor, positions: ArrayLike<number>) => Tensor | void, writes = true): ResidualHooks & { error: Error | null } {
  return {
    points,
    affine: new Map(),
    writes,
    readOnly: new Set(writes ? [] : points.map(pointName)),
    error: null,
    run(p, x, positions) {
      return fn(p, x, positions) ?? x;
    },
  };
}

const steer = Float32Array.from({ length: D }, (_, i) => Math.sin(i * 1.7) * 0.8);

describe("reference llama backend on stories260K", () => {
  test("adapter: name, capabilities, canOpen, model info", () => {
    expect(referenceLlama.name).toBe("reference");
    expect([...referenceLlama.capabilities].sort()).toEqual(["logits:read", "logits:write", "residual:read", "residual:write"]);
    expect(referenceLlama.canOpen(MODEL)).toBe(true);
    expect(referenceLlama.canOpen(join(import.meta.dir, "nope.gguf"))).toBe(false);
    expect(model.info).toMatchObject({ backend: "reference", architecture: "llama", nLayers: 5, dModel: 64, vocabSize: 512, contextLength: 512, bosToken: 1, eosTokens: [2] });
    expect(model.tokenize("Once upon a time")).toEqual([1, 403, 407, 261, 378]);
  });

  test("greedy decoding reproduces the known story", async () => {
    const prompt = model.tokenize("Once upon a time");
    const out = await greedy(model, prompt, 40);
    expect(model.detokenize(out)).toStartWith(STORY.slice("Once upon a time".length));
    expect(model.detokenize([...prompt, ...out])).toStartWith(STORY);
    for (const text of ["Once upon a time", "Lily said, \"Hi!\" 123 café 日本"]) expect(model.detokenize(model.tokenize(text))).toBe(text);
  });

  test("core generate() runs on it and is deterministic", async () => {
    const a = await generate(model, { prompt: "Once upon a time", maxTokens: 24, temperature: 0 });
    expect(("Once upon a time" + a.text).startsWith(STORY.slice(0, 60))).toBe(true);
    const b = await generate(model, { prompt: "Once upon a time", maxTokens: 24, temperature: 0.9, seed: 7 });
    const c = await generate(model, { prompt: "Once upon a time", maxTokens: 24, temperature: 0.9, seed: 7 });
    expect(b.tokens).toEqual(c.tokens);
  });

  test("prefill of N tokens equals N single steps (last logits within 1e-5), and runs are bit-identical", async () => {
    const tokens = model.tokenize("Once upon a time, there was a little girl named Lily.");
    const batch = model.createSequence();
    const a = new Float32Array(await batch.prefill(tokens));
    const steps = model.createSequence();
    let b = new Float32Array(0);
    for (const t of tokens) b = new Float32Array(await steps.decode(t));
    let maxDiff = 0;
    for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
    expect(maxDiff).toBeLessThan(1e-5);
    expect(batch.length).toBe(tokens.length);
    // Split prefill (3 + rest) too.
    const split = model.createSequence();
    await split.prefill(tokens.slice(0, 3));
    const c = await split.prefill(tokens.slice(3));
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - c[i]!)).toBeLessThan(1e-5);
    // A second load of the same file gives the same bits.
    const other = loadReferenceLlama(MODEL, { contextLength: 64 });
    const d = await other.createSequence().prefill(tokens);
    expect(Buffer.from(d.buffer, d.byteOffset, d.byteLength).equals(Buffer.from(a.buffer))).toBe(true);
    other.dispose();
    for (const s of [batch, steps, split]) s.free();
  });

  test("hooks run at every point of every layer, in forward order, with [rows, dModel] and absolute positions", async () => {
    const calls: { point: string; dims: number[]; positions: number[] }[] = [];
    const points = allPoints(N_LAYERS);
    expect(points.length).toBe(2 * N_LAYERS + 1);
    const hooks = jsHooks(points, (p, x, positions) => {
      calls.push({ point: pointName(p), dims: [...x.dims], positions: Array.from(positions) });
      expect(x.data.length).toBe(x.dims[0]! * D);
    });
    const seq = model.createSequence({ hooks });
    await seq.prefill([1, 403, 407]);
    await seq.decode(261);
    const names = points.map(pointName);
    expect(names[0]).toBe("resid_pre.0");
    expect(names.slice(1, 3)).toEqual(["resid_mid.0", "resid_post.0"]);
    expect(calls.map((c) => c.point)).toEqual([...names, ...names]);
    for (const c of calls.slice(0, names.length)) expect(c).toMatchObject({ dims: [3, D], positions: [0, 1, 2] });
    for (const c of calls.slice(names.length)) expect(c).toMatchObject({ dims: [1, D], positions: [3] });
    seq.free();
  });

  test("resid_pre.0 is the embedding row and resid_post of the last layer feeds the output head", async () => {
    let embedding: Float32Array | null = null;
    const seq = model.createSequence({
      hooks: jsHooks([{ site: "resid_pre", layer: 0 }], (_p, x) => {
        embedding = x.data.slice();
      }),
    });
    await seq.prefill([403]);
    const direct = loadReferenceLlama(MODEL) as unknown as { weights: { tokenEmbd: Float32Array } };
    expect(Array.from(embedding!)).toEqual(Array.from(direct.weights.tokenEmbd.subarray(403 * D, 404 * D)));
    // Zeroing the last block's output makes every logit 0 (rms_norm(0) = 0).
    const zero = model.createSequence({ hooks: jsHooks([{ site: "resid_post", layer: N_LAYERS - 1 }], (_p, x) => void x.data.fill(0)) });
    const logits = await zero.prefill([1, 403]);
    expect(logits.every((v) => v === 0)).toBe(true);
    seq.free();
    zero.free();
  });

  test("an in-place edit at resid_post.L is what resid_pre.(L+1) and resid_mid.(L+1) are computed from", async () => {
    const L = 1;
    const prompt = model.tokenize("Once upon a time");
    const record = (edit: boolean) => {
      const seen = new Map<string, Float32Array>();
      const hooks = jsHooks(
        [{ site: "resid_post", layer: L }, { site: "resid_mid", layer: L + 1 }, { site: "resid_post", layer: L + 1 }],
        (p, x) => {
          if (edit && p.site === "resid_post" && p.layer === L) for (let r = 0; r < x.dims[0]!; r++) for (let i = 0; i < D; i++) x.data[r * D + i]! += steer[i]!;
          seen.set(pointName(p), x.data.slice());
        },
      );
      return { hooks, seen };
    };
    const plain = record(false);
    const edited = record(true);
    const s1 = model.createSequence({ hooks: plain.hooks });
    const s2 = model.createSequence({ hooks: edited.hooks });
    const l1 = new Float32Array(await s1.prefill(prompt));
    const l2 = await s2.prefill(prompt);
    // The edited tensor is exactly the unedited one plus the vector...
    const a = plain.seen.get(`resid_post.${L}`)!;
    const b = edited.seen.get(`resid_post.${L}`)!;
    for (let i = 0; i < a.length; i++) expect(b[i]).toBeCloseTo(a[i]! + steer[i % D]!, 5);
    // ...and the next block computes from it: its mid point differs by the vector plus a changed attention output.
    const midA = plain.seen.get(`resid_mid.${L + 1}`)!;
    const midB = edited.seen.get(`resid_mid.${L + 1}`)!;
    let attnChange = 0;
    for (let i = 0; i < midA.length; i++) attnChange += Math.abs(midB[i]! - midA[i]! - steer[i % D]!);
    expect(attnChange).toBeGreaterThan(1e-3);
    expect(Array.from(l2)).not.toEqual(Array.from(l1));
    // Through the real chain: a plugin hooked at resid_pre.(L+1) runs after one at resid_post.L and sees its edit.
    const add = definePlugin({
      name: "add",
      options: v.object({}),
      needs: ["residual:write"],
      create: () => ({ points: [{ site: "resid_post", layer: L }], onResidual: (x: Tensor) => void addVec(x, steer) }),
    });
    let seenByNext: Float32Array | null = null;
    const read = definePlugin({
      name: "read",
      options: v.object({}),
      needs: ["residual:read"],
      create: () => ({ points: [{ site: "resid_pre", layer: L + 1 }], onResidual: (x: Tensor) => void (seenByNext = x.data.slice()) }),
    });
    const chain = compileChain([add({}), read({})], model, { fastPath: false });
    const s3 = model.createSequence({ hooks: chain.residual });
    await s3.prefill(prompt);
    expect(chain.residual.error).toBeNull();
    expect(Array.from(seenByNext!)).toEqual(Array.from(b));
    for (const s of [s1, s2, s3]) s.free();
  });

  test("the native affine path equals the same edit through run (additive, projection, composed)", async () => {
    const u = Float32Array.from({ length: D }, (_, i) => Math.cos(i * 0.37));
    let n = 0;
    for (const x of u) n += x * x;
    for (let i = 0; i < D; i++) u[i]! /= Math.sqrt(n);
    const negU = u.map((x) => -x);
    // Directional ablation (U = û, V = -ûᵀ) at three points, then an additive plugin at two of them:
    // core composes the two affine forms into one edit per point.
    const points: HookPoint[] = [{ site: "resid_pre", layer: 0 }, { site: "resid_mid", layer: 2 }, { site: "resid_post", layer: 3 }];
    const ablate = definePlugin({
      name: "ablate",
      options: v.object({}),
      needs: ["residual:write"],
      create: () => ({
        points,
        onResidual(x: Tensor) {
          for (let r = 0; r < x.dims[0]!; r++) {
            let dot = 0;
            for (let i = 0; i < D; i++) dot += x.data[r * D + i]! * u[i]!;
            for (let i = 0; i < D; i++) x.data[r * D + i] = x.data[r * D + i]! - dot * u[i]!;
          }
        },
        affine: () => ({ rank: 1, U: u, V: negU, c: null }),
      }),
    });
    const add = definePlugin({
      name: "add",
      options: v.object({}),
      needs: ["residual:write"],
      create: () => ({
        points: points.slice(1),
        onResidual: (x: Tensor) => void addVec(x, steer),
        affine: () => ({ rank: 0, U: null, V: null, c: steer }),
      }),
    });
    const makePlugins = () => [ablate({}), add({})];
    const prompt = model.tokenize("Once upon a time");
    const run = async (fastPath: boolean) => {
      const chain = compileChain(makePlugins(), model, { fastPath });
      expect(chain.residual.affine.size).toBe(fastPath ? 3 : 0);
      const seq = model.createSequence({ hooks: chain.residual });
      const logits = [new Float32Array(await seq.prefill(prompt))];
      for (let i = 0; i < 8; i++) logits.push(new Float32Array(await seq.decode(argmax(logits.at(-1)!))));
      seq.free();
      return logits;
    };
    const native = await run(true);
    const js = await run(false);
    const plain = await greedy(model, prompt, 8);
    let maxDiff = 0;
    for (let s = 0; s < native.length; s++) for (let i = 0; i < native[s]!.length; i++) maxDiff = Math.max(maxDiff, Math.abs(native[s]![i]! - js[s]![i]!));
    expect(maxDiff).toBeLessThan(1e-4);
    expect(native.slice(0, 8).map(argmax)).not.toEqual(plain); // the edit does change the model
  });

  test("built-in add-vector + ablate-direction at every point: native affine and JS paths generate the same tokens", async () => {
    const plugins = () => [
      ablateDirection({ points: "every", direction: Array.from(steer, (x, i) => x + (i % 3)) }),
      addVector({ points: ["resid_post.2", "resid_mid.3"], vector: Array.from(steer), scale: 2 }),
    ];
    const opts = { prompt: "Once upon a time", maxTokens: 16, temperature: 0 } as const;
    const native = await generate(model, { ...opts, plugins: plugins(), fastPath: true });
    const js = await generate(model, { ...opts, plugins: plugins(), fastPath: false });
    const plain = await generate(model, opts);
    expect(native.tokens).toEqual(js.tokens);
    expect(native.text).not.toBe(plain.text);
  });

  test("a hand-built affine edit is applied natively and run is not called there", async () => {
    const point: HookPoint = { site: "resid_post", layer: 2 };
    const edit: AffineEdit = { point, rank: 0, U: null, V: null, c: steer };
    let runCalls = 0;
    const hooks: ResidualHooks = { points: [point], affine: new Map([[pointName(point), edit]]), writes: true, readOnly: new Set(), error: null, run: (_p, x) => (runCalls++, x) };
    const viaRun = jsHooks([point], (_p, x) => void addVec(x, steer));
    const a = new Float32Array(await model.createSequence({ hooks }).prefill([1, 403, 407]));
    const b = await model.createSequence({ hooks: viaRun }).prefill([1, 403, 407]);
    expect(runCalls).toBe(0);
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i]! - b[i]!)).toBeLessThan(1e-5);
  });

  test("a replacement tensor returned by a hook is written back", async () => {
    const point: HookPoint = { site: "resid_mid", layer: 0 };
    const replace = jsHooks([point], (_p, x) => {
      const y = x.data.slice();
      addVec({ data: y, dims: x.dims }, steer);
      return { data: y, dims: x.dims };
    });
    const inPlace = jsHooks([point], (_p, x) => void addVec(x, steer));
    const a = new Float32Array(await model.createSequence({ hooks: replace }).prefill([1, 403]));
    const b = await model.createSequence({ hooks: inPlace }).prefill([1, 403]);
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  test("two sequences do not share state", async () => {
    const p1 = model.tokenize("Once upon a time");
    const p2 = model.tokenize("Lily and Ben went to the park.");
    const alone1 = await greedy(model, p1, 12);
    const alone2 = await greedy(model, p2, 12);
    // Interleave the two (one of them steered) step by step.
    const s1 = model.createSequence();
    const s2 = model.createSequence({ hooks: jsHooks([{ site: "resid_post", layer: 0 }], (_p, x) => void addVec(x, steer)) });
    const s3 = model.createSequence();
    let l1 = await s1.prefill(p1);
    await s2.prefill(p1);
    let l3 = await s3.prefill(p2);
    const o1: number[] = [];
    const o3: number[] = [];
    for (let i = 0; i < 12; i++) {
      const t1 = argmax(l1);
      const t3 = argmax(l3);
      o1.push(t1);
      o3.push(t3);
      await s2.decode(t1);
      l1 = await s1.decode(t1);
      l3 = await s3.decode(t3);
    }
    expect(o1).toEqual(alone1);
    expect(o3).toEqual(alone2);
    expect(s1.length).toBe(p1.length + 12);
    // reset() forgets the cache: the same prompt gives the same logits again.
    s1.reset();
    expect(s1.length).toBe(0);
    expect(argmax(await s1.prefill(p1))).toBe(alone1[0]!);
    for (const s of [s1, s2, s3]) s.free();
  });

  test("a hook error stops the pass without throwing; the sequence and model stay usable", async () => {
    const hooks = jsHooks([{ site: "resid_mid", layer: 1 }, { site: "resid_post", layer: 3 }], (p) => {
      if (p.layer === 1) hooks.error = new Error("boom");
      else throw new Error("must not run after the error");
    });
    const seq = model.createSequence({ hooks });
    await seq.prefill([1, 403, 407]);
    expect(hooks.error?.message).toBe("boom");
    expect(seq.length).toBe(0); // the failed tokens are not kept
    const out = await greedy(model, model.tokenize("Once upon a time"), 10);
    expect(model.detokenize(out)).toStartWith(", there was a little girl");
  });

  test("bad input: empty prefill, token outside the vocabulary, context overflow, freed sequence, bad hook layer", async () => {
    const seq = model.createSequence();
    await expect(seq.prefill([])).rejects.toThrow(/at least one token/);
    await expect(seq.prefill([1, 512])).rejects.toThrow(/tokens\[1\] is 512, expected an integer token id in 0..511/);
    await expect(seq.prefill(new Array(513).fill(1))).rejects.toThrow(/0 cached \+ 513 new = 513 tokens exceed the context length 512/);
    expect(seq.length).toBe(0);
    seq.free();
    seq.free();
    await expect(seq.decode(1)).rejects.toThrow(/freed/);
    expect(() => model.createSequence({ hooks: jsHooks([{ site: "resid_post", layer: 5 }], () => {}) })).toThrow(/layer 5 of resid_post is outside 0..4/);
    await expect(referenceLlama.load(join(import.meta.dir, "missing.gguf"))).rejects.toThrow(/missing\.gguf.*no such file or directory/);
  });

  test("chat template: fallback transcript without a template", () => {
    expect(model.applyChatTemplate([{ role: "user", content: "Hi" }])).toBe("User: Hi\n\nAssistant:");
  });
});

function addVec(x: Tensor, vec: Float32Array): void {
  for (let r = 0; r < x.dims[0]!; r++) for (let i = 0; i < D; i++) x.data[r * D + i] = x.data[r * D + i]! + vec[i]!;
}
