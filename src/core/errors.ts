/**
 * Errors a Steerkit user can meet, each naming what is wrong. They are plain `Error` subclasses so
 * `instanceof` works across the SDK, the CLI (which prints `message`) and the server (which maps
 * them to 4xx responses by `code`).
 */

export type ErrorCode =
  | "INVALID_OPTIONS"
  | "UNSUPPORTED_CAPABILITY"
  | "PLUGIN_FAILED"
  | "UNKNOWN_PLUGIN"
  | "INVALID_RECIPE"
  | "INVALID_REQUEST"
  | "CONTEXT_OVERFLOW";

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

export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
