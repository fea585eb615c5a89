import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import type { Capability, ModelInfo } from "../../src/core/backend.ts";
import { applyAffine, checkCapabilities, compileChain } from "../../src/core/chain.ts";
import { compose } from "../../src/core/compose.ts";
import { CapabilityError, PluginError } from "../../src/core/errors.ts";
import { definePlugin, type AffineForm, type Enforce } from "../../src/core/plugin.ts";
import { tensor } from "../../src/core/tensor.ts";

// Model metadata only: the chain is pure logic and needs no weights. Backends are tested elsewhere.
const info: ModelInfo = {
  backend: "meta-only", architecture: "llama", name: "shape", nLayers: 3, dModel: 4, vocabSize: 8,
  contextLength: 64, bosToken: 1, eosTokens: [2], chatTemplate: null,
};
const ALL: Capability[] = ["residual:read", "residual:write", "logits:read", "logits:write"];
const model = { info, capabilities: ALL, detokenize: (t: ArrayLike<number>) => Array.from(t).join(" ") };

function tracer(name: string, log: string[], enforce?: Enforce) {
  return definePlugin({
    name, enforce, options: v.object({}), needs: ["residual:write", "logits:write"],
    create: () => ({
      points: [{ site: "resid_post", layer: 1 }],
      onResidual: () => void log.push(`${name}:residual`),
      onLogits: () => void log.push(`${name}:logits`),
      onRequest: async (_c, next) => { log.push(`${name}:start`); await next(); log.push(`${name}:end`); },
    }),
  })({});
}

const adder = definePlugin({
  name: "adder",
  options: v.object({ layer: v.number(), site: v.optional(v.picklist(["resid_pre", "resid_mid", "resid_post"]), "resid_post"), c: v.array(v.number()), inPlace: v.optional(v.boolean(), true) }),
  needs: ["residual:write"],
  create: (o, { model }) => {
    const c = Float32Array.from({ length: model.dModel }, (_, i) => o.c[i % o.c.length]!);
    return {
      points: [{ site: o.site, layer: o.layer }],
      onResidual(x) {
        const out = o.inPlace ? x : tensor(new Float32Array(x.data), x.dims);
        for (let i = 0; i < out.data.length; i++) out.data[i]! += c[i % c.length]!;
        return o.inPlace ? undefined : out;
      },
      affine: () => ({ rank: 0, U: null, V: null, c }),
    };
  },
});

const ablate = definePlugin({
  name: "ablate",
  options: v.object({ layer: v.number(), dir: v.array(v.number()) }),
  needs: ["residual:write"],
  create: (o) => {
    const r = new Float32Array(o.dir);
    const neg = r.map((x) => -x);
    return {
      points: [{ site: "resid_post", layer: o.layer }],
      onResidual(x) {
        const d = r.length;
        for (let off = 0; off < x.data.length; off += d) {
          let s = 0;
          for (let i = 0; i < d; i++) s += x.data[off + i]! * r[i]!;
          for (let i = 0; i < d; i++) x.data[off + i]! -= s * r[i]!;
        }
      },
      affine: (): AffineForm => ({ rank: 1, U: r, V: neg, c: null }),
    };
  },
});

describe("chain order", () => {
  test("pre, then registration order, then post — for residual, logits and middleware alike", async () => {
    const log: string[] = [];
    const chain = compileChain([tracer("a", log, "post"), tracer("b", log), tracer("c", log, "pre"), tracer("d", log)], model);
    expect(chain.plugins.map((p) => p.name)).toEqual(["c", "b", "d", "a"]);
    chain.residual.run({ site: "resid_post", layer: 1 }, tensor(new Float32Array(4), [1, 4]), [0], [7]);
    chain.logits(new Float32Array(8), 0);
    await chain.request({} as never, async () => void log.push("generate"));
    expect(log).toEqual([
      "c:residual", "b:residual", "d:residual", "a:residual",
      "c:logits", "b:logits", "d:logits", "a:logits",
      "c:start", "b:start", "d:start", "a:start", "generate", "a:end", "d:end", "b:end", "c:end",
    ]);
  });
  test("resid_pre L and resid_post L-1 are one point, run once in chain order", () => {
    const chain = compileChain([adder({ layer: 2, site: "resid_pre", c: [1] }), adder({ layer: 1, c: [10] })], model);
    expect(chain.residual.points).toEqual([{ site: "resid_post", layer: 1 }]);
    const x = tensor(new Float32Array(4), [1, 4]);
    chain.residual.run({ site: "resid_post", layer: 1 }, x, [0], [7]);
    expect([...x.data]).toEqual([11, 11, 11, 11]);
  });
});

