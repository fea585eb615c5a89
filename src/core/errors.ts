/**
 * Errors a Steerkit user can meet, each naming what is wrong. Every error the SDK raises on
 * purpose is a {@link SteerkitError} with a stable `code`: the CLI prints `message`, a server maps
 * `code` to an HTTP status and an OpenAI error type ({@link ERROR_CODES}) without parsing text.
 */

/**
 * Every code, with whether the caller's input caused it (a 4xx) or the SDK, a plugin or the
 * backend failed (a 5xx), and the OpenAI error `type` a server answers with.
 */
export const ERROR_CODES = {
  /** Plugin or call options failed their schema; `issues` lists every field. */
  INVALID_OPTIONS: { status: 400, type: "invalid_request_error" },
  /** A recipe is not an array of `{ plugin, options }`, or is longer than allowed. */
  INVALID_RECIPE: { status: 400, type: "invalid_request_error" },
  /** A recipe names a plugin the registry does not know. */
  UNKNOWN_PLUGIN: { status: 400, type: "invalid_request_error" },
  /** An untrusted recipe set an option only trusted configuration may set. */
  UNTRUSTED_OPTION: { status: 403, type: "permission_error" },
  /** A recipe names an artifact that is not registered (or of another kind). */
  UNKNOWN_ARTIFACT: { status: 400, type: "invalid_request_error" },
  /**
   * A registered artifact's file or value is malformed (format, NaN): the configuration that
   * registered it is at fault, not the request that named it. (A well-formed artifact that does not
   * fit the model, e.g. of another width, is the recipe's INVALID_OPTIONS.)
   */
  INVALID_ARTIFACT: { status: 500, type: "server_error" },
  /** The prompt or request is malformed (not exactly one prompt form, bad token ids, ...). */
  INVALID_REQUEST: { status: 400, type: "invalid_request_error" },
  /** The prompt does not fit the context. */
  CONTEXT_OVERFLOW: { status: 400, type: "invalid_request_error" },
  /** A plugin needs a capability the backend lacks. */
  UNSUPPORTED_CAPABILITY: { status: 400, type: "invalid_request_error" },
  /** A model file is damaged or not what its name says. */
  INVALID_MODEL_FILE: { status: 400, type: "invalid_request_error" },
  /** A model is valid but uses something Steerkit does not support (architecture, op, layout). */
  UNSUPPORTED_MODEL: { status: 400, type: "invalid_request_error" },
  /** A chat template failed to render. */
  CHAT_TEMPLATE_FAILED: { status: 400, type: "invalid_request_error" },
  /** A plugin hook threw, or broke the contract (two `next()` calls, a wrong-sized result). */
  PLUGIN_FAILED: { status: 500, type: "server_error" },
  /** The backend failed (a native call returned an error, no KV slot, a freed sequence). */
  BACKEND_FAILED: { status: 500, type: "server_error" },
  /** A backend's native library is missing or not the verified release. */
  BACKEND_UNAVAILABLE: { status: 500, type: "server_error" },
  /** `steerkit convert` cannot convert this model. */
  CONVERT_FAILED: { status: 400, type: "invalid_request_error" },
  /** A CLI command was called wrongly. */
  USAGE: { status: 400, type: "invalid_request_error" },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export class SteerkitError extends Error {
  override name = "SteerkitError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface Issue {
  /** Dotted path of the failing field (`""` for the value itself). */
  readonly path: string;
  readonly message: string;
}

/** Options that failed a schema: lists every failing field. */
export class OptionsError extends SteerkitError {
  override name = "OptionsError";
  constructor(
    readonly subject: string,
    readonly issues: readonly Issue[],
  ) {
    super("INVALID_OPTIONS", `${subject}: invalid options:\n${issues.map((i) => `  - ${i.path || "(options)"}: ${i.message}`).join("\n")}`);
  }
}

/** A plugin asks for something the backend does not offer; raised before any weights load. */
export class CapabilityError extends SteerkitError {
  override name = "CapabilityError";
  constructor(
    readonly plugin: string,
    readonly backend: string,
    readonly missing: readonly string[],
  ) {
    super(
      "UNSUPPORTED_CAPABILITY",
      `plugin "${plugin}" needs ${missing.join(", ")}, which backend "${backend}" does not offer`,
    );
  }
}

/** A plugin hook threw; names the plugin and the hook. The generation that ran it has stopped. */
export class PluginError extends SteerkitError {
  override name = "PluginError";
  constructor(
    readonly plugin: string,
    readonly hook: string,
    cause: unknown,
  ) {
    super("PLUGIN_FAILED", `plugin "${plugin}" failed in ${hook}: ${cause instanceof Error ? cause.message : String(cause)}`, {
      cause,
    });
  }
}

/** A plugin option set by an untrusted recipe that only trusted configuration may set. */
export class UntrustedOptionError extends SteerkitError {
  override name = "UntrustedOptionError";
  constructor(
    readonly subject: string,
    readonly options: readonly string[],
  ) {
    super(
      "UNTRUSTED_OPTION",
      `${subject}: ${options.map((o) => `"${o}"`).join(", ")} may be set only by trusted configuration (code, the CLI or the server's own presets), not by a request`,
    );
  }
}

/** The HTTP status and OpenAI error type for an error: a SteerkitError by its code, anything else 500. */
export function errorStatus(e: unknown): { status: number; type: string; code: string } {
  if (e instanceof SteerkitError) return { ...ERROR_CODES[e.code], code: e.code };
  return { status: 500, type: "server_error", code: "INTERNAL" };
}

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
