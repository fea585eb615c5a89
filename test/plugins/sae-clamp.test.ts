/**
 * sae-clamp on the embedded model (reference backend; one test on llama.cpp): the edit is the
 * paper's (replace the latents in the SAE's reconstruction, keep its error), re-encoding shows the
 * latent at its target, positions and conditions touch exactly the rows they name, bad options
 * fail naming the option.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { openModel } from "../../src/adapters/index.ts";
import { createArtifacts, type Artifacts } from "../../src/core/artifacts.ts";
import type { Model } from "../../src/core/backend.ts";
import { generate } from "../../src/core/generate.ts";
import { saeArtifact } from "../../src/sae/artifact.ts";
import { decode, encode, newRowScale, type Sae, type SaeArchitecture, type SaeNormalization } from "../../src/sae/sae.ts";
import { saeClamp, saeLatents, type LatentRecord } from "../../src/plugins/index.ts";
import { checkAffine, DEFAULT_MODEL_PATH, loadTestModel, runPlugin, type ResidualTrace } from "../../src/testing/index.ts";
import { randomSae, tiedSae } from "../sae/make-sae.ts";

const d = 64; // stories260K
const POINT = "resid_post.2";

function store(sae: Sae, name = "s"): Artifacts {
  return createArtifacts().register(name, saeArtifact, { value: sae });
}
const at = (run: { residuals: ResidualTrace[] }) => run.residuals.filter((t) => t.point === POINT);
const rowOf = (t: Float32Array, r: number) => t.subarray(r * d, (r + 1) * d);
const rowsIn = (t: ResidualTrace) => t.positions.length;
function encodeRow(sae: Sae, x: Float32Array) {
  const acts = new Float32Array(sae.info.dSae);
  const row = newRowScale();
  encode(sae, x, acts, new Float32Array(d), row);
  return { acts, row };
}
function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

type LatentSpec = { index: number; mode: "clamp" | "add" | "scale" | "zero"; value?: number };

/** What the paper's edit gives for one row, from sae.ts's dense reference: x + decode(f') − decode(f). */
function expectedRow(sae: Sae, x: Float32Array, latents: LatentSpec[]): Float32Array {
  const { acts, row } = encodeRow(sae, x);
  const edited = Float32Array.from(acts);
  for (const l of latents) {
    const f = acts[l.index]!;
    edited[l.index] = l.mode === "clamp" ? l.value! : l.mode === "add" ? f + l.value! : l.mode === "scale" ? f * l.value! : 0;
  }
  const a = new Float32Array(d), b = new Float32Array(d);
  decode(sae, acts, a, row);
  decode(sae, edited, b, row);
  return Float32Array.from(x, (v, j) => v + (b[j]! - a[j]!));
}

