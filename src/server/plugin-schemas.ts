/**
 * JSON Schemas of plugin options for `GET /v1/plugins`, what a UI builds forms from and a client
 * validates against. Plugins declare options with any Standard Schema library: valibot schemas
 * (the built-ins) convert with valibot's official converter; a schema implementing Standard JSON
 * Schema (`~standard.jsonSchema`, e.g. Effect's `Schema.toStandardJSONSchemaV1`) converts itself;
 * any other is listed with `schema: null`. Options only trusted configuration may set are marked
 * `"x-steerkit-trusted-only": true` and listed in `trustedOptions`.
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import type { StandardJSONSchemaV1 } from "@standard-schema/spec";
import type * as v from "valibot";
import type { PluginFactory } from "../core/plugin.ts";

export interface PluginDescription {
  readonly name: string;
  readonly description: string;
  readonly trustedOptions: readonly string[];
  /** JSON Schema (draft-07) of the options, or null when the plugin's schema library cannot say. */
  readonly schema: Record<string, unknown> | null;
}

/**
 * Describe a plugin factory for clients.
 * @example
 * ```ts
 * const list = registry.names.map((n) => describePlugin(registry.get(n)!));
 * ```
 */
export function describePlugin(factory: PluginFactory<any>): PluginDescription {
  const schema = jsonSchemaOf(factory.schema);
  if (schema) markTrusted(schema, factory.trustedOptions);
  return { name: factory.pluginName, description: factory.description ?? "", trustedOptions: factory.trustedOptions, schema };
}

function jsonSchemaOf(schema: unknown): Record<string, unknown> | null {
  const standard = (schema as { "~standard"?: { vendor?: string; jsonSchema?: StandardJSONSchemaV1.Converter } })?.["~standard"];
  try {
    if (standard?.jsonSchema) return standard.jsonSchema.input({ target: "draft-07" });
    // Custom checks (point names, finite numbers) have no JSON Schema form: left out, not failed.
    if (standard?.vendor === "valibot") return toJsonSchema(schema as v.GenericSchema, { errorMode: "ignore" }) as Record<string, unknown>;
  } catch {
    // a converter that cannot express this schema
  }
  return null;
}

function markTrusted(schema: Record<string, unknown>, trusted: readonly string[]): void {
  const props = schema.properties as Record<string, Record<string, unknown>> | undefined;
  for (const k of trusted) if (props?.[k]) props[k]["x-steerkit-trusted-only"] = true;
}
