/**
 * Validation through Standard Schema v1, so plugin authors pick their validator: valibot (the
 * built-ins use it), Effect Schema (`Schema.toStandardSchemaV1(...)`), zod, arktype, ...
 */
import type { StandardSchemaV1 } from "@standard-schema/spec";
import { OptionsError, type Issue } from "./errors.ts";

export type { StandardSchemaV1 };

export function isStandardSchema(x: unknown): x is StandardSchemaV1 {
  return (
    (typeof x === "object" || typeof x === "function") &&
    x !== null &&
    typeof (x as StandardSchemaV1)["~standard"]?.validate === "function"
  );
}

function pathOf(issue: StandardSchemaV1.Issue): string {
  return (issue.path ?? [])
    .map((p) => (typeof p === "object" && p !== null && "key" in p ? p.key : p))
    .map((k) => (typeof k === "number" ? `[${k}]` : String(k)))
    .join(".")
    .replace(/\.\[/g, "[");
}

/**
 * Validate synchronously. Hooks and plugin creation are synchronous, so an asynchronous schema is
 * refused with a message rather than silently awaited somewhere it cannot be.
 */
export function validateSync<S extends StandardSchemaV1>(
  schema: S,
  value: unknown,
  subject: string,
): StandardSchemaV1.InferOutput<S> {
  const result = schema["~standard"].validate(value);
  if (result instanceof Promise) {
    throw new OptionsError(subject, [{ path: "", message: "the option schema validates asynchronously; use a synchronous schema" }]);
  }
  if (result.issues) {
    const issues: Issue[] = result.issues.map((i) => ({ path: pathOf(i), message: i.message }));
    throw new OptionsError(subject, issues);
  }
  return result.value as StandardSchemaV1.InferOutput<S>;
}
