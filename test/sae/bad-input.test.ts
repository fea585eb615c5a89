/**
 * Damaged or unsupported SAE directories: each is a SteerkitError with a clear message (never a
 * crash, never a hang), INVALID_MODEL_FILE for a damaged weights file, INVALID_ARTIFACT otherwise.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SteerkitError } from "../../src/core/errors.ts";
import { loadSae } from "../../src/sae/load.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/sae");
const tmp = mkdtempSync(join(tmpdir(), "steerkit-bad-sae-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
/** A fresh copy of a fixture directory to damage. */
function copy(fixture: string, name = `c${n++}`): string {
  const d = join(tmp, name);
  cpSync(join(FIXTURES, fixture), d, { recursive: true });
  return d;
}
function editJson(path: string, edit: (o: Record<string, unknown>) => void) {
  const o = JSON.parse(readFileSync(path, "utf8"));
  edit(o);
  writeFileSync(path, JSON.stringify(o));
}
/** Rewrite a safetensors file's header (same data). */
function editHeader(path: string, edit: (h: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>) => void) {
  const buf = readFileSync(path);
  const len = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + len).toString());
  edit(header);
  const text = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.length));
  writeFileSync(path, Buffer.concat([prefix, text, buf.subarray(8 + len)]));
}

function error(dir: string, options = {}): SteerkitError {
  try {
    loadSae(dir, { label: "the SAE", ...options });
  } catch (e) {
    if (!(e instanceof SteerkitError)) throw new Error(`not a SteerkitError: ${e}`);
    return e;
  }
  throw new Error("loaded without error");
}

const REAL = "saelens-v6-jumprelu-128x512";

