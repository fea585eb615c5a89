import { describe, expect, test } from "bun:test";
import {
  allPoints, canonicalPoint, fromHiddenStatesIndex, fromLlamaCppDirection, fromLlamaCppTensor, fromTransformerLens,
  parsePoint, pointAt, pointIndex, pointName, toHiddenStatesIndex, toLlamaCppDirection, toLlamaCppTensor, toTransformerLens,
} from "../../src/core/sites.ts";

describe("one layer convention, explicit conversions", () => {
  test("resid_pre L is resid_post L-1; resid_pre 0 is the embeddings", () => {
    expect(canonicalPoint({ site: "resid_pre", layer: 3 }, 5)).toEqual({ site: "resid_post", layer: 2 });
    expect(canonicalPoint({ site: "resid_pre", layer: 0 }, 5)).toEqual({ site: "resid_pre", layer: 0 });
    expect(pointIndex({ site: "resid_pre", layer: 3 }, 5)).toBe(pointIndex({ site: "resid_post", layer: 2 }, 5));
    expect(() => canonicalPoint({ site: "resid_post", layer: 5 }, 5)).toThrow(/layer 5 of resid_post is outside 0..4/);
    expect(() => canonicalPoint({ site: "resid_side" as never, layer: 0 }, 5)).toThrow(/unknown hook site/);
  });
  test("dense indices run in forward order and invert", () => {
    const pts = allPoints(2);
    expect(pts.map(pointName)).toEqual(["resid_pre.0", "resid_mid.0", "resid_post.0", "resid_mid.1", "resid_post.1"]);
    pts.forEach((p, i) => {
      expect(pointIndex(p, 2)).toBe(i);
      expect(pointAt(i, 2)).toEqual(p);
    });
  });
  test("TransformerLens names map one to one", () => {
    expect(fromTransformerLens("blocks.4.hook_resid_post")).toEqual({ site: "resid_post", layer: 4 });
    expect(toTransformerLens({ site: "resid_mid", layer: 2 })).toBe("blocks.2.hook_resid_mid");
    expect(() => fromTransformerLens("blocks.4.hook_mlp_out")).toThrow(/not a TransformerLens residual hook/);
  });
  test("HF hidden_states[i] is the output of block i-1", () => {
    expect(fromHiddenStatesIndex(0)).toEqual({ site: "resid_pre", layer: 0 });
    expect(fromHiddenStatesIndex(5)).toEqual({ site: "resid_post", layer: 4 });
    expect(toHiddenStatesIndex({ site: "resid_post", layer: 4 })).toBe(5);
    expect(toHiddenStatesIndex({ site: "resid_pre", layer: 3 })).toBe(3);
    expect(() => toHiddenStatesIndex({ site: "resid_mid", layer: 1 })).toThrow(/no mid-block/);
  });
  test("llama.cpp direction.N and l_out-N are the output of block N", () => {
    expect(fromLlamaCppDirection("direction.3")).toEqual({ site: "resid_post", layer: 3 });
    expect(() => fromLlamaCppDirection("direction.0")).toThrow(/no direction.0/);
    expect(toLlamaCppDirection({ site: "resid_pre", layer: 4 }, 5)).toBe("direction.3");
    expect(() => toLlamaCppDirection({ site: "resid_post", layer: 0 }, 5)).toThrow(/cannot address block 0/);
    expect(fromLlamaCppTensor("l_out-2")).toEqual({ site: "resid_post", layer: 2 });
    expect(fromLlamaCppTensor("ffn_inp-2")).toEqual({ site: "resid_mid", layer: 2 });
    expect(toLlamaCppTensor({ site: "resid_pre", layer: 0 }, 5)).toBe("embd");
    expect(toLlamaCppTensor({ site: "resid_pre", layer: 1 }, 5)).toBe("l_out-0");
  });
  test("llama.cpp tensor names per architecture: Gemma's scaled embeddings and sa_out, GPT-2's inpL, phi3's unnamed sum", () => {
    expect(toLlamaCppTensor({ site: "resid_pre", layer: 0 }, 4, "gemma2")).toBe("inp_scaled");
    expect(toLlamaCppTensor({ site: "resid_mid", layer: 3 }, 4, "gemma3")).toBe("sa_out-3");
    expect(fromLlamaCppTensor("sa_out-3", "gemma2")).toEqual({ site: "resid_mid", layer: 3 });
    expect(() => fromLlamaCppTensor("ffn_inp-3", "gemma2")).toThrow(/of gemma2: "ffn_inp-3" \(expected inp_scaled, sa_out-N or l_out-N\)/);
    expect(toLlamaCppTensor({ site: "resid_pre", layer: 0 }, 4, "gpt2")).toBe("inpL");
    expect(fromLlamaCppTensor("inpL", "gpt2")).toEqual({ site: "resid_pre", layer: 0 });
    expect(fromLlamaCppTensor("embd", "qwen3")).toEqual({ site: "resid_pre", layer: 0 });
    expect(toLlamaCppTensor({ site: "resid_mid", layer: 1 }, 4, "phi3")).toBe("(unnamed ADD: attention output + l_out-0)");
    expect(() => fromLlamaCppTensor("ffn_inp-1", "phi3")).toThrow(/expected embd or l_out-N/);
    expect(toLlamaCppTensor({ site: "resid_post", layer: 2 }, 4, "gemma2")).toBe("l_out-2");
  });
  test("parsePoint", () => {
    expect(parsePoint("resid_mid.7")).toEqual({ site: "resid_mid", layer: 7 });
    expect(() => parsePoint("mid.7")).toThrow(/cannot parse/);
  });
});
