import { describe, expect, test } from "bun:test";
import { latentPlan, latentReader } from "../../src/sae/latents.ts";
import { encode, encoderInput, newRowScale, preActivation, type Sae, type SaeArchitecture, type SaeNormalization } from "../../src/sae/sae.ts";
import { gaussian, randomSae } from "./make-sae.ts";

const d = 24;
const dSae = 40;
const norms: SaeNormalization[] = [
  { kind: "none" },
  { kind: "scale", factor: 0.5 },
  { kind: "constant_norm_rescale" },
  { kind: "layer_norm", eps: 1e-5 },
];
const rows = (() => {
  const g = gaussian(3);
  return Float32Array.from({ length: 6 * d }, (_, i) => g() * 2 + (i % 5 === 0 ? 1 : 0));
})();

/** Equal up to float32 rounding of the reference's normalized input (relative 1e-5). */
function close(a: number, b: number): void {
  expect(Math.abs(a - b)).toBeLessThanOrEqual(1e-5 * Math.max(1, Math.abs(b)));
}

function dense(sae: Sae, off: number): { acts: Float32Array; scale: number; shift: number } {
  const acts = new Float32Array(sae.info.dSae);
  const row = newRowScale();
  encode(sae, rows.subarray(off, off + d), acts, new Float32Array(d), row);
  return { acts, ...row };
}

describe("latent reader", () => {
  for (const architecture of ["relu", "jumprelu", "gated", "topk"] as SaeArchitecture[]) {
    for (const normalization of norms) {
      test(`${architecture}, ${normalization.kind}: chosen latents and the row scale equal the dense reference`, () => {
        const sae = randomSae({ architecture, dIn: d, dSae, k: 6, normalization, seed: 5 });
        // TopK keeps 6 of 40 per row: read more latents so some of the chosen are active.
        const chosen = architecture === "topk" ? Array.from({ length: 30 }, (_, i) => 39 - i) : [0, 7, 39, 12];
        const reader = latentReader(latentPlan(sae, chosen, "exact"));
        const out = new Float64Array(chosen.length);
        const row = newRowScale();
        let active = 0;
        for (let off = 0; off < rows.length; off += d) {
          reader.read(rows, off, out, row);
          const ref = dense(sae, off);
          expect(row.scale).toBeCloseTo(ref.scale, 5);
          expect(row.shift).toBeCloseTo(ref.shift, 5);
          chosen.forEach((i, c) => {
            close(out[c]!, ref.acts[i]!);
            if (ref.acts[i]! > 0) active++;
          });
        }
        expect(active).toBeGreaterThan(0); // the comparison covered active latents, not only zeros
      });
    }
  }

  test("every latent at once (discovery) equals the dense encode, TopK included", () => {
    for (const architecture of ["relu", "topk"] as SaeArchitecture[]) {
      const sae = randomSae({ architecture, dIn: d, dSae, k: 5, seed: 8 });
      const all = Array.from({ length: dSae }, (_, i) => i);
      const reader = latentReader(latentPlan(sae, all));
      const out = new Float64Array(dSae);
      for (let off = 0; off < rows.length; off += d) {
        reader.read(rows, off, out, newRowScale());
        const ref = dense(sae, off).acts;
        for (let i = 0; i < dSae; i++) close(out[i]!, ref[i]!);
        if (architecture === "topk") expect(out.filter((x) => x > 0).length).toBeLessThanOrEqual(5);
      }
    }
  });

  test("TopK approximate is ReLU of the pre-activation: it differs from exact only for positive latents outside the top k", () => {
    const sae = randomSae({ architecture: "topk", dIn: d, dSae, k: 3, seed: 11 });
    const all = Array.from({ length: dSae }, (_, i) => i);
    const exact = latentReader(latentPlan(sae, all, "exact"));
    const approx = latentReader(latentPlan(sae, all, "approximate"));
    const a = new Float64Array(dSae), b = new Float64Array(dSae);
    const input = new Float32Array(d);
    let differed = 0;
    for (let off = 0; off < rows.length; off += d) {
      exact.read(rows, off, a, newRowScale());
      approx.read(rows, off, b, newRowScale());
      encoderInput(sae, rows.subarray(off, off + d), input, newRowScale());
      for (let i = 0; i < dSae; i++) {
        const pre = preActivation(sae, input, i);
        expect(b[i]!).toBeCloseTo(Math.max(0, pre), 4);
        if (a[i]! > 0) expect(b[i]!).toBeCloseTo(a[i]!, 4);
        else if (b[i]! > 0) differed++;
      }
    }
    expect(differed).toBeGreaterThan(0);
  });

  test("ties at the k-th value keep the lowest indices, as keepTopK does", () => {
    // Encoder rows equal for latents 2..5, so their pre-activations tie; k = 3 keeps latent 0 and two of the tied.
    const sae = randomSae({ architecture: "topk", dIn: 4, dSae: 6, k: 3, seed: 2, applyBDecToInput: false });
    sae.encoder.set([5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
    sae.encoderBias.fill(0);
    const reader = latentReader(latentPlan(sae, [0, 1, 2, 3, 4, 5]));
    const out = new Float64Array(6);
    reader.read(Float32Array.of(1, 1, 1, 1), 0, out, newRowScale());
    expect(Array.from(out)).toEqual([5, 0, 4, 4, 0, 0]);
    const ref = new Float32Array(6);
    encode(sae, [1, 1, 1, 1], ref, new Float32Array(4));
    expect(Array.from(ref)).toEqual([5, 0, 4, 4, 0, 0]);
  });

  test("an index outside the SAE is a RangeError", () => {
    expect(() => latentPlan(randomSae({ architecture: "relu", dIn: d, dSae }), [dSae])).toThrow(RangeError);
  });
});
