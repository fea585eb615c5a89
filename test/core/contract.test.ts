/**
 * The plugin contract's second round: per-model prepare (cached), named artifacts, trust in
 * recipes, the shared points/positions options, read-only points, what hooks see in their context,
 * and the middleware guard. Chain-level checks run on model metadata; end-to-end ones on the
 * embedded model through the reference backend.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as v from "valibot";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { directionArtifact, type Direction } from "../../src/directions/artifact.ts";
import type { Capability, ModelInfo } from "../../src/core/backend.ts";
import { compileChain, preparePlugins } from "../../src/core/chain.ts";
import { ERROR_CODES, errorStatus, OptionsError, PluginError, SteerkitError, UntrustedOptionError } from "../../src/core/errors.ts";
import { generate, stream } from "../../src/core/generate.ts";
import { definePlugin, PREPARE_CACHE_SIZE } from "../../src/core/plugin.ts";
import { PointsOption, resolvePoints, resolvePositions } from "../../src/core/points.ts";
import { MAX_UNTRUSTED_ENTRIES, RecipeError, UnknownPluginError } from "../../src/core/recipe.ts";
import { pointName } from "../../src/core/sites.ts";
import { addVector, ablateDirection, createRegistry, logger } from "../../src/plugins/index.ts";
import { loadTestModel } from "../../src/testing/index.ts";

const info: ModelInfo = {
  backend: "meta-only", architecture: "llama", name: "shape", nLayers: 3, dModel: 4, vocabSize: 8,
  contextLength: 64, bosToken: 1, eosTokens: [2], chatTemplate: null,
};
const ALL: Capability[] = ["residual:read", "residual:write", "logits:read", "logits:write"];
const meta = { info, capabilities: ALL, detokenize: (t: ArrayLike<number>) => Array.from(t).join(" ") };

const dir = mkdtempSync(join(tmpdir(), "steerkit-contract-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("points and positions, one way", () => {
  test('"all" is every point; patterns expand, dedupe and sort in forward order', () => {
    expect(resolvePoints("all", 3).map(pointName)).toEqual(["resid_pre.0", "resid_mid.0", "resid_post.0", "resid_mid.1", "resid_post.1", "resid_mid.2", "resid_post.2"]);
    expect(resolvePoints("every", 3)).toEqual(resolvePoints("all", 3));
    expect(resolvePoints(["resid_post.*"], 3).map(pointName)).toEqual(["resid_post.0", "resid_post.1", "resid_post.2"]);
    expect(resolvePoints(["resid_post.2", "resid_pre.1-2", "resid_mid.1"], 3).map(pointName)).toEqual(["resid_post.0", "resid_mid.1", "resid_post.1", "resid_post.2"]);
  });
  test("bad patterns fail in the schema; layers the model lacks fail naming the pattern", () => {
    const schema = v.object({ points: PointsOption() });
    for (const bad of [["resid_post"], ["resid_post.x"], ["blocks.1"], [], "some"]) expect(v.safeParse(schema, { points: bad }).success).toBe(false);
    expect(() => resolvePoints(["resid_mid.1-7"], 3)).toThrow('point "resid_mid.1-7": layer 3 of resid_mid is outside 0..2');
    expect(() => resolvePoints(["resid_mid.2-1"], 3)).toThrow("runs backwards");
  });
  test("a model with parallel blocks has no resid_mid: \"all\" leaves it out and a pattern naming it fails naming the architecture", () => {
    const phi2 = { nLayers: 3, architecture: "phi2", parallelBlocks: true };
    expect(resolvePoints("all", phi2).map(pointName)).toEqual(["resid_pre.0", "resid_post.0", "resid_post.1", "resid_post.2"]);
    expect(resolvePoints(["resid_pre.1-2", "resid_post.2"], phi2).map(pointName)).toEqual(["resid_post.0", "resid_post.1", "resid_post.2"]);
    expect(() => resolvePoints(["resid_mid.1"], phi2)).toThrow('point "resid_mid.1": phi2 has no resid_mid (its blocks add attention and MLP to the stream together)');
    expect(resolvePoints("all", { ...info })).toEqual(resolvePoints("all", 3)); // sequential blocks: unchanged
  });
  test("positions resolve against the prompt length", () => {
    expect(resolvePositions("all", 5)).toBeNull();
    expect(resolvePositions("prompt", 5)).toEqual({ from: 0, to: 5 });
    expect(resolvePositions("generated", 5)).toEqual({ from: 5, to: Infinity });
    expect(resolvePositions({ from: 2, to: 4 }, 5)).toEqual({ from: 2, to: 4 });
  });
  test("one meaning of \"all\" across the built-ins", () => {
    const v1 = [1, 0, 0, 0];
    const chains = [addVector({ points: "all", vector: v1 }), ablateDirection({ points: "all", direction: v1 }), logger({ points: "all", topK: 0, onRecord: () => {} })];
    for (const p of chains) expect(compileChain([p], meta).residual.points.length).toBe(7);
  });
});

describe("read or write per point", () => {
  const reader = definePlugin({
    name: "reader", options: v.object({}), needs: ["residual:read"],
    create: () => ({ points: [{ site: "resid_post", layer: 0 }, { site: "resid_post", layer: 1 }], onResidual: () => {} }),
  });
  const mixed = definePlugin({
    name: "mixed", options: v.object({}), needs: ["residual:read", "residual:write"],
    create: () => ({ points: [{ site: "resid_post", layer: 1 }, { site: "resid_post", layer: 2 }], writes: [{ site: "resid_post", layer: 2 }], onResidual: () => {} }),
  });
  test("points where every hook only reads are read-only; a writer anywhere else does not change that", () => {
    const chain = compileChain([reader({}), mixed({}), addVector({ points: ["resid_mid.0"], vector: [1, 1, 1, 1] })], meta);
    expect([...chain.residual.readOnly].sort()).toEqual(["resid_post.0", "resid_post.1"]);
    expect(chain.residual.writes).toBe(true);
    expect(compileChain([reader({})], meta).residual.writes).toBe(false);
  });
  test("declared writes must be among the plugin's points and need residual:write", () => {
    const stray = definePlugin({
      name: "stray", options: v.object({}), needs: ["residual:write"],
      create: () => ({ points: [{ site: "resid_post", layer: 1 }], writes: [{ site: "resid_mid", layer: 1 }], onResidual: () => {} }),
    });
    expect(() => compileChain([stray({})], meta)).toThrow('plugin "stray" failed in create: writes resid_mid.1, which is not one of its points');
    const sneaky = definePlugin({
      name: "sneaky", options: v.object({}), needs: ["residual:read"],
      create: () => ({ points: [{ site: "resid_post", layer: 1 }], writes: [{ site: "resid_post", layer: 1 }], onResidual: () => {} }),
    });
    expect(() => compileChain([sneaky({})], meta)).toThrow("declares writes but does not declare residual:write");
  });
});

describe("positions in affine edits", () => {
  test("the chain resolves a plugin's symbolic positions into the edit", () => {
    const chain = compileChain([addVector({ points: ["resid_post.1"], vector: [1, 2, 3, 4], positions: "generated" })], meta, { promptTokens: [1, 5, 6] });
    expect(chain.residual.affine.get("resid_post.1")!.positions).toEqual({ from: 3, to: Infinity });
  });
  test("equal ranges compose into one edit; different ranges at one point fall back to JS", () => {
    const same = compileChain([addVector({ points: ["resid_post.1"], vector: [1, 0, 0, 0], positions: "prompt" }), ablateDirection({ points: ["resid_post.1"], direction: [0, 1, 0, 0], positions: "prompt" })], meta, { promptTokens: [1, 2] });
    expect(same.residual.affine.get("resid_post.1")).toMatchObject({ rank: 1, positions: { from: 0, to: 2 } });
    const differ = compileChain([addVector({ points: ["resid_post.1"], vector: [1, 0, 0, 0], positions: "prompt" }), addVector({ points: ["resid_post.1"], vector: [0, 1, 0, 0] })], meta, { promptTokens: [1, 2] });
    expect(differ.residual.affine.size).toBe(0);
  });
});

describe("per-model prepare", () => {
  function counting() {
    const calls = { prepare: 0, create: 0 };
    const plugin = definePlugin({
      name: "counting",
      options: v.object({ k: v.number(), slow: v.optional(v.boolean(), false) }),
      needs: ["logits:write"],
      prepare: (o, ctx) => {
        calls.prepare++;
        const table = new Float32Array(ctx.model.vocabSize).fill(o.k);
        return o.slow ? new Promise<Float32Array>((r) => setTimeout(() => r(table), 5)) : table;
      },
      create: (_o, { prepared }) => {
        calls.create++;
        return { onLogits: (l) => void l.set(prepared) };
      },
    });
    return { plugin, calls };
  }
  test("runs once per model and options, however many requests; create runs per request", async () => {
    const model = await loadTestModel();
    const { plugin, calls } = counting();
    for (let i = 0; i < 3; i++) await generate(model, { prompt: "Once", maxTokens: 1, plugins: [plugin({ k: 1 })] });
    expect(calls).toEqual({ prepare: 1, create: 3 });
    await generate(model, { prompt: "Once", maxTokens: 1, plugins: [plugin({ k: 2 })] });
    expect(calls.prepare).toBe(2);
  });
  test("an async prepare is awaited by generate and stream; preparePlugins lets a server do it first", async () => {
    const model = await loadTestModel();
    const { plugin, calls } = counting();
    const result = await generate(model, { prompt: "Once", maxTokens: 2, temperature: 0, plugins: [plugin({ k: 0, slow: true })] });
    expect(result.tokens.length).toBe(2);
    const prepared = await preparePlugins(model, [plugin({ k: 0, slow: true })]);
    expect(calls.prepare).toBe(1); // cached by options, not by object
    const events = [];
    for await (const ev of stream(model, { prompt: "Once", maxTokens: 2, temperature: 0, plugins: prepared })) events.push(ev);
    expect(events.at(-1)).toMatchObject({ type: "done", result: { tokens: result.tokens } });
    expect(() => compileChain([plugin({ k: 9, slow: true })], model)).toThrow("prepares asynchronously");
  });
  test("the cache is bounded, and a failed prepare is not cached", async () => {
    const model = await loadTestModel();
    const { plugin, calls } = counting();
    for (let k = 0; k <= PREPARE_CACHE_SIZE; k++) await preparePlugins(model, [plugin({ k })]);
    await preparePlugins(model, [plugin({ k: PREPARE_CACHE_SIZE })]);
    expect(calls.prepare).toBe(PREPARE_CACHE_SIZE + 1);
    await preparePlugins(model, [plugin({ k: 0 })]); // evicted first: prepared again
    expect(calls.prepare).toBe(PREPARE_CACHE_SIZE + 2);

    let attempts = 0;
    const flaky = definePlugin({
      name: "flaky", options: v.object({}), needs: [],
      prepare: () => {
        if (attempts++ === 0) throw new Error("disk hiccup");
        return 1;
      },
      create: () => ({}),
    });
    expect(preparePlugins(model, [flaky({})])).rejects.toThrow('plugin "flaky" failed in prepare: disk hiccup');
    await preparePlugins(model, [flaky({})]);
    expect(attempts).toBe(2);
  });
  test("a plugin prepared for one model is refused on another", async () => {
    const model = await loadTestModel();
    const [p] = await preparePlugins(model, [addVector({ points: ["resid_post.0"], vector: new Array(64).fill(0.1) })]);
    expect(() => compileChain([p!], { ...meta, info: { ...model.info } })).toThrow("was prepared for model");
  });
});

describe("named artifacts", () => {
  const width = 64;
  const wave = (k: number) => Array.from({ length: width }, (_, i) => Math.sin(i * k + 1));
  test("a recipe names a registered direction; the result equals the inline vector", async () => {
    const model = await loadTestModel();
    const file = join(dir, "dir.json");
    writeFileSync(file, JSON.stringify(wave(0.3)));
    const artifacts = createArtifacts().register("concept", directionArtifact, { path: file });
    const registry = createRegistry();
    const named = await registry.resolve([{ plugin: "add-vector", options: { points: ["resid_post.1"], vector: "concept", scale: 4 } }]);
    const inline = [addVector({ points: ["resid_post.1"], vector: wave(0.3), scale: 4 })];
    const opts = { prompt: "Once upon a time", maxTokens: 8, temperature: 0 } as const;
    const a = await generate(model, { ...opts, plugins: named, artifacts });
    const b = await generate(model, { ...opts, plugins: inline });
    const plain = await generate(model, opts);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.tokens).not.toEqual(plain.tokens);
  });
  test("per-point directions: each point gets its own vector; a missing point is named", async () => {
    const model = await loadTestModel();
    const artifacts = createArtifacts().register("layers", directionArtifact, { value: { "resid_post.1": wave(0.3), "resid_pre.3": wave(0.7) } });
    const opts = { prompt: "Once upon a time", maxTokens: 6, temperature: 0 } as const;
    const perPoint = await generate(model, { ...opts, artifacts, plugins: [ablateDirection({ points: ["resid_post.1", "resid_post.2"], direction: "layers" })] });
    const separate = await generate(model, { ...opts, plugins: [ablateDirection({ points: ["resid_post.1"], direction: wave(0.3) }), ablateDirection({ points: ["resid_post.2"], direction: wave(0.7) })] });
    expect(perPoint.tokens).toEqual(separate.tokens);
    expect(generate(model, { ...opts, artifacts, plugins: [ablateDirection({ points: ["resid_mid.0"], direction: "layers" })] })).rejects.toThrow(
      'direction "layers" has no vector for resid_mid.0',
    );
  });
  test("unknown names, kinds and bad files are clear errors with codes; loading happens once", async () => {
    const model = await loadTestModel();
    let loads = 0;
    const counted = { ...directionArtifact, load: (src: Parameters<typeof directionArtifact.load>[0], name: string) => (loads++, directionArtifact.load(src, name)) } as typeof directionArtifact;
    const artifacts = createArtifacts().register("a", counted, { value: wave(0.1) });
    const opts = { prompt: "Once", maxTokens: 1, artifacts } as const;
    await generate(model, { ...opts, plugins: [addVector({ points: ["resid_post.0"], vector: "a" })] });
    await generate(model, { ...opts, plugins: [addVector({ points: ["resid_post.0"], vector: "a", scale: 2 })] });
    expect(loads).toBe(1);
    const unknown = await generate(model, { ...opts, plugins: [addVector({ points: ["resid_post.0"], vector: "b" })] }).catch((e) => e);
    expect(unknown).toBeInstanceOf(SteerkitError);
    expect(unknown.code).toBe("UNKNOWN_ARTIFACT");
    expect(unknown.message).toBe('no direction named "b" is registered; registered directions: a');
    for (const [content, message] of [
      ["[1, 2", "not valid JSON"],
      ['{"layers": [1]}', 'key "layers" is not a point name'],
      ["[1, null]", "[1] is null, expected a finite number"],
      ["[0, 0]", "is the zero vector"],
    ] as const) {
      const file = join(dir, `bad-${loads}-${message.length}.json`);
      writeFileSync(file, content);
      const store = createArtifacts().register("bad", directionArtifact, { path: file });
      const err = await generate(model, { prompt: "Once", maxTokens: 1, artifacts: store, plugins: [addVector({ points: ["resid_post.0"], vector: "bad" })] }).catch((e) => e);
      expect(err.code).toBe("INVALID_ARTIFACT");
      expect(err.message).toContain('direction "bad"');
      expect(err.message).not.toContain(dir); // the path stays on the server
      expect(err.message).toContain(message);
    }
    const wide = createArtifacts().register("w", directionArtifact, { value: [1, 2, 3] });
    const err = await generate(model, { prompt: "Once", maxTokens: 1, artifacts: wide, plugins: [addVector({ points: ["resid_post.0"], vector: "w" })] }).catch((e) => e);
    expect(err).toBeInstanceOf(OptionsError);
    expect(err.message).toContain(`vector: direction "w" has 3 values; the model's residual has 64`);
  });
  test("a name is bound once; the listing never shows a path", () => {
    const artifacts = createArtifacts().register("x", directionArtifact, { path: "/etc/x.json" });
    expect(() => artifacts.register("x", directionArtifact, { path: "/etc/y.json" })).toThrow('artifact "x" is already registered');
    expect(() => artifacts.register("../x", directionArtifact, { value: [1] })).toThrow("is not valid");
    expect(artifacts.list()).toEqual([{ name: "x", kind: "direction", source: "file" }]);
    expect(JSON.stringify(artifacts.list())).not.toContain("/etc");
  });
  test("the direction loader keeps vectors as given", async () => {
    const loaded = (await createArtifacts().register("v", directionArtifact, { value: [3, 4] }).load(directionArtifact, "v")) as Direction;
    expect([...loaded.vector!]).toEqual([3, 4]);
  });
});

describe("trust", () => {
  const registry = createRegistry();
  test("an untrusted recipe cannot make the server write a file", async () => {
    const recipe = [{ plugin: "logger", options: { points: ["resid_post.0"], file: "/tmp/evil" } }];
    const err = await registry.resolve(recipe).catch((e) => e);
    expect(err).toBeInstanceOf(UntrustedOptionError);
    expect(err.code).toBe("UNTRUSTED_OPTION");
    expect(err.message).toBe('recipe[0] (plugin "logger"): "file" may be set only by trusted configuration (code, the CLI or the server\'s own presets), not by a request');
    expect(await registry.resolve(recipe, { trust: "trusted" })).toHaveLength(1);
  });
  test("an untrusted recipe never imports a package, and is bounded in length", async () => {
    const err = await registry.resolve([{ plugin: "steerkit-plugin-logit-bias", options: {} }]).catch((e) => e);
    expect(err).toBeInstanceOf(UnknownPluginError);
    expect(err.message).toContain("packages are imported only for trusted recipes");
    const long = Array.from({ length: MAX_UNTRUSTED_ENTRIES + 1 }, () => ({ plugin: "add-vector", options: { points: ["resid_post.0"], vector: [1] } }));
    expect(registry.resolve(long)).rejects.toBeInstanceOf(RecipeError);
    expect(await registry.resolve(long, { trust: "trusted" })).toHaveLength(MAX_UNTRUSTED_ENTRIES + 1);
  });
});

describe("what hooks see", () => {
  test("residual hooks get the rows' token ids and positions; every hook gets the prompt and the generated tokens", async () => {
    const model = await loadTestModel();
    const seen: { step: number; tokens: number[]; positions: number[]; prompt: number; generated: number[] }[] = [];
    const logits: { position: number; generated: number }[] = [];
    const probe = definePlugin({
      name: "probe", options: v.object({}), needs: ["residual:read", "logits:read"],
      create: () => ({
        points: [{ site: "resid_post", layer: 1 }],
        onResidual: (_x, ctx) => void seen.push({ step: ctx.step, tokens: Array.from(ctx.tokens), positions: Array.from(ctx.positions), prompt: ctx.promptTokens.length, generated: [...ctx.generatedTokens] }),
        onLogits: (_l, ctx) => void logits.push({ position: ctx.position, generated: ctx.generatedTokens.length }),
      }),
    });
    const result = await generate(model, { prompt: "Once upon a time", maxTokens: 3, temperature: 0, plugins: [probe({})] });
    expect(result.promptTokens).toEqual([1, 403, 407, 261, 378]);
    expect(seen).toEqual([
      { step: 0, tokens: [1, 403, 407, 261, 378], positions: [0, 1, 2, 3, 4], prompt: 5, generated: [] },
      { step: 1, tokens: [result.tokens[0]!], positions: [5], prompt: 5, generated: [result.tokens[0]!] },
      { step: 2, tokens: [result.tokens[1]!], positions: [6], prompt: 5, generated: result.tokens.slice(0, 2) },
    ]);
    expect(logits).toEqual([{ position: 4, generated: 0 }, { position: 5, generated: 1 }, { position: 6, generated: 2 }]);
  });
});

describe("errors", () => {
  test("a middleware calling next() twice is a PluginError naming it, even when it swallows the error", async () => {
    const model = await loadTestModel();
    for (const swallow of [false, true]) {
      const twice = definePlugin({
        name: "twice", options: v.object({}), needs: [],
        create: () => ({
          async onRequest(_c, next) {
            await next();
            if (swallow) await next().catch(() => {});
            else await next();
          },
        }),
      });
      const err = await generate(model, { prompt: "Once", maxTokens: 1, plugins: [twice({})] }).catch((e) => e);
      expect(err).toBeInstanceOf(PluginError);
      expect(err.message).toBe('plugin "twice" failed in onRequest: called next() more than once');
    }
  });
  test("every code maps to an HTTP status and an OpenAI error type; bad input is 4xx, failures 5xx", () => {
    expect(errorStatus(new UntrustedOptionError("x", ["file"]))).toEqual({ status: 403, type: "permission_error", code: "UNTRUSTED_OPTION" });
    expect(errorStatus(new OptionsError("x", []))).toMatchObject({ status: 400 });
    expect(errorStatus(new PluginError("p", "onResidual", new Error("x")))).toMatchObject({ status: 500 });
    expect(errorStatus(new TypeError("?"))).toEqual({ status: 500, type: "server_error", code: "INTERNAL" });
    for (const { status } of Object.values(ERROR_CODES)) expect([400, 403, 500]).toContain(status);
  });
  test("bad input a plugin finds is INVALID_OPTIONS naming the plugin and option, not a plugin failure", async () => {
    const err = await generate(await loadTestModel(), { prompt: "Once", maxTokens: 1, plugins: [ablateDirection({ direction: [1, 2] })] }).catch((e) => e);
    expect(err.code).toBe("INVALID_OPTIONS");
    expect(err.message).toContain('plugin "ablate-direction": invalid options');
  });
});
