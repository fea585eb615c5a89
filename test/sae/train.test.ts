import { describe, expect, test } from "bun:test";
import { createRng } from "../../src/core/sampling.ts";
import { decode, encode, newRowScale } from "../../src/sae/sae.ts";
import { evaluateSae } from "../../src/sae/evaluate.ts";
import { geometricMedian } from "../../src/sae/train-init.ts";
import { trainSae } from "../../src/sae/train.ts";

/**
 * Rows that are sparse by construction: an offset plus 2 of 24 random unit directions in d = 16,
 * with positive coefficients. A working SAE reconstructs them far better than the mean does.
 */
function sparseData(rows: number, seed = 11, d = 16, atoms = 24, active = 2) {
  const rng = createRng(seed);
  const dict = new Float32Array(atoms * d);
  for (let a = 0; a < atoms; a++) {
    let ss = 0;
    for (let j = 0; j < d; j++) ss += (dict[a * d + j] = rng() * 2 - 1) ** 2;
    for (let j = 0; j < d; j++) dict[a * d + j]! /= Math.sqrt(ss);
  }
  const data = new Float32Array(rows * d);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < d; j++) data[r * d + j] = 3 + 0.5 * j / d;
    for (let s = 0; s < active; s++) {
      const a = Math.floor(rng() * atoms);
      const c = 1 + 4 * rng();
      for (let j = 0; j < d; j++) data[r * d + j]! += c * dict[a * d + j]!;
    }
  }
  return { data, d };
}

