/**
 * Batched decoding (batch.ts) against the one-context-per-sequence path, on the real model: mixed
 * recipes in one batch (JS hooks, native affine edits, positioned edits, a logits plugin, none),
 * sequences joining and leaving mid-run, prompts spread over several steps, and failures that must
 * stay inside their own sequence.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import type { Model, Sequence } from "../../src/core/backend.ts";
import { compileChain, type ChainPlugin } from "../../src/core/chain.ts";
import { argmax } from "../../src/core/tensor.ts";
import { generate, stream } from "../../src/core/generate.ts";
import { bias, gate, PROMPTS as prompts, run, squash } from "../helpers/batched.ts";
import { addVector, ablateDirection } from "../../src/plugins/index.ts";
import { BatchedSequence, DEFAULT_MODEL_PATH, loadModel } from "../../src/adapters/llama-cpp/index.ts";
import { makeHooks, maxAbsDiff, randomVector } from "./hooks-helpers.ts";

const single = loadModel(DEFAULT_MODEL_PATH, { threads: 1, contextLength: 128 });
const D = single.info.dModel;
const LAST = single.info.nLayers - 1;
/** Steps of at most 12 tokens: every prompt below is spread over several steps. */
const batched = single.batched({ sequences: 6, stepTokens: 12 });
afterAll(() => {
  batched.dispose();
  single.dispose();
});

/**
 * Batched vs one context, max |logit difference| over a run. Alone in the batch a sequence's logits
 * are bit-identical to its own context's; beside others they differ by float32 rounding (ggml's
 * kernels block their sums by the pass's shape: more rows, a longer unified KV), measured up to
 * 8e-3 unsteered and 1.5e-2 with the squashing JS hooks below, on logits of magnitude ~10.
 */
const TOLERANCE = 3e-2;


const dir = Array.from(randomVector(D, 11, 1));
const recipes: Record<string, ChainPlugin[]> = {
  "JS hooks (incl. the last block)": [squash({ site: "resid_post", layers: [0, 2, LAST] })],
  "native affine (add + rank-1 ablation)": [addVector({ points: ["resid_post.2"], vector: Array.from(randomVector(D, 5, 1)), scale: 1.5 }), ablateDirection({ points: [`resid_mid.${LAST}`, "resid_mid.1"], direction: dir })],
  "positioned edits": [addVector({ points: ["resid_post.1"], vector: Array.from(randomVector(D, 7, 1)), scale: 2, positions: "generated" }), ablateDirection({ points: ["resid_post.3"], direction: dir, positions: { from: 3, to: 12 } })],
  "logits plugin": [bias({ tokens: [300, 301, 302], by: 4 })],
  unsteered: [],
  "everything at once": [squash({ site: "resid_mid", layers: [1] }), addVector({ points: ["resid_post.3"], vector: Array.from(randomVector(D, 9, 1)), scale: 1 }), bias({ tokens: [400], by: 3 })],
};