describe("sae-clamp: the edit", () => {
  const cases: [SaeArchitecture, SaeNormalization][] = [
    ["relu", { kind: "none" }],
    ["jumprelu", { kind: "scale", factor: 0.7 }],
    ["gated", { kind: "constant_norm_rescale" }],
    ["topk", { kind: "layer_norm", eps: 1e-5 }],
    ["relu", { kind: "layer_norm", eps: 1e-5 }],
  ];
  for (const [architecture, normalization] of cases) {
    test(`${architecture}, ${normalization.kind}: every row becomes x + decode(f') − decode(f), so the SAE's reconstruction error stays (all four modes)`, async () => {
      const sae = randomSae({ architecture, dIn: d, dSae: 96, k: 12, normalization, seed: 21 });
      const latents: LatentSpec[] = [
        { index: 5, mode: "clamp", value: 3 },
        { index: 17, mode: "add", value: -1.5 },
        { index: 40, mode: "scale", value: 2.5 },
        { index: 77, mode: "zero" },
      ];
      const run = await runPlugin(saeClamp({ sae: "s", point: POINT, latents }), { artifacts: store(sae), maxTokens: 3 });
      expect(new Set(run.changed.map((t) => t.point))).toEqual(new Set([POINT]));
      const traces = at(run);
      expect(traces.length).toBe(3);
      for (const t of traces) {
        for (let r = 0; r < rowsIn(t); r++) {
          const x = rowOf(t.before, r);
          const want = expectedRow(sae, x, latents);
          const scale = Math.max(1, Math.max(...Array.from(want, Math.abs)));
          expect(maxAbsDiff(rowOf(t.after, r), want)).toBeLessThan(1e-5 * scale);
        }
      }
    });
  }

  for (const architecture of ["relu", "jumprelu", "gated", "topk"] as SaeArchitecture[]) {
    test(`${architecture}: re-encoding the edited residual gives the clamped value (SAE whose encoder reads what its decoder writes)`, async () => {
      // Latent 3 has a large bias so it is active at every token; the tied rows make w_i·d_j = δ_ij.
      const sae = tiedSae({ architecture, dIn: d, dSae: 8, k: 2, normalization: { kind: "scale", factor: 0.5 }, bias: (i) => (i === 3 ? 1000 : 0) });
      for (const [mode, value, target] of [["clamp", 200, 200], ["zero", undefined, 0]] as const) {
        const run = await runPlugin(saeClamp({ sae: "s", point: POINT, latents: [{ index: 3, mode, value }] }), { artifacts: store(sae), maxTokens: 2 });
        let rows = 0;
        for (const t of at(run)) {
          for (let r = 0; r < rowsIn(t); r++) {
            expect(encodeRow(sae, rowOf(t.before, r)).acts[3]!).toBeGreaterThan(0);
            expect(encodeRow(sae, rowOf(t.after, r)).acts[3]!).toBeCloseTo(target, 3);
            rows++;
          }
        }
        expect(rows).toBe(6); // 5 prompt rows + 1 decode row
      }
    });
  }

  test("the other latents keep their activations (tied SAE: the edit moves only the chosen latent's direction)", async () => {
    const sae = tiedSae({ architecture: "relu", dIn: d, dSae: 8, bias: (i) => (i === 3 ? 1000 : 1) });
    const run = await runPlugin(saeClamp({ sae: "s", point: POINT, latents: [{ index: 3, mode: "clamp", value: 50 }] }), { artifacts: store(sae), maxTokens: 2 });
    for (const t of at(run)) {
      for (let r = 0; r < rowsIn(t); r++) {
        const before = encodeRow(sae, rowOf(t.before, r)).acts;
        const after = encodeRow(sae, rowOf(t.after, r)).acts;
        for (let i = 0; i < 8; i++) if (i !== 3) expect(after[i]!).toBeCloseTo(before[i]!, 4);
      }
    }
  });

  test("add-only with a constant row scale is affine: the native path equals the JS hook", async () => {
    const sae = randomSae({ architecture: "relu", dIn: d, dSae: 32, normalization: { kind: "scale", factor: 2 }, seed: 4 });
    for (const positions of ["all", "generated", { from: 2, to: 4 }] as const) {
      const check = await checkAffine(saeClamp({ sae: "s", point: POINT, latents: [{ index: 1, mode: "add", value: 8 }, { index: 9, mode: "add", value: -3 }], positions }), { artifacts: store(sae) });
      expect(check.maxAbsDiff).toBeLessThan(1e-4);
      expect(check.fast.tokens).toEqual(check.js.tokens);
    }
  });
});

