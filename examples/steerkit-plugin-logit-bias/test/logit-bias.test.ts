import { describe, expect, test } from "bun:test";
import { OptionsError, PluginRegistry } from "steerkit";
import { runPlugin } from "steerkit/testing";
import { logitBias } from "../src/index.ts";

describe("steerkit-plugin-logit-bias", () => {
  test("a banned word never appears, though the unsteered model writes it", async () => {
    const plain = await runPlugin([], { maxTokens: 40 });
    expect(plain.result.text.toLowerCase()).toContain("lily");
    const run = await runPlugin(logitBias({ ban: ["lily", "li"] }), { maxTokens: 40 });
    expect(run.result.text.toLowerCase()).not.toContain("lily");
    // The ban is visible in the trace: banned tokens' logits become -Infinity, nothing else changes.
    const step = run.logits[0]!;
    const changed = [...step.after.keys()].filter((i) => step.after[i] !== step.before[i]);
    expect(changed.length).toBeGreaterThan(0);
    expect(changed.every((i) => step.after[i] === -Infinity)).toBe(true);
  });
  test("a bias by token id moves exactly that logit by that amount", async () => {
    const run = await runPlugin(logitBias({ bias: { "403": 2.5 } }), { maxTokens: 2 });
    const { before, after } = run.logits[0]!;
    expect(after[403]! - before[403]!).toBeCloseTo(2.5, 5);
    expect(after.filter((x, i) => i !== 403 && x !== before[i]).length).toBe(0);
  });
  test("Effect Schema rejects bad options with field-level messages", () => {
    let error: unknown;
    try {
      logitBias({ bias: { "403": "strong" }, ban: [""] } as never);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(OptionsError);
    const paths = (error as OptionsError).issues.map((i) => i.path);
    expect(paths.some((p) => p.startsWith("bias"))).toBe(true);
    expect(paths.some((p) => p.startsWith("ban"))).toBe(true);
  });
  test("keys that are not token ids fail when the plugin is prepared, as bad options naming the key", async () => {
    const error = await runPlugin(logitBias({ bias: { abc: 1 } })).catch((e) => e);
    expect(error).toBeInstanceOf(OptionsError);
    expect(error.message).toContain('bias.abc: "abc" is not a token id');
    expect(runPlugin(logitBias({ bias: { "100000": 1 } }))).rejects.toThrow("token 100000 is outside the vocabulary (0..511)");
  });
  test("recipes find it by package name", async () => {
    const registry = new PluginRegistry();
    const [p] = await registry.resolve([{ plugin: "steerkit-plugin-logit-bias", options: { ban: ["ball"] } }], { trust: "trusted" });
    expect(p!.name).toBe("steerkit-plugin-logit-bias");
    expect(registry.names).toContain("steerkit-plugin-logit-bias");
  });
});
