/**
 * The reference backend is only useful to plugin authors if it computes what llama.cpp computes.
 * Same model, same prompt, same steering: greedy tokens must be identical for 64 steps and the
 * logits close, unsteered and steered (JS hooks and native affine paths on both sides).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import * as v from "valibot";
import type { Model } from "../../src/core/backend.ts";
import { compileChain } from "../../src/core/chain.ts";
import { definePlugin } from "../../src/core/plugin.ts";
import type { HookPoint } from "../../src/core/sites.ts";
import { addRows, argmax, normalize, projectOutRows } from "../../src/core/tensor.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { referenceLlama } from "../../src/testing/reference-llama.ts";

const MODEL = join(import.meta.dir, "../../models/stories260K.gguf");
const STEPS = 64;
/**
 * Max |logit difference| allowed at any step (logits reach ~18). Measured 0.020 unsteered, 0.016 steered
 * (JS and native alike): llama.cpp rounds its KV cache to F16, the reference keeps F32; the rest is
 * summation order.
 */
const LOGITS_TOLERANCE = 0.05;

let llama: Model;
let reference: Model;
beforeAll(async () => {
  llama = await llamaCpp.load(MODEL, { contextLength: 512, threads: 1 });
  reference = await referenceLlama.load(MODEL, { contextLength: 512 });
});
afterAll(() => {
  llama?.dispose();
  reference?.dispose();
});

const ABLATE_AT: HookPoint = { site: "resid_mid", layer: 1 };
const ADD_AT: HookPoint = { site: "resid_post", layer: 3 };
const same = (a: HookPoint, b: HookPoint) => a.site === b.site && a.layer === b.layer;
function vector(seed: number, d: number): Float32Array {
  return normalize(Float32Array.from({ length: d }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233)));
}
const steer = definePlugin({
  name: "reference-parity-steer",
  options: v.object({ scale: v.number() }),
  needs: ["residual:write"],
  create({ scale }, { model }) {
    const direction = vector(3, model.dModel);
    const minus = direction.map((x) => -x);
    const add = vector(5, model.dModel).map((x) => x * scale);
    return {
      points: [ABLATE_AT, ADD_AT],
      onResidual(x, ctx) {
        if (same(ctx.point, ABLATE_AT)) projectOutRows(x, direction);
        else addRows(x, add);
      },
      affine: (p) =>
        same(p, ABLATE_AT) ? { rank: 1, U: direction, V: minus, c: null } : same(p, ADD_AT) ? { rank: 0, U: null, V: null, c: add } : null,
    };
  },
});

async function greedy(model: Model, prompt: number[], steering: { fastPath: boolean } | null) {
  const chain = steering ? compileChain([steer({ scale: 4 })], model, steering) : null;
  const seq = model.createSequence(chain ? { hooks: chain.residual } : {});
  const tokens: number[] = [];
  const logits: Float32Array[] = [];
  let l = (await seq.prefill(prompt)).slice();
  logits.push(l);
  for (let i = 0; i < STEPS; i++) {
    tokens.push(argmax(l));
    l = (await seq.decode(tokens.at(-1)!)).slice();
    logits.push(l);
  }
  seq.free();
  expect(chain?.residual.error ?? null).toBeNull();
  return { tokens, logits };
}

function maxDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  for (let s = 0; s < a.length; s++) for (let i = 0; i < a[s]!.length; i++) m = Math.max(m, Math.abs(a[s]![i]! - b[s]![i]!));
  return m;
}

describe("stories260K: the reference backend and llama.cpp agree", () => {
  test("same tokenizer, info and detokenized text", () => {
    for (const text of ["Once upon a time", "Lily said: \"Hi, Ben!\" 123 café 日本 <s>"]) {
      expect(reference.tokenize(text)).toEqual(llama.tokenize(text));
      expect(reference.tokenize(text, { special: true, addBos: false })).toEqual(llama.tokenize(text, { special: true, addBos: false }));
      const ids = reference.tokenize(text);
      expect(reference.detokenize(ids)).toBe(llama.detokenize(ids));
      expect(reference.detokenize(ids.slice(2))).toBe(llama.detokenize(ids.slice(2)));
    }
    const pick = (m: Model) => ({ ...m.info, backend: undefined, name: undefined });
    expect(pick(reference)).toEqual(pick(llama));
  });

  for (const steering of [null, { fastPath: false }, { fastPath: true }]) {
    const what = steering ? `steered (${steering.fastPath ? "native affine" : "JS hooks"})` : "unsteered";
    test(`${what}: identical greedy tokens for ${STEPS} steps, logits within ${LOGITS_TOLERANCE}`, async () => {
      const prompt = reference.tokenize("Once upon a time");
      const a = await greedy(reference, prompt, steering);
      const b = await greedy(llama, prompt, steering);
      expect(a.tokens).toEqual(b.tokens);
      expect(maxDiff(a.logits, b.logits)).toBeLessThan(LOGITS_TOLERANCE);
      if (steering) {
        const plain = await greedy(reference, prompt, null);
        expect(a.tokens).not.toEqual(plain.tokens);
      }
    });
  }
});
