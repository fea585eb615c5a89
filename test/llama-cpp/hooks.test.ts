import { afterAll, describe, expect, test } from "bun:test";
import type { AffineEdit } from "../../src/core/backend.ts";
import { allPoints, pointName, type HookPoint } from "../../src/core/sites.ts";
import { addRows, argmax } from "../../src/core/tensor.ts";
import { DEFAULT_MODEL_PATH, loadModel, type LlamaSequenceOptions } from "../../src/adapters/llama-cpp/index.ts";
import { applyAffineJs, makeHooks, maxAbsDiff, randomVector } from "./hooks-helpers.ts";

const ONCE = [1, 403, 407, 261, 378];
const model = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 128 });
afterAll(() => model.dispose());
const D = model.info.dModel;

const post = (layer: number): HookPoint => ({ site: "resid_post", layer });
const mid = (layer: number): HookPoint => ({ site: "resid_mid", layer });
const pre0: HookPoint = { site: "resid_pre", layer: 0 };

/** Prefill ONCE then greedily decode `steps` tokens; returns every step's logits (copied) and the tokens. */
async function run(options: LlamaSequenceOptions, steps = 4): Promise<{ logits: Float32Array[]; tokens: number[] }> {
  const seq = model.createSequence(options);
  try {
    const logits = [Float32Array.from(await seq.prefill(ONCE))];
    const tokens: number[] = [];
    for (let i = 0; i < steps; i++) {
      const next = argmax(logits[logits.length - 1]!);
      tokens.push(next);
      logits.push(Float32Array.from(await seq.decode(next)));
    }
    return { logits, tokens };
  } finally {
    seq.free();
  }
}

function additive(point: HookPoint, c: Float32Array): AffineEdit {
  return { point, rank: 0, U: null, V: null, c };
}

/** The same edit as a JS hook (affine map empty) and as an affine edit the backend may apply natively. */
function bothPaths(edit: AffineEdit): { js: LlamaSequenceOptions; fast: LlamaSequenceOptions; callback: LlamaSequenceOptions } {
  const fn = (_p: HookPoint, x: Parameters<typeof applyAffineJs>[1]) => applyAffineJs(edit, x);
  return {
    js: { hooks: makeHooks([edit.point], fn) },
    fast: { hooks: makeHooks([edit.point], fn, [edit]) },
    callback: { hooks: makeHooks([edit.point], fn, [edit]), fastPath: "callback" },
  };
}

