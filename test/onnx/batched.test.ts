/**
 * Batched ONNX decoding (batch.ts) against one session.run per sequence, on stories260K converted by
 * `steerkit convert`: mixed recipes in one batch (JS hooks, in-graph affine edits with and without
 * positions, a logits plugin, none), sequences joining and leaving mid-run, and failures that must
 * stay inside their own sequence.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import type { BatchedOnnxModel } from "../../src/adapters/onnx/batch.ts";
import { convertGgufToOnnx } from "../../src/convert/gguf-to-onnx.ts";
import type { Model, Sequence } from "../../src/core/backend.ts";
import type { ChainPlugin } from "../../src/core/chain.ts";
import { generate, stream } from "../../src/core/generate.ts";
import { bias, gate, PROMPTS as prompts, run, squash } from "../helpers/batched.ts";
import { ablateDirection, addVector } from "../../src/plugins/index.ts";
import { DEFAULT_MODEL_PATH } from "../../src/testing/index.ts";
import { makeHooks, maxAbsDiff, wave } from "./helpers/hooks.ts";

const dir = mkdtempSync(join(tmpdir(), "steerkit-onnx-batched-"));
let single: OnnxRuntimeModel;
let batched: BatchedOnnxModel;
let D = 0;
let LAST = 0;
beforeAll(async () => {
  await convertGgufToOnnx(DEFAULT_MODEL_PATH, dir);
  single = await onnx.load(dir, { contextLength: 128, threads: 1 });
  batched = single.batched!({ sequences: 6 });
  D = single.info.dModel;
  LAST = single.info.nLayers - 1;
});
afterAll(() => {
  batched?.dispose();
  single?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Batched vs one sequence, max |logit difference| over a run. The rows of a pass go through ORT's
 * GEMMs together and attend over a padded cache (masked keys weigh exactly 0), so sums are blocked
 * differently: measured 1.4e-5 on logits of magnitude ~10 (the test prints it).
 */
const TOLERANCE = 1e-4;


function recipes(): Record<string, ChainPlugin[]> {
  const dirVec = Array.from(wave(D, 1, 0.3));
  return {
    "JS hooks (incl. the last block)": [squash({ site: "resid_post", layers: [0, 2, LAST] })],
    "in-graph affine (add + rank-1 ablation)": [
      addVector({ points: ["resid_post.2"], vector: Array.from(wave(D, 1.5, 1)), scale: 1.5 }),
      ablateDirection({ points: [`resid_mid.${LAST}`, "resid_mid.1"], direction: dirVec }),
    ],
    "positioned edits": [
      addVector({ points: ["resid_post.1"], vector: Array.from(wave(D, 2, 2)), scale: 2, positions: "generated" }),
      ablateDirection({ points: ["resid_post.3"], direction: dirVec, positions: { from: 3, to: 12 } }),
    ],
    "logits plugin": [bias({ tokens: [300, 301, 302], by: 4 })],
    unsteered: [],
    "everything at once": [squash({ site: "resid_mid", layers: [1] }), addVector({ points: ["resid_post.2"], vector: Array.from(wave(D, 1, 3)), scale: 1 }), bias({ tokens: [400], by: 3 })],
  };
}

