import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { onnx, type OnnxRuntimeModel } from "../../src/adapters/onnx/index.ts";
import { ort } from "../../src/adapters/onnx/ort.ts";
import { applyAffine } from "../../src/core/chain.ts";
import { allPoints, parsePoint, pointName } from "../../src/core/sites.ts";
import { normalize, projectOutRows } from "../../src/core/tensor.ts";
import { makeHooks, maxAbsDiff, wave } from "./helpers/hooks.ts";

const DIR = join(import.meta.dir, "../fixtures/onnx/genai-gpt2-fp32");
const PROMPT = [5, 17, 300, 42, 999, 0];
const NEXT = [7, 123, 456];
const D = 32;

let model: OnnxRuntimeModel;
beforeAll(async () => {
  model = await onnx.load(DIR);
});
afterAll(() => model?.dispose());

/** Logits after the prompt and after each of NEXT, copied. */
async function run(hooks?: ReturnType<typeof makeHooks>): Promise<Float32Array[]> {
  const seq = model.createSequence(hooks ? { hooks } : {});
  const out = [Float32Array.from(await seq.prefill(PROMPT))];
  for (const t of NEXT) out.push(Float32Array.from(await seq.decode(t)));
  seq.free();
  return out;
}

function expectClose(a: Float32Array[], b: Float32Array[], tol: number) {
  expect(a.length).toBe(b.length);
  for (let i = 0; i < a.length; i++) expect(maxAbsDiff(a[i]!, b[i]!)).toBeLessThanOrEqual(tol);
}