describe("edits", () => {
  test("in-place edits and returned replacements both reach the backend", () => {
    const chain = compileChain([adder({ layer: 0, c: [1, 2, 3, 4] }), adder({ layer: 0, c: [1], inPlace: false })], model);
    const x = tensor(new Float32Array([1, 1, 1, 1, 0, 0, 0, 0]), [2, 4]);
    const out = chain.residual.run({ site: "resid_post", layer: 0 }, x, [5, 6], [7, 8]);
    expect(out).not.toBe(x); // replaced by the second plugin
    expect([...x.data]).toEqual([2, 3, 4, 5, 1, 2, 3, 4]); // first plugin edited in place
    expect([...out.data]).toEqual([3, 4, 5, 6, 2, 3, 4, 5]);
  });
  test("points nobody hooked return the input untouched", () => {
    const chain = compileChain([adder({ layer: 0, c: [1] })], model);
    const x = tensor(new Float32Array(4), [1, 4]);
    expect(chain.residual.run({ site: "resid_mid", layer: 2 }, x, [0], [7])).toBe(x);
    expect([...x.data]).toEqual([0, 0, 0, 0]);
  });
  test("composed affine edits equal running the hooks one after another", () => {
    const s = Math.SQRT1_2;
    const plugins = [adder({ layer: 1, c: [0.5, -1, 2, 0] }), ablate({ layer: 1, dir: [s, s, 0, 0] }), adder({ layer: 1, c: [1, 1, 1, 1] }), ablate({ layer: 1, dir: [0, 0, 0.6, 0.8] })];
    const js = compileChain(plugins, model, { fastPath: false });
    const fast = compileChain(plugins, model);
    expect(js.residual.affine.size).toBe(0);
    const edit = fast.residual.affine.get("resid_post.1")!;
    expect(edit.rank).toBe(2);
    const data = [0.3, -1.2, 2.5, 4, 1, 2, 3, 4];
    const a = tensor(new Float32Array(data), [2, 4]);
    const b = tensor(new Float32Array(data), [2, 4]);
    js.residual.run({ site: "resid_post", layer: 1 }, a, [0, 1], [7, 8]);
    applyAffine(edit, b);
    for (let i = 0; i < data.length; i++) expect(b.data[i]).toBeCloseTo(a.data[i]!, 5);
  });
  test("a point with any non-affine hook gets no affine edit", () => {
    const log: string[] = [];
    const chain = compileChain([adder({ layer: 1, c: [1] }), tracer("t", log)], model);
    expect(chain.residual.affine.has("resid_post.1")).toBe(false);
  });
});

describe("capabilities are checked before anything runs", () => {
  test("a missing capability names plugin, backend and capability", () => {
    const err = (() => {
      try {
        checkCapabilities([adder({ layer: 0, c: [1] })], { name: "logits-only", capabilities: ["logits:read", "logits:write"] });
      } catch (e) {
        return e as CapabilityError;
      }
    })();
    expect(err).toBeInstanceOf(CapabilityError);
    expect(err!.message).toBe('plugin "adder" needs residual:write, which backend "logits-only" does not offer');
    expect(() => compileChain([adder({ layer: 0, c: [1] })], { ...model, capabilities: ["logits:read"] })).toThrow(CapabilityError);
  });
  test("hooks that were not declared in needs, and layers out of range, fail at compile time", () => {
    const sneaky = definePlugin({ name: "sneaky", options: v.object({}), needs: ["residual:read"], create: () => ({ onLogits: () => {} }) });
    expect(() => compileChain([sneaky({})], model)).toThrow(/sneaky.*does not declare logits/);
    expect(() => compileChain([adder({ layer: 7, c: [1] })], model)).toThrow(/adder.*layer 7 of resid_post is outside 0..2/);
  });
});

describe("a throwing plugin", () => {
  const boom = definePlugin({
    name: "boom", options: v.object({}), needs: ["residual:write", "logits:write"],
    create: () => ({ points: [{ site: "resid_mid", layer: 0 }], onResidual: () => { throw new Error("kaput"); }, onLogits: () => { throw new Error("bad logits"); } }),
  });
  test("in the forward pass: the error is kept, names plugin and hook, and the tensor comes back unchanged", () => {
    const chain = compileChain([boom({})], model);
    const x = tensor(new Float32Array([1, 2, 3, 4]), [1, 4]);
    expect(chain.residual.run({ site: "resid_mid", layer: 0 }, x, [0], [7])).toBe(x);
    expect(chain.residual.error).toBeInstanceOf(PluginError);
    expect(chain.residual.error!.message).toBe('plugin "boom" failed in onResidual at resid_mid.0: kaput');
  });
  test("on logits: throws a PluginError", () => {
    const chain = compileChain([boom({})], model);
    expect(() => chain.logits(new Float32Array(8), 0)).toThrow('plugin "boom" failed in onLogits: bad logits');
  });
  test("in middleware: its own error names it; errors from deeper pass through unrenamed", async () => {
    const outer = definePlugin({ name: "outer", options: v.object({}), needs: [], create: () => ({ onRequest: async (_c, next) => next() }) });
    const thrower = definePlugin({ name: "thrower", options: v.object({}), needs: [], create: () => ({ onRequest: () => { throw new Error("nope"); } }) });
    const chain = compileChain([outer({}), thrower({})], model);
    expect(chain.request({} as never, async () => {})).rejects.toThrow('plugin "thrower" failed in onRequest: nope');
    const inner = compileChain([outer({})], model);
    const deep = new Error("backend fell over");
    expect(inner.request({} as never, async () => { throw deep; })).rejects.toBe(deep);
  });
});

describe("compose (Hono-style)", () => {
  test("runs in order around the end, rejects next() twice, and stops when next is not called", async () => {
    const log: number[] = [];
    await compose<object>([async (_c, n) => { log.push(1); await n(); log.push(4); }, async (_c, n) => { log.push(2); await n(); log.push(3); }])({}, async () => void log.push(0));
    expect(log).toEqual([1, 2, 0, 3, 4]);
    expect(compose<object>([async (_c, n) => { await n(); await n(); }])({})).rejects.toThrow("next() called multiple times");
    let reached = false;
    await compose<object>([() => {}, () => { reached = true; }])({}, async () => { reached = true; });
    expect(reached).toBe(false);
  });
});
