/** The one error kind of `steerkit eval`: bad configuration or data, named by file, field or line. */
import { SteerkitError } from "../core/errors.ts";

export class EvalError extends SteerkitError {
  override name = "EvalError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_REQUEST", message, options);
  }
}

/**
 * `value` described for an error message: its type and, when short, the value itself.
 * @example
 * ```ts
 * describeValue("maybe"); // 'string "maybe"'
 * describeValue([1, 2]);  // "an array of 2"
 * ```
 */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "object") return "an object";
  const shown = JSON.stringify(value);
  return `${typeof value} ${shown.length > 60 ? shown.slice(0, 57) + "..." : shown}`;
}
