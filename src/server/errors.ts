/**
 * Errors in OpenAI's shape, `{ error: { message, type, param, code } }`, so existing clients show
 * them. A SteerkitError keeps its stable code and gets its status from core's `errorStatus`; the
 * server adds `param`, the request field the error is about, which only it knows.
 */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import * as v from "valibot";
import { errorStatus, SteerkitError } from "../core/errors.ts";

export interface OpenAIErrorBody {
  readonly error: { readonly message: string; readonly type: string; readonly param: string | null; readonly code: string };
}

/** An error the server itself raises with a status (429, 413, 415, ...). */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: ContentfulStatusCode,
    readonly type: string,
    readonly code: string,
    message: string,
    readonly param: string | null = null,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

/** An error about one request field: the field becomes the OpenAI error's `param`. */
export class FieldError extends Error {
  override name = "FieldError";
  constructor(
    readonly param: string,
    readonly error: unknown,
  ) {
    super(error instanceof Error ? error.message : String(error));
  }
}

/** Run `fn`, attributing what it throws to request field `param`. */
export async function atField<T>(param: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof FieldError ? e : new FieldError(param, e);
  }
}

/**
 * Status and body for any error; `param` names the request field it concerns.
 * @example
 * ```ts
 * const { status, body } = toOpenAIError(e, "steering");
 * return c.json(body, status);
 * ```
 */
export function toOpenAIError(e: unknown, param: string | null = null): { status: ContentfulStatusCode; body: OpenAIErrorBody; headers: Record<string, string> } {
  if (e instanceof FieldError) return toOpenAIError(e.error, e.param);
  if (e instanceof ApiError) return { status: e.status, headers: e.headers, body: { error: { message: e.message, type: e.type, param: e.param ?? param, code: e.code } } };
  const { status, type, code } = errorStatus(e);
  // Errors that are not Steerkit's own are bugs: their text may say anything, so it stays in the log.
  const message = e instanceof SteerkitError ? e.message : "internal server error";
  return { status: status as ContentfulStatusCode, headers: {}, body: { error: { message, type, param: status < 500 ? param : null, code } } };
}

/** Answer an error in OpenAI's shape. */
export function respondError(c: Context, e: unknown, param: string | null = null): Response {
  const { status, body, headers } = toOpenAIError(e, param);
  const cause = e instanceof FieldError ? e.error : e;
  if (status >= 500 && !(cause instanceof SteerkitError) && !(cause instanceof ApiError)) console.error("steerkit server:", cause);
  return c.json(body, status, headers);
}

/** A failed valibot parse of the body as one 400: every failing field in the message, the first as `param`. */
export function validationError(issues: readonly v.BaseIssue<unknown>[]): ApiError {
  const paths = issues.map((i) => v.getDotPath(i) ?? "");
  const message = `invalid request: ${issues.map((i, n) => `${paths[n] || "(body)"}: ${i.message}`).join("; ")}`;
  return new ApiError(400, "invalid_request_error", "INVALID_REQUEST", message, paths[0] || null);
}