describe("residual hooks on stories260K", async () => {
  const baseline = await run({});

  test("zero-edit hooks at every point give bit-identical logits to no hooks", async () => {
    const hooks = makeHooks(allPoints(model.info.nLayers), () => {});
    const hooked = await run({ hooks });
    expect(hooks.calls).toBeGreaterThan(0);
    expect(hooked.tokens).toEqual(baseline.tokens);
    for (let s = 0; s < baseline.logits.length; s++) {
      expect(Buffer.from(hooked.logits[s]!.buffer).equals(Buffer.from(baseline.logits[s]!.buffer))).toBe(true);
    }
  });

  test("hooks see [rows, dModel] residuals at the right positions; the last block only the output row", async () => {
    const seen: string[] = [];
    const hooks = makeHooks([pre0, mid(2), post(4)], (p, x, pos) => {
      expect(x.dims).toEqual([x.data.length / D, D]);
      seen.push(`${pointName(p)}:${Array.from(pos).join(",")}`);
    });
    const seq = model.createSequence({ hooks });
    await seq.prefill(ONCE);
    await seq.decode(403);
    seq.free();
    expect(seen).toEqual([
      "resid_pre.0:0,1,2,3,4",
      "resid_mid.2:0,1,2,3,4",
      "resid_post.4:4",
      "resid_pre.0:5",
      "resid_mid.2:5",
      "resid_post.4:5",
    ]);
  });

  test("prefill split into several forward passes gives hooks each pass's rows and positions", async () => {
    const small = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 128, batchSize: 2 });
    try {
      const seen: string[] = [];
      const hooks = makeHooks([post(0), post(4)], (p, x, pos) => {
        expect(x.dims[0]).toBe(pos.length);
        seen.push(`${pointName(p)}:${Array.from(pos).join(",")}`);
      });
      const seq = small.createSequence({ hooks });
      const logits = await seq.prefill(ONCE);
      // Passes of 2, 2 and 1 tokens; the last block computes only the row that gives logits.
      expect(seen).toEqual(["resid_post.0:0,1", "resid_post.0:2,3", "resid_post.0:4", "resid_post.4:4"]);
      expect(maxAbsDiff(logits, baseline.logits[0]!)).toBeLessThan(1e-4);
      seq.free();
    } finally {
      small.dispose();
    }
  });

  test("resid_pre.0 is the token embedding rows", async () => {
    const rows: Float32Array[] = [];
    const hooks = makeHooks([pre0], (_p, x) => void rows.push(Float32Array.from(x.data)));
    const seq = model.createSequence({ hooks });
    await seq.prefill([1, 403, 403]);
    seq.free();
    const r = rows[0]!;
    // Same token at positions 1 and 2: same embedding row; a different token: a different row.
    expect(Array.from(r.subarray(2 * D, 3 * D))).toEqual(Array.from(r.subarray(D, 2 * D)));
    expect(maxAbsDiff(r.subarray(0, D), r.subarray(D, 2 * D))).toBeGreaterThan(0);
  });

  for (const [what, edit] of [
    ["an additive vector at resid_post.2 (control vector)", additive(post(2), randomVector(D, 7, 0.5))],
    ["an additive vector at resid_post.0 (block 0: no control vector)", additive(post(0), randomVector(D, 8, 0.5))],
    ["an additive vector at resid_mid.1", additive(mid(1), randomVector(D, 9, 0.5))],
    ["an additive vector at resid_pre.0", additive(pre0, randomVector(D, 10, 0.2))],
    [
      "a rank-2 edit h + (hU)V + c at resid_post.3",
      { point: post(3), rank: 2, U: randomVector(D * 2, 11, 0.3), V: randomVector(2 * D, 12, 0.3), c: randomVector(D, 13, 0.1) },
    ],
  ] as const) {
    test(`${what}: changes logits, and the fast path equals the JS path`, async () => {
      const paths = bothPaths(edit);
      const js = await run(paths.js);
      const fastSeq = model.createSequence(paths.fast);
      const mode = fastSeq.pointModes.get(pointName(edit.point));
      fastSeq.free();
      expect(mode).toBe(edit.rank === 0 && edit.point.site === "resid_post" && edit.point.layer >= 1 ? "cvec" : "native");
      const fast = await run(paths.fast);
      const callback = await run(paths.callback);
      expect(maxAbsDiff(js.logits[0]!, baseline.logits[0]!)).toBeGreaterThan(1e-3);
      expect(fast.tokens).toEqual(js.tokens);
      expect(callback.tokens).toEqual(js.tokens);
      for (let s = 0; s < js.logits.length; s++) {
        expect(maxAbsDiff(fast.logits[s]!, js.logits[s]!)).toBeLessThan(1e-3);
        expect(maxAbsDiff(callback.logits[s]!, js.logits[s]!)).toBeLessThan(1e-3);
      }
    });
  }

  test("an edit at layer L is visible when reading layer L+1", async () => {
    const v = randomVector(D, 21, 1);
    const read = (edit: boolean) => {
      const out: Float32Array[] = [];
      const reader = makeHooks([post(1), mid(2)], (p, x) => {
        if (p.site === "resid_post") {
          if (edit) addRows(x, v);
        } else out.push(Float32Array.from(x.data));
      });
      return { hooks: reader, out };
    };
    const plain = read(false);
    const edited = read(true);
    for (const r of [plain, edited]) {
      const seq = model.createSequence({ hooks: r.hooks });
      await seq.prefill(ONCE);
      seq.free();
    }
    expect(maxAbsDiff(plain.out[0]!, edited.out[0]!)).toBeGreaterThan(1e-2);

    // The same edit applied natively as a control vector is visible to a JS reader downstream.
    const nativeOut: Float32Array[] = [];
    const hooks = makeHooks([post(1), mid(2)], (p, x) => void (p.site === "resid_mid" && nativeOut.push(Float32Array.from(x.data))), [
      additive(post(1), v),
    ]);
    const seq = model.createSequence({ hooks });
    expect(seq.pointModes.get("resid_post.1")).toBe("cvec");
    await seq.prefill(ONCE);
    seq.free();
    expect(maxAbsDiff(nativeOut[0]!, edited.out[0]!)).toBeLessThan(1e-4);
  });

  test("same seed, same sampled tokens (seeded sampling over the raw logits)", async () => {
    const sample = async (seed: number) => {
      let s = seed >>> 0;
      const rand = () => {
        s = (s + 0x6d2b79f5) >>> 0;
        let t = s;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
      };
      const hooks = makeHooks([post(2)], (_p, x) => addRows(x, randomVector(D, 3, 0.3)));
      const seq = model.createSequence({ hooks });
      let logits = await seq.prefill(ONCE);
      const out: number[] = [];
      for (let i = 0; i < 24; i++) {
        let max = -Infinity;
        for (const l of logits) max = Math.max(max, l);
        let sum = 0;
        const p = Array.from(logits, (l) => Math.exp(l - max));
        for (const x of p) sum += x;
        let r = rand() * sum;
        let next = 0;
        while (r > p[next]! && next < p.length - 1) r -= p[next++]!;
        out.push(next);
        logits = await seq.decode(next);
      }
      seq.free();
      return out;
    };
    const a = await sample(42);
    expect(await sample(42)).toEqual(a);
    expect(await sample(43)).not.toEqual(a);
  });

  test("two sequences generating at once with different hooks do not leak into each other", async () => {
    const vA = randomVector(D, 31, 0.8);
    const vB = randomVector(D, 32, 0.8);
    const optsA = (): LlamaSequenceOptions => ({ hooks: makeHooks([post(2)], (_p, x) => addRows(x, vA)) });
    const optsB = (): LlamaSequenceOptions => ({ hooks: makeHooks([post(3)], () => {}, [additive(post(3), vB)]) });
    const aloneA = await run(optsA(), 8);
    const aloneB = await run(optsB(), 8);
    const aloneC = baseline;

    const seqs = [model.createSequence(optsA()), model.createSequence(optsB()), model.createSequence({})];
    const logits = await Promise.all(seqs.map(async (s) => [Float32Array.from(await s.prefill(ONCE))]));
    for (let step = 0; step < 4; step++) {
      await Promise.all(
        seqs.map(async (s, i) => {
          const next = argmax(logits[i]![logits[i]!.length - 1]!);
          logits[i]!.push(Float32Array.from(await s.decode(next)));
        }),
      );
    }
    for (const s of seqs) s.free();
    for (let step = 0; step <= 4; step++) {
      expect(maxAbsDiff(logits[0]![step]!, aloneA.logits[step]!)).toBe(0);
      expect(maxAbsDiff(logits[1]![step]!, aloneB.logits[step]!)).toBe(0);
      expect(maxAbsDiff(logits[2]![step]!, aloneC.logits[step]!)).toBe(0);
    }
    expect(maxAbsDiff(aloneA.logits[0]!, aloneB.logits[0]!)).toBeGreaterThan(1e-3);
  });

  test("a throwing hook stops the forward pass, rejects with its error, and leaves the model usable", async () => {
    const seen: string[] = [];
    const hooks = makeHooks([post(1), mid(2), post(3)], (p) => {
      seen.push(pointName(p));
      if (seen.length === 5) throw new Error("plugin exploded");
    });
    const seq = model.createSequence({ hooks });
    await seq.prefill(ONCE); // 3 calls
    expect(seq.length).toBe(5);
    await expect(seq.decode(403)).rejects.toThrow("plugin exploded");
    // The pass stopped at the failing hook: resid_post.3 of the failing step never ran.
    expect(seen).toEqual(["resid_post.1", "resid_mid.2", "resid_post.3", "resid_post.1", "resid_mid.2"]);
    // The failed token was rolled back out of the cache.
    expect(seq.length).toBe(5);
    seq.free();
    const again = await run({});
    expect(maxAbsDiff(again.logits[2]!, baseline.logits[2]!)).toBe(0);
  });

  test("freeing a sequence from inside its own hook ends the pass and frees it", async () => {
    const before = model.liveSequences;
    let seq: ReturnType<typeof model.createSequence> | null = null;
    const hooks = makeHooks([mid(1)], () => seq!.free());
    seq = model.createSequence({ hooks });
    await expect(seq.prefill(ONCE)).rejects.toThrow(/freed during its forward pass/);
    expect(seq.freed).toBe(true);
    expect(model.liveSequences).toBe(before);
    const again = await run({});
    expect(maxAbsDiff(again.logits[0]!, baseline.logits[0]!)).toBe(0);
  });

  test("disposing the model from inside a hook ends the pass; the weights go after llama_decode returns", async () => {
    const other = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 64 });
    const hooks = makeHooks([mid(2)], () => other.dispose());
    const seq = other.createSequence({ hooks });
    await expect(seq.prefill(ONCE)).rejects.toThrow(/freed during its forward pass/);
    expect(other.liveSequences).toBe(0);
    expect(() => other.createSequence()).toThrow(/disposed/);
  });

  test("an affine edit that changes nothing installs no hook", () => {
    const seq = model.createSequence({ hooks: makeHooks([post(2)], () => {}, [{ point: post(2), rank: 0, U: null, V: null, c: null }]) });
    expect(seq.pointModes.get("resid_post.2")).toBe("identity");
    seq.free();
  });

  test("affine edits with the wrong shape are refused when the sequence is created", () => {
    const bad: AffineEdit = { point: post(2), rank: 1, U: new Float32Array(D), V: new Float32Array(3), c: null };
    expect(() => model.createSequence({ hooks: makeHooks([post(2)], () => {}, [bad]) })).toThrow(/affine edit at resid_post.2: V must hold 1x64 = 64 values, got Float32Array\(3\)/);
  });
});
