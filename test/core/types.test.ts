/**
 * Type tests: the SDK's main type promise is that a plugin's options, prepared value and hooks are
 * inferred from its schema and `prepare`, whichever Standard Schema library wrote the schema. These
 * are checked by `tsc` (the test command's first step); the runtime assertions are trivial.
 */
import { describe, expectTypeOf, test } from "bun:test";
import { Schema } from "effect";
import * as v from "valibot";
import type { StandardSchemaV1 } from "../../src/core/schema.ts";
import { definePlugin, type ConfiguredPlugin, type PluginFactory, type PreparedPlugin } from "../../src/core/plugin.ts";
import { preparePlugins } from "../../src/core/chain.ts";
import type { Model } from "../../src/core/backend.ts";
import type { PointsSpec, PositionsSpec } from "../../src/core/points.ts";
import { addVector, logger } from "../../src/plugins/index.ts";

describe("option inference", () => {
  test("valibot: create sees the output type (defaults applied), the factory takes the input type", () => {
    const p = definePlugin({
      name: "vb",
      options: v.object({ layer: v.number(), scale: v.optional(v.number(), 1), label: v.optional(v.string()) }),
      needs: [],
      create(o) {
        expectTypeOf(o).toEqualTypeOf<{ layer: number; scale: number; label?: string | undefined }>();
        return {};
      },
    });
    expectTypeOf<Parameters<typeof p>[0]>().toEqualTypeOf<{ layer: number; scale?: number | undefined; label?: string | undefined }>();
    expectTypeOf<ReturnType<typeof p>>().toEqualTypeOf<ConfiguredPlugin>();
  });
  test("Effect Schema through toStandardSchemaV1", () => {
    const p = definePlugin({
      name: "fx",
      options: Schema.toStandardSchemaV1(Schema.Struct({ layer: Schema.Int, words: Schema.Array(Schema.String) })),
      needs: [],
      create(o) {
        expectTypeOf(o.layer).toEqualTypeOf<number>();
        expectTypeOf(o.words).toEqualTypeOf<readonly string[]>();
        return {};
      },
    });
    expectTypeOf<Parameters<typeof p>[0]>().toHaveProperty("words");
  });
  test("a hand-written Standard Schema", () => {
    const schema: StandardSchemaV1<{ n: string }, { n: number }> = {
      "~standard": { version: 1, vendor: "hand", validate: (x) => ({ value: { n: Number((x as { n: string }).n) } }) },
    };
    const p = definePlugin({
      name: "hand",
      options: schema,
      needs: [],
      create(o) {
        expectTypeOf(o).toEqualTypeOf<{ n: number }>();
        return {};
      },
    });
    expectTypeOf<Parameters<typeof p>[0]>().toEqualTypeOf<{ n: string }>();
    expectTypeOf(p).toEqualTypeOf<PluginFactory<typeof schema>>();
  });
});

describe("prepare inference", () => {
  test("create's ctx.prepared is what prepare returns, sync or async; undefined without prepare", () => {
    definePlugin({
      name: "sync-prep",
      options: v.object({ k: v.number() }),
      needs: [],
      prepare: (o) => ({ table: new Float32Array(o.k) }),
      create(_o, { prepared }) {
        expectTypeOf(prepared).toEqualTypeOf<{ table: Float32Array<ArrayBuffer> }>();
        return {};
      },
    });
    definePlugin({
      name: "async-prep",
      options: v.object({}),
      needs: [],
      prepare: async () => 42,
      create(_o, { prepared }) {
        expectTypeOf(prepared).toEqualTypeOf<number>();
        return {};
      },
    });
    definePlugin({
      name: "no-prep",
      options: v.object({}),
      needs: [],
      create(_o, { prepared }) {
        expectTypeOf(prepared).toEqualTypeOf<undefined>();
        return {};
      },
    });
  });
  test("preparePlugins resolves to prepared plugins", () => {
    expectTypeOf<Awaited<ReturnType<typeof preparePlugins>>>().toEqualTypeOf<PreparedPlugin[]>();
    expectTypeOf<Parameters<typeof preparePlugins>[0]>().toMatchTypeOf<Pick<Model, "info" | "capabilities" | "detokenize">>();
  });
});

describe("the built-ins' options", () => {
  test("points and positions are the shared option types", () => {
    type AddInput = Parameters<typeof addVector>[0];
    // Optional: a per-point direction artifact brings its own points.
    expectTypeOf<AddInput["points"]>().toEqualTypeOf<"all" | "every" | string[] | undefined>();
    expectTypeOf<NonNullable<AddInput["points"]>>().toMatchTypeOf<PointsSpec>();
    expectTypeOf<NonNullable<AddInput["positions"]>>().toMatchTypeOf<PositionsSpec>();
    expectTypeOf<AddInput["vector"]>().toEqualTypeOf<number[] | string>();
    type LoggerInput = Parameters<typeof logger>[0];
    expectTypeOf<LoggerInput>().toHaveProperty("onRecord");
  });
});
