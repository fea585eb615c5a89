import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRng } from "../../src/core/sampling.ts";
import type { Sae, SaeArchitecture, SaeNormalization } from "../../src/sae/sae.ts";
import { pythonJson, saveSaelens } from "../../src/sae/save-saelens.ts";

/** The real SAELens 6.39 output (JumpReLU, d_in 128 x 512), shared by every SAE branch. */
const FIXTURE = join(import.meta.dir, "../fixtures/sae/saelens-v6-jumprelu-128x512"); // the real SAELens 6.39 output (PROVENANCE.md)
const dir = mkdtempSync(join(tmpdir(), "steerkit-saelens-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A minimal safetensors reader, independent of the writer: header JSON and F32 tensors. */
function readSafetensors(path: string) {
  const bytes = readFileSync(path);
  const n = Number(bytes.readBigUInt64LE(0));
  const raw = bytes.subarray(8, 8 + n).toString("utf8");
  const json = JSON.parse(raw) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const tensor = (name: string) => {
    const [s, e] = json[name]!.data_offsets;
    return new Float32Array(bytes.buffer.slice(bytes.byteOffset + 8 + n + s, bytes.byteOffset + 8 + n + e));
  };
  return { n, raw, json, tensor, size: bytes.length };
}

function randomSae(architecture: SaeArchitecture, dIn: number, dSae: number, normalization: SaeNormalization = { kind: "none" }): Sae {
  const rng = createRng(7);
  const r = (n: number) => Float32Array.from({ length: n }, () => rng() * 2 - 1);
  return {
    info: {
      family: "saelens", architecture, dIn, dSae, k: architecture === "topk" ? 8 : null, hookName: null,
      point: { site: "resid_post", layer: 2 }, dtype: "float32", applyBDecToInput: true, normalization,
    },
    encoder: r(dSae * dIn), encoderBias: r(dSae), decoder: r(dSae * dIn), decoderBias: r(dIn),
    threshold: architecture === "jumprelu" ? r(dSae).map(Math.abs) : null, gated: null,
  };
}

const typeOf = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : typeof v);

describe("saveSaelens", () => {
  test("a JumpReLU SAE is written with the real SAELens file's cfg keys, order, types, tensor names, dtypes, shapes and layout", () => {
    const sae = randomSae("jumprelu", 128, 512);
    const out = join(dir, "jumprelu");
    saveSaelens(out, sae, { metadata: { model_name: "stories260K" } });
    const realCfg = JSON.parse(readFileSync(join(FIXTURE, "cfg.json"), "utf8"));
    const ourText = readFileSync(join(out, "cfg.json"), "utf8");
    const ourCfg = JSON.parse(ourText);
    expect(Object.keys(ourCfg)).toEqual(Object.keys(realCfg));
    for (const key of Object.keys(realCfg)) expect([key, typeOf(ourCfg[key])]).toEqual([key, typeOf(realCfg[key])]);
    for (const key of ["dtype", "normalize_activations", "device", "d_sae", "d_in", "reshape_activations", "apply_b_dec_to_input", "architecture"]) {
      expect([key, ourCfg[key]]).toEqual([key, realCfg[key]]);
    }
    for (const key of Object.keys(realCfg.metadata)) expect(typeOf(ourCfg.metadata[key])).toBe(typeOf(realCfg.metadata[key]));
    expect(ourCfg.metadata.hook_name).toBe("blocks.2.hook_resid_post");
    expect(ourCfg.metadata.model_name).toBe("stories260K");
    // Python's json.dump separators, like the real file.
    expect(ourText.includes('", "') && !ourText.includes('","')).toBe(true);
    expect(readFileSync(join(FIXTURE, "cfg.json"), "utf8").includes('", "')).toBe(true);

    const real = readSafetensors(join(FIXTURE, "sae_weights.safetensors"));
    const ours = readSafetensors(join(out, "sae_weights.safetensors"));
    expect(ours.raw).toBe(real.raw); // same names, order, dtypes, shapes, offsets and padding
    expect(ours.size).toBe(real.size);
    expect(existsSync(join(out, "sparsity.safetensors"))).toBe(false);

    // Values: W_enc is input-major (transposed from our latent-major encoder); the rest as stored.
    const wEnc = ours.tensor("W_enc");
    for (const [i, j] of [[0, 0], [3, 17], [511, 127], [200, 64]] as const) expect(wEnc[j * 512 + i]).toBe(sae.encoder[i * 128 + j]!);
    expect([...ours.tensor("W_dec")]).toEqual([...sae.decoder]);
    expect([...ours.tensor("b_enc")]).toEqual([...sae.encoderBias]);
    expect([...ours.tensor("b_dec")]).toEqual([...sae.decoderBias]);
    expect([...ours.tensor("threshold")]).toEqual([...sae.threshold!]);
  });

  test("TopK: architecture topk with k; ReLU is SAELens's standard; sparsity file like SAELens's", () => {
    const topk = randomSae("topk", 64, 256);
    const out = join(dir, "topk");
    const freq = Float32Array.from({ length: 256 }, (_, i) => (i === 3 ? 0 : i / 256));
    saveSaelens(out, topk, { firingFrequency: freq });
    const cfg = JSON.parse(readFileSync(join(out, "cfg.json"), "utf8"));
    expect(cfg.architecture).toBe("topk");
    expect(cfg.k).toBe(8);
    expect(cfg.rescale_acts_by_decoder_norm).toBe(false);
    expect(Object.keys(cfg).at(-1)).toBe("architecture");
    const w = readSafetensors(join(out, "sae_weights.safetensors"));
    expect(Object.keys(w.json)).toEqual(["W_dec", "W_enc", "b_dec", "b_enc"]);
    expect(w.json.W_enc!.shape).toEqual([64, 256]);
    const realSparsity = readSafetensors(join(FIXTURE, "sparsity.safetensors"));
    const sparsity = readSafetensors(join(out, "sparsity.safetensors"));
    expect(Object.keys(sparsity.json)).toEqual(Object.keys(realSparsity.json));
    expect(sparsity.json.sparsity!.dtype).toBe("F32");
    expect(sparsity.tensor("sparsity")[3]).toBeCloseTo(-10, 5);
    expect(sparsity.tensor("sparsity")[128]).toBeCloseTo(Math.log10(0.5), 5);

    saveSaelens(join(dir, "relu"), randomSae("relu", 8, 16));
    expect(JSON.parse(readFileSync(join(dir, "relu", "cfg.json"), "utf8")).architecture).toBe("standard");
  });

  test("a stored input scale is folded into the weights (same reconstruction on raw inputs) and written as none", () => {
    const sae = randomSae("relu", 4, 6, { kind: "scale", factor: 2 });
    saveSaelens(join(dir, "scaled"), sae);
    const cfg = JSON.parse(readFileSync(join(dir, "scaled", "cfg.json"), "utf8"));
    expect(cfg.normalize_activations).toBe("none");
    const w = readSafetensors(join(dir, "scaled", "sae_weights.safetensors"));
    expect(w.tensor("W_enc")[1 * 6 + 2]).toBeCloseTo(sae.encoder[2 * 4 + 1]! * 2, 6);
    expect(w.tensor("W_dec")[5]).toBeCloseTo(sae.decoder[5]! / 2, 6);
    expect(w.tensor("b_dec")[0]).toBeCloseTo(sae.decoderBias[0]! / 2, 6);
  });

  test("bad SAEs are refused before anything is written; JSON matches Python's json.dump", () => {
    const bad = { ...randomSae("relu", 4, 6), encoder: new Float32Array(3) };
    expect(() => saveSaelens(join(dir, "bad"), bad)).toThrow(/encoder must be a Float32Array of 24 values/);
    expect(existsSync(join(dir, "bad"))).toBe(false);
    expect(pythonJson({ a: [1, 2.5, null], b: { c: "é" }, d: true })).toBe('{"a": [1, 2.5, null], "b": {"c": "\\u00e9"}, "d": true}');
  });
});

describe("round trip through the loader", () => {
  test("what saveSaelens writes, loadSae reads back bit for bit, for every architecture it writes", async () => {
    const { loadSae } = await import("../../src/sae/load.ts");
    for (const architecture of ["relu", "jumprelu", "topk"] as const) {
      const sae = randomSae(architecture, 16, 48);
      const out = join(dir, `roundtrip-${architecture}`);
      saveSaelens(out, sae);
      const back = await loadSae(out);
      expect(back.info).toMatchObject({ architecture, dIn: 16, dSae: 48, k: sae.info.k, point: sae.info.point, applyBDecToInput: sae.info.applyBDecToInput });
      for (const key of ["encoder", "encoderBias", "decoder", "decoderBias"] as const) expect(back[key]).toEqual(sae[key]);
      if (architecture === "jumprelu") expect(back.threshold).toEqual(sae.threshold);
    }
  });
});
