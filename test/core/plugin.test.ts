import { describe, expect, test } from "bun:test";
import { Schema } from "effect";
import * as v from "valibot";
import { definePlugin } from "../../src/core/plugin.ts";
import { OptionsError } from "../../src/core/errors.ts";

const withValibot = definePlugin({
  name: "vb",
  options: v.object({ layer: v.pipe(v.number(), v.integer(), v.minValue(0)), scale: v.optional(v.number(), 1) }),
  needs: ["residual:write"],
  create: (o) => ({ points: [{ site: "resid_post", layer: o.layer }], onResidual: () => {} }),
});

const withEffect = definePlugin({
  name: "fx",
  options: Schema.toStandardSchemaV1(Schema.Struct({ layer: Schema.Int, label: Schema.String })),
  needs: ["residual:read"],
  create: () => ({}),
});

function optionsError(fn: () => unknown): OptionsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(OptionsError);
    return e as OptionsError;
  }
  throw new Error("expected an OptionsError");
}

describe("definePlugin validates options through Standard Schema", () => {
  test("valibot options: defaults applied, bad fields named", () => {
    const p = withValibot({ layer: 2 });
    expect(p.name).toBe("vb");
    expect(p.options).toEqual({ layer: 2, scale: 1 });
    expect(p.needs).toEqual(["residual:write"]);
    const err = optionsError(() => withValibot({ layer: -1, scale: "big" } as never));
    expect(err.issues.map((i) => i.path).sort()).toEqual(["layer", "scale"]);
    expect(err.message).toContain('plugin "vb"');
    expect(err.message).toMatch(/layer: .*>=0/);
  });
  test("Effect Schema options: valid ones pass, bad fields named", () => {
    expect(withEffect({ layer: 1, label: "x" }).options).toEqual({ layer: 1, label: "x" });
    const err = optionsError(() => withEffect({ layer: 1.5, label: 3 } as never));
    const paths = err.issues.map((i) => i.path);
    expect(paths).toContain("label");
    expect(err.message).toContain('plugin "fx"');
  });
  test("a definition without a Standard Schema or with a bad name is refused", () => {
    expect(() => definePlugin({ name: "Bad Name", options: v.object({}), needs: [], create: () => ({}) })).toThrow(/lowercase/);
    expect(() => definePlugin({ name: "ok", options: { parse() {} } as never, needs: [], create: () => ({}) })).toThrow(/Standard Schema/);
  });
  test("asynchronous schemas are refused with a clear message", () => {
    const asyncPlugin = definePlugin({
      name: "async",
      options: v.objectAsync({ a: v.pipeAsync(v.number(), v.checkAsync(async () => true)) }),
      needs: [],
      create: () => ({}),
    });
    expect(() => asyncPlugin({ a: 1 })).toThrow(/asynchronously/);
  });
});