describe("sae-clamp: which rows", () => {
  const sae = randomSae({ architecture: "relu", dIn: d, dSae: 48, seed: 9 });
  const clamp = { index: 2, mode: "clamp" as const, value: 25 };
  const changedRows = (t: ResidualTrace) => t.positions.filter((_, r) => maxAbsDiff(rowOf(t.before, r), rowOf(t.after, r)) > 0);

  test('positions "generated", "prompt" and { from, to } edit exactly those rows', async () => {
    const run = async (positions: "prompt" | "generated" | { from: number; to: number }) =>
      at(await runPlugin(saeClamp({ sae: "s", point: POINT, latents: [clamp], positions }), { artifacts: store(sae), maxTokens: 3 })).flatMap(changedRows);
    expect(await run("generated")).toEqual([5, 6]);
    expect(await run("prompt")).toEqual([0, 1, 2, 3, 4]);
    expect(await run({ from: 2, to: 4 })).toEqual([2, 3]);
  });

  test('when { from: "token" } edits exactly the rows where the latent exceeds the threshold (read before the edit)', async () => {
    const opts = { artifacts: store(sae), maxTokens: 8, prompt: "Once upon a time there was a little girl named Lily" };
    const plain = at(await runPlugin([], opts));
    const acts = plain.flatMap((t) => t.positions.map((_, r) => encodeRow(sae, rowOf(t.before, r)).acts[30]!));
    const threshold = [...acts].sort((a, b) => a - b)[Math.floor(acts.length / 2)]!;
    const run = at(await runPlugin(saeClamp({ sae: "s", point: POINT, latents: [clamp], when: { latent: 30, threshold } }), opts));
    let on = 0, off = 0;
    for (const t of run) {
      for (let r = 0; r < rowsIn(t); r++) {
        const fires = encodeRow(sae, rowOf(t.before, r)).acts[30]! > threshold;
        expect(maxAbsDiff(rowOf(t.before, r), rowOf(t.after, r)) > 0).toBe(fires);
        fires ? on++ : off++;
      }
    }
    expect(on).toBeGreaterThan(0);
    expect(off).toBeGreaterThan(0);
  });

  test('when { from: "first" } edits every row from the first one where the latent exceeds the threshold', async () => {
    const opts = { artifacts: store(sae), maxTokens: 8, prompt: "Once upon a time there was a little girl named Lily" };
    const plain = at(await runPlugin([], opts));
    const acts = plain[0]!.positions.map((_, r) => encodeRow(sae, rowOf(plain[0]!.before, r)).acts[30]!);
    // Nothing is edited before the trigger, so the unsteered prompt rows tell where it is: above
    // the first three rows' largest activation.
    const threshold = Math.max(...acts.slice(0, 3));
    const trigger = acts.findIndex((a) => a > threshold);
    expect(trigger).toBeGreaterThanOrEqual(3);
    const run = at(await runPlugin(saeClamp({ sae: "s", point: POINT, latents: [clamp], when: { latent: 30, threshold, from: "first" } }), opts));
    const changed = run.flatMap(changedRows);
    const all = run.flatMap((t) => t.positions);
    expect(changed).toEqual(all.filter((p) => p >= trigger));
  });
});