describe("bad SAE input", () => {
  test("a missing tensor is named with its file", () => {
    const d = copy(REAL);
    editHeader(join(d, "sae_weights.safetensors"), (h) => delete h.threshold);
    const e = error(d);
    expect(e.code).toBe("INVALID_ARTIFACT");
    expect(e.message).toBe('the SAE: sae_weights.safetensors: missing tensor "threshold" (a jumprelu SAE needs it)');
  });

  test("a shape that does not match the config", () => {
    const d = copy(REAL);
    editJson(join(d, "cfg.json"), (c) => (c.d_sae = 256));
    expect(error(d).message).toBe('the SAE: sae_weights.safetensors: tensor "W_enc" has shape [128, 512], expected [128, 256]');
  });

  test("a NaN weight is named with its tensor and index", () => {
    const d = copy(REAL);
    const p = join(d, "sae_weights.safetensors");
    const buf = readFileSync(p);
    const len = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + len).toString());
    const [begin] = header.b_dec.data_offsets as [number, number];
    buf.writeFloatLE(Number.NaN, 8 + len + begin + 4 * 5);
    writeFileSync(p, buf);
    const e = error(d);
    expect(e.code).toBe("INVALID_ARTIFACT");
    expect(e.message).toBe('the SAE: sae_weights.safetensors: tensor "b_dec" holds NaN at [5]');
  });

  test("an unknown architecture lists the supported ones", () => {
    const d = copy(REAL);
    editJson(join(d, "cfg.json"), (c) => (c.architecture = "matryoshka_hypersparse"));
    expect(error(d).message).toBe('the SAE: cfg.json: architecture "matryoshka_hypersparse" is not supported (supported: standard, relu, jumprelu, topk, gated)');
  });

  test("an unknown normalization, a bad k, an unsupported old activation", () => {
    const a = copy(REAL);
    editJson(join(a, "cfg.json"), (c) => (c.normalize_activations = "whiten"));
    expect(error(a).message).toContain('normalize_activations "whiten" is not one of none, expected_average_only_in, constant_norm_rescale, layer_norm');
    const b = copy("saelens-v6-topk-f16-layernorm");
    editJson(join(b, "cfg.json"), (c) => (c.k = 4096));
    expect(error(b).message).toContain("a topk SAE needs k in 1..48, got 4096");
    const c = copy("saelens-v3-relu-finetuning-scale");
    editJson(join(c, "cfg.json"), (o) => (o.activation_fn_str = "tanh-relu"));
    expect(error(c).message).toContain('activation_fn_str "tanh-relu" is not supported');
  });

  test("an unreadable safetensors header, a truncated weights file", () => {
    const a = copy(REAL);
    writeFileSync(join(a, "sae_weights.safetensors"), Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("garbage!")]));
    const ea = error(a);
    expect(ea.code).toBe("INVALID_MODEL_FILE");
    expect(ea.message).toStartWith("the SAE: sae_weights.safetensors: not a safetensors file: the header is not UTF-8 JSON");
    const b = copy(REAL);
    truncateSync(join(b, "sae_weights.safetensors"), 300_000);
    const eb = error(b);
    expect(eb.code).toBe("INVALID_MODEL_FILE");
    expect(eb.message).toContain("run past the end of the data");
  });

  test("a truncated or damaged params.npz", () => {
    const a = copy("gemma-scope-2b-pt-res", "gemma-scope-2b-pt-res");
    const p = join(a, "layer_3/width_1k/average_l0_9/params.npz");
    truncateSync(p, 2000);
    const e = error(join(a, "layer_3/width_1k/average_l0_9"));
    expect(e.code).toBe("INVALID_MODEL_FILE");
    expect(e.message).toBe("the SAE: params.npz: not an npz (zip) file: no end-of-central-directory record (truncated or not a zip)");
  });

  test("cfg.json missing, not JSON, or not an object", () => {
    const a = copy(REAL);
    rmSync(join(a, "cfg.json"));
    expect(error(a).message).toContain("not an SAE directory: expected cfg.json + sae_weights.safetensors (SAELens)");
    const b = copy(REAL);
    writeFileSync(join(b, "cfg.json"), "{ d_in: 128");
    expect(error(b).message).toContain("cfg.json is not valid JSON");
    const c = copy(REAL);
    writeFileSync(join(c, "cfg.json"), "[]");
    expect(error(c).message).toBe("the SAE: cfg.json must hold a JSON object");
    const d = copy(REAL);
    editJson(join(d, "cfg.json"), (o) => (o.d_in = "128"));
    expect(error(d).message).toBe('the SAE: cfg.json: d_in must be a positive integer, got "128"');
  });

  test("sparsify transcoders, skip connections and groupmax are refused", () => {
    for (const [field, value, message] of [
      ["transcode", true, "this is a transcoder"],
      ["skip_connection", true, "skip connections"],
      ["activation", "groupmax", 'activation "groupmax" is not supported'],
    ] as const) {
      const d = copy("sparsify-bf16");
      editJson(join(d, "layers.3/cfg.json"), (c) => (c[field] = value));
      expect(error(join(d, "layers.3")).message).toContain(message);
    }
  });

  test("Gemma Scope embedding SAEs and transcoders are refused; a missing threshold is named", () => {
    const a = join(tmp, "gemma-scope-2b-pt-res/embedding/width_1k/average_l0_9");
    cpSync(join(FIXTURES, "gemma-scope-2b-pt-res/layer_3/width_1k/average_l0_9"), a, { recursive: true });
    expect(error(a).message).toContain("embedding SAEs");
    const b = join(tmp, "gemma-scope-2b-pt-transcoders/layer_3/width_1k/average_l0_9");
    cpSync(join(FIXTURES, "gemma-scope-2b-pt-res/layer_3/width_1k/average_l0_9"), b, { recursive: true });
    expect(error(b).message).toContain("transcoders are not supported");
    const c = join(tmp, "g2/resid_post/layer_2_x");
    cpSync(join(FIXTURES, "gemma-scope-2-1b-pt/resid_post/layer_2_width_1k_l0_small"), c, { recursive: true });
    editHeader(join(c, "params.safetensors"), (h) => delete h.threshold);
    expect(error(c).message).toBe('the SAE: params.safetensors: missing tensor "threshold"');
  });

  test("a path that is nothing like an SAE", () => {
    expect(error(join(tmp, "nope")).message).toBe("the SAE: no such file or directory");
    expect(error(join(FIXTURES, "make-fixtures.py")).message).toContain("expected an SAE directory");
    expect(error(FIXTURES).message).toContain("choose one: saelens-v3-relu-finetuning-scale, saelens-v4-topk-flat");
    const empty = join(tmp, "empty");
    mkdirSync(empty);
    expect(error(empty).message).toContain("not an SAE directory");
  });
});