describe("batched ONNX decoding on stories260K (steerkit convert)", () => {
  test("the converter's export can batch: no refusal", () => {
    expect(single.batchRefusal).toBeNull();
    expect(typeof single.batched).toBe("function");
  });

  test("mixed recipes in one batch, joining and leaving mid-run: same greedy tokens, logits within tolerance", async () => {
    const all = recipes();
    const names = Object.keys(all);
    const steps = [14, 6, 12, 4, 10, 8];
    const joinAfter = [0, 0, 0, 3, 5, 7];
    const expected = await Promise.all(names.map((name, i) => run(single, prompts[i]!, all[name]!, steps[i]!)));
    const lead = gate();
    const got = await Promise.all(
      names.map(async (name, i) => {
        await lead.at(joinAfter[i]!);
        return run(batched, prompts[i]!, all[name]!, steps[i]!, async () => {
          if (i === 0) lead.bump();
        });
      }),
    );
    let worst = 0;
    for (const [i, name] of names.entries()) {
      expect({ name, tokens: got[i]!.tokens }).toEqual({ name, tokens: expected[i]!.tokens });
      const diff = Math.max(...got[i]!.logits.map((l, s) => maxAbsDiff(l, expected[i]!.logits[s]!)));
      worst = Math.max(worst, diff);
      expect({ name, diff: diff < TOLERANCE }).toEqual({ name, diff: true });
    }
    console.log(`batched vs one sequence each: max |logit diff| ${worst.toExponential(2)}`);
    // The recipes did something, so equality means each row kept its own steering.
    expect(new Set(expected.map((r) => JSON.stringify(r.tokens.slice(0, 4)))).size).toBeGreaterThan(3);
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("decode steps of concurrent sequences share one pass", async () => {
    const seqs = [batched.createSequence(), batched.createSequence(), batched.createSequence()];
    await Promise.all(seqs.map((s, i) => s.prefill([1, 10 + i, 20 + i * 3].slice(0, 2 + i))));
    const passes = batched.batch.passes;
    for (let k = 0; k < 4; k++) await Promise.all(seqs.map((s) => s.decode(30 + k)));
    expect(batched.batch.passes - passes).toBe(4);
    for (const s of seqs) s.free();
  });

  test("generate through the batched model: the same text as one sequence each", async () => {
    const all = recipes();
    const names = Object.keys(all);
    const request = (i: number) => ({ prompt: prompts[i]!, temperature: 0, maxTokens: 8 + 3 * i, ignoreEos: true, plugins: all[names[i]!]! });
    const expected = [];
    for (let i = 0; i < names.length; i++) expected.push((await generate(single, request(i))).tokens);
    const got = await Promise.all(names.map((_, i) => generate(batched, request(i))));
    for (let i = 0; i < names.length; i++) expect(got[i]!.tokens).toEqual(expected[i]!);
    expect(expected[3]).not.toEqual((await generate(single, { ...request(3), plugins: [] })).tokens);
  });

  test("a hook that fails stops only its own sequence; its tokens are not kept and the others are unchanged", async () => {
    const plain = await run(single, prompts[0]!, [], 6);
    let armed = false;
    const hooks = makeHooks({
      points: ["resid_post.1"],
      edit: () => {
        if (armed) throw new Error("hook broke");
      },
    });
    const failing = batched.createSequence({ hooks });
    const ptoks = single.tokenize(prompts[1]!);
    const other = run(batched, prompts[0]!, [], 6);
    await failing.prefill(ptoks);
    await failing.decode(5);
    armed = true;
    await expect(failing.decode(6)).rejects.toThrow("hook broke");
    expect(failing.length).toBe(ptoks.length + 1);
    armed = false;
    (hooks as { error: Error | null }).error = null;
    const retried = Float32Array.from(await failing.decode(6));
    failing.free();
    const alone = single.createSequence();
    await alone.prefill(ptoks);
    await alone.decode(5);
    expect(maxAbsDiff(retried, await alone.decode(6))).toBeLessThan(TOLERANCE);
    alone.free();
    const got = await other;
    expect(got.tokens).toEqual(plain.tokens);
    expect(Math.max(...got.logits.map((l, s) => maxAbsDiff(l, plain.logits[s]!)))).toBeLessThan(TOLERANCE);
  });

  test("a JS hook sees only its own rows, at their positions, as on its own", async () => {
    const points = ["resid_pre.0", "resid_mid.2", `resid_post.${LAST}`];
    const positionsSeen = () => {
      const seen = new Map<string, number[][]>();
      const hooks = makeHooks({
        points,
        edit: (p, x, positions) => {
          const key = `${p.site}.${p.layer}`;
          seen.set(key, [...(seen.get(key) ?? []), Array.from(positions)]);
          expect(x.dims[0]).toBe(positions.length);
        },
      });
      return { hooks, seen };
    };
    const drive = async (model: Model, hooks: ReturnType<typeof makeHooks>, prompt: number[]) => {
      const seq = model.createSequence({ hooks });
      await seq.prefill(prompt);
      for (let k = 0; k < 4; k++) await seq.decode(20 + k);
      seq.free();
    };
    const promptA = single.tokenize(prompts[0]!);
    const promptB = single.tokenize(prompts[2]!);
    const own = positionsSeen();
    await drive(single, own.hooks, promptA);
    const a = positionsSeen();
    const b = positionsSeen();
    await Promise.all([drive(batched, a.hooks, promptA), drive(batched, b.hooks, promptB)]);
    for (const p of points) {
      expect(a.seen.get(p)).toEqual(own.seen.get(p)!);
      expect(b.seen.get(p)).toEqual([Array.from({ length: promptB.length }, (_, i) => i), ...[0, 1, 2, 3].map((k) => [promptB.length + k])]);
      // Same values as on its own, too (rows are not mixed up).
      const mine = a.hooks.seen.get(p)!;
      own.hooks.seen.get(p)!.forEach((x, i) => expect(maxAbsDiff(x, mine[i]!)).toBeLessThan(TOLERANCE));
    }
  });

  test("free() from inside a hook ends that sequence's call; the pass finishes for the others", async () => {
    const plain = await run(single, prompts[2]!, [], 5);
    let seq: Sequence | null = null;
    let armed = false;
    const hooks = makeHooks({
      points: ["resid_mid.2"],
      edit: () => {
        if (armed) seq!.free();
      },
    });
    seq = batched.createSequence({ hooks });
    const other = run(batched, prompts[2]!, [], 5);
    await seq.prefill([1, 2, 3]);
    armed = true;
    await expect(seq.decode(4)).rejects.toThrow("freed during its forward pass");
    expect((await other).tokens).toEqual(plain.tokens);
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("reset, free and a new sequence while a pass runs: the pass is unaffected", async () => {
    const prompt = single.tokenize(prompts[0]!);
    const plain = await run(single, prompts[0]!, [], 3);
    const idle = batched.createSequence();
    await idle.prefill([1, 2, 3]);
    const busy = run(batched, prompts[0]!, [], 3);
    await Promise.resolve();
    await Promise.resolve();
    idle.reset();
    expect(idle.length).toBe(0);
    const late = batched.createSequence();
    late.free();
    const fresh = await idle.prefill(prompt);
    const alone = single.createSequence();
    expect(maxAbsDiff(fresh, await alone.prefill(prompt))).toBeLessThan(TOLERANCE);
    alone.free();
    idle.free();
    expect((await busy).tokens).toEqual(plain.tokens);
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("a sequence past its context is refused alone; a full batch refuses a new sequence by name", async () => {
    const seqs = Array.from({ length: 6 }, () => batched.createSequence());
    expect(() => batched.createSequence()).toThrow("all 6 sequences");
    const long = Array.from({ length: 100 }, (_, i) => 10 + i);
    await seqs[0]!.prefill(long);
    const [overflow, fine] = await Promise.allSettled([seqs[0]!.prefill(long), seqs[1]!.prefill(long)]);
    expect(overflow.status).toBe("rejected");
    expect(String((overflow as PromiseRejectedResult).reason)).toContain("128");
    expect(fine.status).toBe("fulfilled");
    expect(seqs[0]!.length).toBe(100);
    for (const s of seqs) s.free();
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("a long prompt goes in by chunks between the others' decode steps; a failure in a later chunk rolls the whole call back", async () => {
    const chunked = single.batched!({ sequences: 3, promptChunk: 12 });
    try {
      const long = Array.from({ length: 50 }, (_, i) => 5 + ((i * 7) % 300));
      const alone = single.createSequence();
      const expected = Float32Array.from(await alone.prefill(long));
      alone.free();
      const plain = await run(single, prompts[1]!, [], 8);
      const decoding = run(chunked, prompts[1]!, [], 8);
      await Bun.sleep(1);
      let chunks = 0;
      const hooks = makeHooks({ points: ["resid_post.0"], edit: (_p, x) => void (x.dims[0]! > 1 && chunks++) });
      const seq = chunked.createSequence({ hooks });
      const passes = chunked.batch.passes;
      expect(maxAbsDiff(await seq.prefill(long), expected)).toBeLessThan(TOLERANCE);
      expect(chunks).toBe(5); // 12 + 12 + 12 + 12 + 2
      expect(chunked.batch.passes - passes).toBeGreaterThan(5); // decode passes of the other ran in between
      expect((await decoding).tokens).toEqual(plain.tokens);
      // A hook failing in the third chunk: the call rejects and the sequence holds what it held before.
      let calls = 0;
      const failing = chunked.createSequence({ hooks: makeHooks({ points: ["resid_post.0"], edit: () => { if (++calls === 3) throw new Error("third chunk"); } }) });
      await failing.prefill([1, 2, 3]);
      calls = 0;
      await expect(failing.prefill(long)).rejects.toThrow("third chunk");
      expect(failing.length).toBe(3);
      seq.free();
      failing.free();
    } finally {
      chunked.dispose();
    }
  });

  test("stream: cancelling one batched stream frees its row and leaves the others running", async () => {
    const plain = (await generate(single, { prompt: prompts[4]!, temperature: 0, maxTokens: 12 })).tokens;
    const cancelled = stream(batched, { prompt: prompts[3]!, temperature: 0, maxTokens: 100, ignoreEos: true });
    const kept = generate(batched, { prompt: prompts[4]!, temperature: 0, maxTokens: 12 });
    const reader = cancelled.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    await reader.cancel();
    expect((await kept).tokens).toEqual(plain);
    await Bun.sleep(5);
    expect(batched.batch.liveSequences).toBe(0);
  });
});