describe("sae-clamp: bad options", () => {
  const sae = randomSae({ architecture: "relu", dIn: d, dSae: 16, point: { site: "resid_post", layer: 2 }, hookName: "blocks.2.hook_resid_post" });
  const arts = () => store(sae);
  const clamp = [{ index: 1, mode: "clamp" as const, value: 2 }];
  const fails = (options: Parameters<typeof saeClamp>[0], artifacts: Artifacts = arts()) => runPlugin(saeClamp(options), { artifacts, maxTokens: 1 });

  test("an unknown SAE names what is registered", async () => {
    await expect(fails({ sae: "nope", latents: clamp })).rejects.toThrow('no sae named "nope" is registered; registered saes: s');
  });
  test("a latent index out of range names the option and the SAE's size", async () => {
    await expect(fails({ sae: "s", latents: [{ index: 16, mode: "zero" }] })).rejects.toThrow(/latents\[0\]\.index: latent 16 is out of range: SAE "s" has 16 latents/);
    await expect(fails({ sae: "s", latents: clamp, when: { latent: 99, threshold: 0 } })).rejects.toThrow(/when\.latent: latent 99 is out of range/);
  });
  test("an SAE of another width is refused with both numbers", async () => {
    const narrow = randomSae({ architecture: "relu", dIn: 32, dSae: 8 });
    await expect(fails({ sae: "s", point: POINT, latents: clamp }, store(narrow))).rejects.toThrow(/sae: SAE "s" reads vectors of 32 values \(d_in\); the model's residual has 64/);
  });
  test("the SAE's own point is the default; another point is refused unless overridden; none at all must be given", async () => {
    const run = await runPlugin(saeClamp({ sae: "s", latents: clamp }), { artifacts: arts(), maxTokens: 1 });
    expect(run.changed.map((t) => t.point)).toEqual([POINT]);
    await expect(fails({ sae: "s", point: "resid_post.3", latents: clamp })).rejects.toThrow(/point: SAE "s" was trained at resid_post.2 \(blocks.2.hook_resid_post\), not resid_post.3; set overridePoint: true/);
    const moved = await runPlugin(saeClamp({ sae: "s", point: "resid_post.3", overridePoint: true, latents: clamp }), { artifacts: arts(), maxTokens: 1 });
    expect(moved.changed.map((t) => t.point)).toEqual(["resid_post.3"]);
    const anywhere = randomSae({ architecture: "relu", dIn: d, dSae: 8 });
    await expect(fails({ sae: "s", latents: clamp }, store(anywhere))).rejects.toThrow(/point: SAE "s" names no point/);
    await expect(fails({ sae: "s", point: "resid_post.*", latents: clamp })).rejects.toThrow(/point: "resid_post.\*" is 5 points; an SAE reads one/);
  });
  test("values: a mode without its value, zero with one, a latent twice, a product that overflows float32, topk on a ReLU SAE", async () => {
    expect(() => saeClamp({ sae: "s", latents: [{ index: 1, mode: "clamp" }] })).toThrow(/need a value/);
    expect(() => saeClamp({ sae: "s", latents: [{ index: 1, mode: "zero", value: 1 }] })).toThrow(/"zero" takes none/);
    await expect(fails({ sae: "s", latents: [...clamp, { index: 1, mode: "zero" }] })).rejects.toThrow(/latents\[1\]\.index: latent 1 is already steered by latents\[0\]/);
    await expect(fails({ sae: "s", latents: [{ index: 1, mode: "clamp", value: 1e39 }] })).rejects.toThrow(/latents\[0\]\.value: 1e\+39 times latent 1's decoder row .* overflows float32/);
    await expect(fails({ sae: "s", latents: clamp, topk: "approximate" })).rejects.toThrow(/topk: applies to TopK SAEs; SAE "s" is relu/);
  });
});

describe("sae-clamp on llama.cpp", () => {
  let llama: Model | undefined;
  afterAll(() => llama?.dispose());

  test("the same steered tokens, and the same recorded activations, as the reference backend", async () => {
    llama = await openModel(DEFAULT_MODEL_PATH, { contextLength: 128, threads: 1 });
    const reference = await loadTestModel();
    const sae = randomSae({ architecture: "jumprelu", dIn: d, dSae: 64, normalization: { kind: "constant_norm_rescale" }, seed: 13 });
    const artifacts = store(sae);
    const runOn = async (model: Model) => {
      const records: LatentRecord[] = [];
      const result = await generate(model, {
        prompt: "Once upon a time",
        maxTokens: 24,
        temperature: 0,
        artifacts,
        plugins: [
          saeClamp({ sae: "s", point: POINT, latents: [{ index: 7, mode: "clamp", value: 6 }, { index: 20, mode: "zero" }], positions: "generated" }),
          saeLatents({ sae: "s", point: POINT, latents: [7, 20, 33], onRecord: (r) => records.push(r) }),
        ],
      });
      return { tokens: result.tokens, records };
    };
    const plain = await generate(reference, { prompt: "Once upon a time", maxTokens: 24, temperature: 0 });
    const a = await runOn(reference);
    const b = await runOn(llama);
    expect(a.tokens).not.toEqual(plain.tokens); // the steering did something
    expect(b.tokens).toEqual(a.tokens);
    expect(b.records.map((r) => [r.step, r.position, r.token])).toEqual(a.records.map((r) => [r.step, r.position, r.token]));
    for (let i = 0; i < a.records.length; i++) {
      for (const k of ["7", "20", "33"]) expect(Math.abs(b.records[i]!.activations[k]! - a.records[i]!.activations[k]!)).toBeLessThan(2e-2);
    }
  });
});