describe("batched decoding on stories260K", () => {
  test("mixed recipes in one batch, joining and leaving mid-run: same greedy tokens, logits within tolerance", async () => {
    const names = Object.keys(recipes);
    // Steps per run differ (runs leave at different times); the last three join late.
    const steps = [14, 6, 12, 4, 10, 8];
    const joinAfter = [0, 0, 0, 3, 5, 7];
    const expected = await Promise.all(names.map((name, i) => run(single, prompts[i]!, recipes[name]!, steps[i]!)));
    const lead = gate();
    const got = await Promise.all(
      names.map(async (name, i) => {
        await lead.at(joinAfter[i]!);
        return run(batched, prompts[i]!, recipes[name]!, steps[i]!, async () => {
          if (i === 0) lead.bump();
        });
      }),
    );
    for (const [i, name] of names.entries()) {
      expect({ name, tokens: got[i]!.tokens }).toEqual({ name, tokens: expected[i]!.tokens });
      const diff = Math.max(...got[i]!.logits.map((l, s) => maxAbsDiff(l, expected[i]!.logits[s]!)));
      expect({ name, diff: diff < TOLERANCE }).toEqual({ name, diff: true });
    }
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("generate through the batched model: the same text as one context each, logits plugin included", async () => {
    const names = Object.keys(recipes);
    const request = (i: number) => ({ prompt: prompts[i]!, temperature: 0, maxTokens: 8 + 3 * i, plugins: recipes[names[i]!]! });
    const expected = [];
    for (let i = 0; i < names.length; i++) expected.push((await generate(single, request(i))).tokens);
    const got = await Promise.all(names.map((_, i) => generate(batched, request(i))));
    for (let i = 0; i < names.length; i++) expect(got[i]!.tokens).toEqual(expected[i]!);
    // The logits plugin changed its sequence's text, so the batch did not mix requests up.
    expect(expected[3]).not.toEqual((await generate(single, { ...request(3), plugins: [] })).tokens);
  });

  test("a hook that fails stops only its own sequence; its tokens leave the cache and the others are unchanged", async () => {
    const plain = await run(single, prompts[0]!, [], 6);
    let armed = false;
    const hooks = makeHooks([{ site: "resid_post", layer: 1 }], () => {
      if (armed) throw new Error("hook broke");
    });
    const failing = batched.createSequence({ hooks });
    const ptoks = single.tokenize(prompts[1]!);
    const other = run(batched, prompts[0]!, [], 6);
    await failing.prefill(ptoks);
    await failing.decode(5);
    armed = true;
    await expect(failing.decode(6)).rejects.toThrow("hook broke");
    // The failed call's token left the cache: the sequence holds what it held before it.
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

  test("a JS hook sees only its own rows, at their positions, as in its own context", async () => {
    const points = [{ site: "resid_pre" as const, layer: 0 }, { site: "resid_mid" as const, layer: 2 }, { site: "resid_post" as const, layer: LAST }];
    const record = () => {
      const seen = new Map<string, { rows: number; positions: number[] }[]>();
      const hooks = makeHooks(points, (p, x, positions) => {
        const key = `${p.site}.${p.layer}`;
        seen.set(key, [...(seen.get(key) ?? []), { rows: x.dims[0]!, positions: Array.from(positions) }]);
      });
      return { hooks, seen };
    };
    const drive = async (model: Model, hooks: ReturnType<typeof record>["hooks"], prompt: number[]) => {
      const seq = model.createSequence({ hooks });
      await seq.prefill(prompt);
      for (let k = 0; k < 4; k++) await seq.decode(20 + k);
      seq.free();
    };
    const promptA = single.tokenize(prompts[0]!);
    const promptB = single.tokenize(prompts[2]!);
    const own = record();
    await drive(single, own.hooks, promptA);
    const a = record();
    const b = record();
    await Promise.all([drive(batched, a.hooks, promptA), drive(batched, b.hooks, promptB)]);
    const flat = (calls: { positions: number[] }[]) => calls.flatMap((c) => c.positions);
    for (const p of ["resid_pre.0", "resid_mid.2"]) {
      expect(flat(a.seen.get(p)!)).toEqual(flat(own.seen.get(p)!));
      expect(flat(b.seen.get(p)!)).toEqual(Array.from({ length: promptB.length + 4 }, (_, i) => i));
    }
    // The last block: one row per call that produces logits, at its last position.
    const last = `resid_post.${LAST}`;
    expect(a.seen.get(last)).toEqual(own.seen.get(last)!);
    expect(b.seen.get(last)!.map((c) => c.positions)).toEqual([[promptB.length - 1], ...[0, 1, 2, 3].map((k) => [promptB.length + k])]);
    // The prompt went through in steps of at most 12 rows, shared with the other sequence.
    expect(Math.max(...a.seen.get("resid_pre.0")!.map((c) => c.rows))).toBeLessThanOrEqual(12);
  });

  test("free() from inside a hook ends that sequence's call; the pass finishes for the others", async () => {
    const plain = await run(single, prompts[2]!, [], 5);
    let seq: Sequence | null = null;
    let armed = false;
    const hooks = makeHooks([{ site: "resid_mid", layer: 2 }], () => {
      if (armed) seq!.free();
    });
    seq = batched.createSequence({ hooks });
    const other = run(batched, prompts[2]!, [], 5);
    await seq.prefill([1, 2, 3]);
    armed = true;
    await expect(seq.decode(4)).rejects.toThrow("freed during its forward pass");
    expect((await other).tokens).toEqual(plain.tokens);
    expect(batched.batch.liveSequences).toBe(0);
  });

  test("reset, free and a new sequence while another sequence's pass runs wait for the pass (no cache call races the decode thread)", async () => {
    const prompt = single.tokenize(prompts[0]!);
    const plain = await run(single, prompts[0]!, [], 3);
    const idle = batched.createSequence();
    await idle.prefill([1, 2, 3]);
    const busy = run(batched, prompts[0]!, [], 3);
    await Promise.resolve();
    await Promise.resolve(); // the first step of `busy` is in flight on the decode thread
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

  test("a full batch whose sequence is freed mid-pass takes a new one at once (a server reusing its request slot)", async () => {
    const plain = await run(single, prompts[2]!, [], 3);
    let next: Sequence | null = null;
    let thrown: unknown = null;
    let armed = false;
    const seqs: Sequence[] = [];
    // Inside a hook the pass holds every row: free this sequence there and ask for a new one at once.
    const hooks = makeHooks([{ site: "resid_post", layer: 1 }], () => {
      if (!armed || next || thrown) return;
      seqs[0]!.free(); // its slot stays held until the pass ends...
      try {
        next = batched.createSequence(); // ...but the batch is not full: 5 live sequences of 6
        expect(() => batched.createSequence()).toThrow("all 6 sequences");
      } catch (e) {
        thrown = e;
      }
    });
    seqs.push(batched.createSequence({ hooks }), ...Array.from({ length: 5 }, () => batched.createSequence()));
    await Promise.all(seqs.map((q) => q.prefill([1, 5, 9])));
    armed = true;
    await Promise.all(seqs.map((q) => q.decode(11).catch((e: Error) => e)));
    expect(thrown).toBeNull();
    expect(next).not.toBeNull();
    for (const q of seqs) q.free();
    const fresh = next!;
    const got = await run({ info: batched.info, tokenize: (t: string) => batched.tokenize(t), createSequence: () => fresh } as unknown as Model, prompts[2]!, [], 3);
    expect(got.tokens).toEqual(plain.tokens);
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

  test("native edits are per row group: every affine point is served natively, never by a control vector", () => {
    const chain = compileChain(recipes["native affine (add + rank-1 ablation)"]!, batched, { promptTokens: [1] });
    const seq = batched.createSequence({ hooks: chain.residual }) as BatchedSequence;
    expect([...seq.pointModes.values()]).toEqual(["native", "native", "native"]);
    seq.free();
  });

  test("one decode thread serves every pass of a batch (no thread per step); dispose ends it", async () => {
    // The shim names its decode threads "sk-decode"; the suite's shared batch has one already.
    const decodeThreads = () =>
      readdirSync("/proc/self/task").filter((tid) => {
        try {
          return readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim() === "sk-decode";
        } catch {
          return false; // a thread that ended while we looked
        }
      });
    const before = new Set(decodeThreads());
    const own = single.batched({ sequences: 2 });
    const seq = own.createSequence();
    const seen = new Set<string>();
    let logits = await seq.prefill([1, 2, 3]);
    for (let i = 0; i < 8; i++) {
      for (const tid of decodeThreads()) if (!before.has(tid)) seen.add(tid);
      logits = await seq.decode(argmax(logits));
    }
    expect(seen.size).toBe(1);
    seq.free();
    own.dispose();
    expect(decodeThreads().filter((tid) => !before.has(tid))).toEqual([]);
  });

  test("stream: cancelling one batched stream frees its slot and leaves the others running", async () => {
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

  test("an aborted generation settles only once its sequence is freed (a server may reuse the request's slot at once)", async () => {
    const controller = new AbortController();
    const events = stream(batched, { prompt: prompts[3]!, temperature: 0, maxTokens: 100, ignoreEos: true, signal: controller.signal });
    const reader = events.getReader();
    for (let i = 0; i < 3; i++) await reader.read();
    await new Promise((r) => setTimeout(r, 0)); // the next decode is queued or in a pass now
    controller.abort();
    for (;;) {
      const r = await reader.read().catch(() => ({ done: true }));
      if (r.done) break;
    }
    // The abort raced the decode in flight; the stream ended only after the sequence was freed.
    expect(batched.batch.liveSequences).toBe(0);
  });

});