describe("trainSae", () => {
  const { data, d } = sparseData(4000);

  test("TopK learns sparse data: held-out FVU far below 1, L0 exactly k, decoder rows unit norm", () => {
    const { sae, stats } = trainSae(data, d, { architecture: "topk", dSae: 48, k: 2, steps: 400, batch: 128, seed: 1, lr: 3e-3 });
    expect(stats.fvu).toBeLessThan(0.15);
    expect(stats.l0).toBe(2);
    expect(stats.evalRows).toBe(400);
    expect(stats.tokens).toBe(400 * 128);
    for (let i = 0; i < 48; i++) {
      let ss = 0;
      for (let j = 0; j < d; j++) ss += sae.decoder[i * d + j]! ** 2;
      expect(Math.abs(Math.sqrt(ss) - 1)).toBeLessThan(1e-5);
    }
    expect(sae.info).toMatchObject({ architecture: "topk", dIn: 16, dSae: 48, k: 2, applyBDecToInput: true, normalization: { kind: "none" } });
  });

  test("the trainer's FVU is what sae.ts's dense reference encode/decode gives", () => {
    const { sae, stats } = trainSae(data, d, { architecture: "topk", dSae: 32, k: 3, steps: 100, batch: 128, seed: 2 });
    const evalRows = data.subarray((4000 - stats.evalRows) * d);
    const rows = evalRows.length / d;
    const mean = new Float64Array(d);
    for (let r = 0; r < rows; r++) for (let j = 0; j < d; j++) mean[j]! += evalRows[r * d + j]! / rows;
    const acts = new Float32Array(32), scratch = new Float32Array(d), out = new Float32Array(d);
    let sse = 0, sst = 0, active = 0;
    for (let r = 0; r < rows; r++) {
      const x = evalRows.subarray(r * d, (r + 1) * d);
      const row = newRowScale();
      encode(sae, x, acts, scratch, row);
      decode(sae, acts, out, row);
      for (let j = 0; j < d; j++) {
        sse += (x[j]! - out[j]!) ** 2;
        sst += (x[j]! - mean[j]!) ** 2;
      }
      for (const a of acts) if (a > 0) active++;
    }
    expect(stats.fvu).toBeCloseTo(sse / sst, 4);
    expect(stats.l0).toBeCloseTo(active / rows, 6);
  });

  test("ReLU with L1: FVU below 1, and a larger L1 coefficient gives a sparser code", () => {
    const run = (l1: number) => trainSae(data, d, { architecture: "relu", dSae: 48, l1, steps: 300, batch: 128, seed: 1, lr: 3e-3 }).stats;
    const weak = run(0.05);
    const strong = run(1);
    expect(weak.fvu).toBeLessThan(0.3);
    expect(strong.fvu).toBeLessThan(1);
    expect(strong.l0).toBeLessThan(weak.l0);
  });

  test("the same seed gives identical weights; another seed does not", () => {
    const opts = { architecture: "topk" as const, dSae: 32, k: 2, steps: 50, batch: 64, seed: 5 };
    const a = trainSae(data, d, opts).sae;
    const b = trainSae(data, d, opts).sae;
    const c = trainSae(data, d, { ...opts, seed: 6 }).sae;
    for (const key of ["encoder", "encoderBias", "decoder", "decoderBias"] as const) {
      expect(Buffer.from(a[key].buffer).equals(Buffer.from(b[key].buffer))).toBe(true);
    }
    expect(Buffer.from(a.decoder.buffer).equals(Buffer.from(c.decoder.buffer))).toBe(false);
  });

  test("dead latents are tracked; AuxK trains them only while some are dead; ReLU's dead latents are resampled", () => {
    // A short dead window and k = 1: some of 96 latents never win a slot within it.
    const base = { architecture: "topk" as const, dSae: 96, k: 1, steps: 200, batch: 32, seed: 3, deadTokens: 1000, lr: 3e-3 };
    const without = trainSae(data, d, { ...base, auxKCoefficient: 0 });
    const withAux = trainSae(data, d, { ...base, auxKCoefficient: 1 / 32 });
    expect(without.stats.deadLatents).toBeGreaterThan(0);
    expect(Buffer.from(withAux.sae.decoder.buffer).equals(Buffer.from(without.sae.decoder.buffer))).toBe(false);
    // With a dead window longer than the run nothing is ever dead, so AuxK never applies: identical weights.
    const long = { ...base, deadTokens: 1_000_000 };
    const a = trainSae(data, d, { ...long, auxKCoefficient: 0 });
    const b = trainSae(data, d, { ...long, auxKCoefficient: 1 / 32 });
    expect(a.stats.deadLatents).toBe(0);
    expect(Buffer.from(a.sae.decoder.buffer).equals(Buffer.from(b.sae.decoder.buffer))).toBe(true);
    const relu = trainSae(data, d, { architecture: "relu", dSae: 96, l1: 20, steps: 300, batch: 64, seed: 3, deadTokens: 1000, resampleEvery: 50 }).stats;
    expect(relu.resampled).toBeGreaterThan(0);
  });

  test("evaluateSae agrees with the training summary, and refuses architectures it cannot run", () => {
    const { sae, stats } = trainSae(data, d, { architecture: "relu", dSae: 16, steps: 20, batch: 64, seed: 1, evalFraction: 0 });
    expect(stats.evalRows).toBe(0);
    const ev = evaluateSae(sae, data);
    expect(ev.fvu).toBeCloseTo(stats.fvu, 10);
    expect(() => evaluateSae({ ...sae, info: { ...sae.info, architecture: "jumprelu" } }, data)).toThrow(/jumprelu SAEs are not supported/);
  });

  test("the geometric median ignores a far outlier the mean follows", () => {
    const pts = new Float32Array(101 * 2);
    for (let i = 0; i < 100; i++) {
      pts[i * 2] = Math.cos(i) * 0.1;
      pts[i * 2 + 1] = Math.sin(i) * 0.1;
    }
    pts[200] = 1000;
    pts[201] = 1000;
    const m = geometricMedian(pts, 2, createRng(1));
    expect(Math.hypot(m[0]!, m[1]!)).toBeLessThan(0.05);
  });

  test("bad options are refused with the option's name", () => {
    expect(() => trainSae(data, d, { architecture: "topk", dSae: 8, seed: 1 })).toThrow(/a TopK SAE needs k/);
    expect(() => trainSae(data, d, { architecture: "topk", dSae: 8, k: 9, seed: 1 })).toThrow(/k \(9\) must be <= dSae \(8\)/);
    expect(() => trainSae(data, d, { architecture: "gelu" as never, dSae: 8, seed: 1 })).toThrow(/architecture must be "topk" or "relu"/);
    expect(() => trainSae(data.subarray(0, 17), d, { architecture: "relu", dSae: 8, seed: 1 })).toThrow(/not a whole number of rows of 16/);
    expect(() => trainSae(Float32Array.from([NaN, 1]), 2, { architecture: "relu", dSae: 2, seed: 1 })).toThrow(/data\[0\] is NaN/);
    expect(() => trainSae(data, d, { architecture: "relu", dSae: 8, seed: 1, steps: 10, epochs: 1 })).toThrow(/steps or epochs, not both/);
  });
});