describe("ONNX adapter on the genai GPT-2 export (fused contrib ops, legacy KV layout)", () => {
  test("model info comes from genai_config.json and the graph", () => {
    expect(model.info).toMatchObject({ backend: "onnx", architecture: "gpt2", nLayers: 5, dModel: 32, vocabSize: 1000, contextLength: 512, bosToken: 98 });
    expect(onnx.canOpen(DIR)).toBe(true);
    expect(onnx.canOpen(join(DIR, "genai_config.json"))).toBe(false);
  });

  test("a residual site is found at every point of every layer, each a distinct tensor", () => {
    const names = allPoints(5).map(pointName);
    expect(names.length).toBe(11);
    const tensors = names.map((n) => model.sites.get(n));
    for (const t of tensors) expect(typeof t).toBe("string");
    expect(new Set(tensors).size).toBe(11);
    // The stream starts inside EmbedLayerNormalization and ends inside the final SkipLayerNormalization.
    expect(model.sites.get("resid_pre.0")).toBe("EmbedLayerNormalization_0_embedding_sum");
    expect(model.sites.get("resid_mid.0")).toBe("/transformer/h.0/Add_output_0");
    expect(model.sites.get("resid_post.3")).toBe("/transformer/h.3/Add_1_output_0");
  });

  test("unhooked outputs equal a plain onnxruntime session over the original file", async () => {
    const session = await ort.InferenceSession.create(join(DIR, "past.onnx"));
    const i32 = (a: number[]) => new ort.Tensor("int32", Int32Array.from(a), [1, a.length]);
    let past: Record<string, ort.Tensor> = {};
    for (let l = 0; l < 5; l++) past[`past_${l}`] = new ort.Tensor("float32", new Float32Array(0), [2, 1, 4, 0, 8]);
    const want: Float32Array[] = [];
    let pos = 0;
    for (const ids of [PROMPT, ...NEXT.map((t) => [t])]) {
      const out = await session.run({
        input_ids: i32(ids),
        position_ids: i32(ids.map((_, i) => pos + i)),
        attention_mask: i32(Array(pos + ids.length).fill(1)),
        ...past,
      });
      pos += ids.length;
      const logits = out.logits!.data as Float32Array;
      want.push(logits.slice(logits.length - 1000));
      past = {};
      for (let l = 0; l < 5; l++) past[`past_${l}`] = out[`present_${l}`]!;
    }
    const got = await run();
    for (let i = 0; i < want.length; i++) expect(Array.from(got[i]!)).toEqual(Array.from(want[i]!));
  });

  test("the rewritten graph (fused norms split, sites as outputs) matches the original within float rounding", async () => {
    const hooks = makeHooks({ points: allPoints(5).map(pointName), writes: false });
    expectClose(await run(hooks), await run(), 1e-5);
    expect(model.planSpec(hooks).read.length).toBe(11);
    // Every point was read once per step (prompt + 3 decodes), prompt rows first.
    for (const name of allPoints(5).map(pointName)) {
      expect(hooks.seen.get(name)!.length).toBe(4);
      expect(hooks.seen.get(name)![0]!.length).toBe(PROMPT.length * D);
    }
  });

  test("the three modes agree: JS split, in-graph affine, and read-only outputs", async () => {
    const c = wave(D, 0.8);
    const r = normalize(wave(D, 1, 2));
    const negR = Float32Array.from(r, (v) => -v);
    // Additive at resid_post.1 and directional ablation at resid_mid.3 (U = r, V = -r^T).
    const inGraph = makeHooks({
      points: ["resid_post.1", "resid_mid.3"],
      affine: { "resid_post.1": { c }, "resid_mid.3": { rank: 1, U: r, V: negR } },
    });
    const js = makeHooks({
      points: ["resid_post.1", "resid_mid.3"],
      edit: (p, x) => {
        if (p.site === "resid_post") for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + c[i % D]!;
        else projectOutRows(x, r);
      },
    });
    expect(model.planSpec(inGraph)).toMatchObject({ split: [], read: [] });
    expect(model.planSpec(js).split.length).toBe(2);
    const a = await run(inGraph);
    const b = await run(js);
    expectClose(a, b, 1e-4);
    // The edit matters: logits moved by far more than the tolerance.
    const base = await run();
    expect(maxAbsDiff(a[0]!, base[0]!)).toBeGreaterThan(1e-2);

    // What the JS hook saw at resid_post.1 (before its edit) equals the read-only output there.
    const reader = makeHooks({ points: ["resid_post.1"], writes: false });
    await run(reader);
    const identity = makeHooks({ points: ["resid_post.1"] });
    expectClose(await run(identity), base, 1e-5);
    for (let i = 0; i < 4; i++) expect(maxAbsDiff(identity.seen.get("resid_post.1")![i]!, reader.seen.get("resid_post.1")![i]!)).toBeLessThan(1e-5);
  });

  test("adding c at resid_post.L equals reading resid_post.L, adding c in JS and feeding it forward", async () => {
    const c = wave(D, 1.5, 1);
    const L = 2;
    const plain = makeHooks({ points: [`resid_post.${L}`], writes: false });
    await run(plain);
    const manual = makeHooks({
      points: [`resid_post.${L}`],
      edit: (_, x) => {
        for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + c[i % D]!;
      },
    });
    const byHand = await run(manual);
    // The JS hook was handed exactly the stream the read-only path reports.
    for (let i = 0; i < 4; i++) {
      expect(maxAbsDiff(manual.seen.get(`resid_post.${L}`)![i]!, plain.seen.get(`resid_post.${L}`)![i]!)).toBeLessThan(1e-5);
    }
    // In-graph, alone and mixed with a JS hook one site later (one session cut, one affine site).
    const inGraph = makeHooks({ points: [`resid_post.${L}`], affine: { [`resid_post.${L}`]: { c } } });
    const mixed = makeHooks({ points: [`resid_post.${L}`, `resid_mid.${L + 1}`], affine: { [`resid_post.${L}`]: { c } }, edit: () => {} });
    expect(model.planSpec(mixed)).toMatchObject({ affine: [{ lowRank: false }], split: [{ site: "resid_mid", layer: L + 1 }] });
    expectClose(await run(inGraph), byHand, 1e-4);
    expectClose(await run(mixed), byHand, 1e-4);
    expect(maxAbsDiff(byHand[0]!, (await run())[0]!)).toBeGreaterThan(1e-2);
  });

  test("a masked in-graph edit follows absolute positions across chunked prefills and decodes", async () => {
    const c = wave(D, 1.5, 1);
    const r = normalize(wave(D, 1, 2));
    const negR = Float32Array.from(r, (v) => -v);
    // Rows 2..6: the end of the first chunk, the whole second, and the first decoded token.
    const edit = { point: parsePoint("resid_mid.2"), rank: 1, U: r, V: negR, c, positions: { from: 2, to: 7 } };
    const chunked = async (hooks: ReturnType<typeof makeHooks>) => {
      const seq = model.createSequence({ hooks });
      await seq.prefill(PROMPT.slice(0, 3));
      const out = [Float32Array.from(await seq.prefill(PROMPT.slice(3)))];
      for (const t of NEXT) out.push(Float32Array.from(await seq.decode(t)));
      seq.free();
      return out;
    };
    const inGraph = makeHooks({ points: ["resid_mid.2"], affine: { "resid_mid.2": edit } });
    const js = makeHooks({ points: ["resid_mid.2"], edit: (_, x, positions) => applyAffine(edit, x, undefined, positions) });
    expect(model.planSpec(inGraph)).toMatchObject({ split: [], affine: [{ positioned: true, lowRank: true }] });
    const a = await chunked(inGraph);
    expectClose(a, await chunked(js), 1e-5);
    // The mask is not all ones: the edit on every row gives other logits (also after the range ends).
    const everyRow = await chunked(makeHooks({ points: ["resid_mid.2"], affine: { "resid_mid.2": { ...edit, positions: undefined } } }));
    for (const i of [0, 2, 3]) expect(maxAbsDiff(a[i]!, everyRow[i]!)).toBeGreaterThan(1e-3);
  });

  test("a hook may return a replacement tensor; it is handed absolute positions", async () => {
    const c = wave(D, 1.2);
    const inPlace = makeHooks({
      points: ["resid_mid.2"],
      edit: (_, x) => {
        for (let i = 0; i < x.data.length; i++) x.data[i] = x.data[i]! + c[i % D]!;
      },
    });
    const positions: number[][] = [];
    const replaced = makeHooks({ points: ["resid_mid.2"], edit: () => {} });
    const original = replaced.run.bind(replaced);
    (replaced as { run: typeof original }).run = (point, x, pos, ids) => {
      positions.push(Array.from(pos));
      original(point, x, pos, ids);
      return { data: Float32Array.from(x.data, (v, i) => v + c[i % D]!), dims: x.dims };
    };
    expectClose(await run(replaced), await run(inPlace), 0);
    expect(positions).toEqual([[0, 1, 2, 3, 4, 5], [6], [7], [8]]);
  });

  test("two sequences at once do not leak into each other", async () => {
    const base = await run();
    const c = wave(D, 2);
    const steered = await run(makeHooks({ points: ["resid_post.0"], affine: { "resid_post.0": { c } } }));
    const a = model.createSequence();
    const b = model.createSequence({ hooks: makeHooks({ points: ["resid_post.0"], affine: { "resid_post.0": { c } } }) });
    const [la, lb] = await Promise.all([a.prefill(PROMPT).then((x) => Float32Array.from(x)), b.prefill(PROMPT).then((x) => Float32Array.from(x))]);
    expect(maxAbsDiff(la, base[0]!)).toBe(0);
    expect(maxAbsDiff(lb, steered[0]!)).toBeLessThan(1e-6);
    for (let i = 0; i < NEXT.length; i++) {
      const [x, y] = await Promise.all([a.decode(NEXT[i]!).then((v) => Float32Array.from(v)), b.decode(NEXT[i]!).then((v) => Float32Array.from(v))]);
      expect(maxAbsDiff(x, base[i + 1]!)).toBe(0);
      expect(maxAbsDiff(y, steered[i + 1]!)).toBeLessThan(1e-6);
    }
    expect(a.length).toBe(PROMPT.length + NEXT.length);
    a.free();
    b.free();
    a.free(); // idempotent
    await expect(a.decode(1)).rejects.toThrow(/freed/);
  });

  test("a throwing hook stops the step, leaves the sequence as it was, and the model usable", async () => {
    const base = await run();
    let calls = 0;
    const hooks = makeHooks({
      points: ["resid_mid.1", "resid_post.3"],
      edit: () => {
        if (++calls === 6) throw new Error("plugin boom");
      },
    });
    const seq = model.createSequence({ hooks });
    await seq.prefill(PROMPT); // calls 1, 2
    await seq.decode(NEXT[0]!); // 3, 4
    await seq.decode(NEXT[1]!).catch(() => {}); // 5, 6 -> throws at resid_post.3
    expect(hooks.error?.message).toBe("plugin boom");
    expect(seq.length).toBe(PROMPT.length + 1);
    // Another sequence is unaffected.
    expectClose(await run(), base, 0);
  });

  test("reset forgets the cache; the export has no tokenizer and says so", async () => {
    const seq = model.createSequence();
    const first = Float32Array.from(await seq.prefill(PROMPT));
    seq.reset();
    expect(seq.length).toBe(0);
    expect(maxAbsDiff(await seq.prefill(PROMPT), first)).toBe(0);
    await expect(seq.prefill(Array(600).fill(1))).rejects.toThrow(/context length 512/);
    await expect(seq.prefill([1000])).rejects.toThrow(/tokens\[0\] is 1000, expected an integer token id in 0..999/);
    seq.free();
    expect(() => model.tokenize("hello")).toThrow(/no tokenizer\.json.*token ids/);
    expect(model.detokenize([5, 17])).toBe("<5><17>");
  });

  test("plans are built once per hook layout and shared across sequences", async () => {
    const h1 = makeHooks({ points: ["resid_post.4"], edit: () => {} });
    const h2 = makeHooks({ points: ["resid_post.4"], edit: () => {} });
    const p1 = await model.plan(model.planSpec(h1));
    const p2 = await model.plan(model.planSpec(h2));
    expect(p1).toBe(p2);
    expect(p1.segments.length).toBe(2);
    // resid_pre.L is resid_post.(L-1): one cut, in forward order, whatever order the points came in.
    const spec = model.planSpec(makeHooks({ points: ["resid_post.3", "resid_pre.2", "resid_post.1"], edit: () => {} }));
    expect(spec.split.map((p) => `${p.site}.${p.layer}`)).toEqual(["resid_post.1", "resid_post.3"]);
    expect(() => model.createSequence({ hooks: makeHooks({ points: ["resid_post.5"] }) })).toThrow(/outside 0..4/);
  });

  test("the plan cache is bounded and never drops a plan a live sequence uses", async () => {
    const small = await onnx.load(DIR, { maxCachedPlans: 1 });
    const layouts = ["resid_post.0", "resid_post.1", "resid_post.2"].map((p) => makeHooks({ points: [p], edit: () => {} }));
    const held = small.createSequence({ hooks: layouts[0] });
    const first = Float32Array.from(await held.prefill(PROMPT));
    for (const h of layouts.slice(1)) {
      const s = small.createSequence({ hooks: h });
      await s.prefill(PROMPT);
      s.free();
    }
    // Over the limit only while the held sequence keeps its plan; the others were dropped.
    expect(small.cachedPlans).toBe(1);
    expect(Array.from(await held.decode(NEXT[0]!)).length).toBe(1000);
    held.free();
    // Re-building an evicted layout gives the same results.
    const again = small.createSequence({ hooks: makeHooks({ points: ["resid_post.0"], edit: () => {} }) });
    expect(maxAbsDiff(await again.prefill(PROMPT), first)).toBe(0);
    small.dispose();
  });
});
