/**
 * Who may drive the server. A steering server on a laptop is reachable by every web page the user
 * visits: a `text/plain` POST needs no CORS preflight, and a DNS-rebinding page talks to
 * 127.0.0.1 under its own host name. So: the `Host` header must name an allowed host (rebinding
 * sends the attacker's name), a browser's `Origin` on a state-changing request must be one of those
 * hosts, and request bodies must be JSON (which a cross-origin page cannot send without a preflight
 * that this server never approves).
 */
import type { MiddlewareHandler } from "hono";
import { ApiError, respondError } from "./errors.ts";

const LOOPBACK = ["localhost", "127.0.0.1", "::1"];

/** The host names a server bound to `host` answers to by default: loopback names, plus `host` itself when it is a name or address other than a wildcard. */
export function defaultAllowedHosts(host: string): string[] {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "0.0.0.0" || h === "::" || LOOPBACK.includes(h) ? LOOPBACK : [...LOOPBACK, h];
}

/** `example.com:3000` or `[::1]:3000` -> `example.com` / `::1`; null when malformed. */
function hostname(value: string): string | null {
  try {
    return new URL(`http://${value}`).hostname.replace(/^\[|\]$/g, "").toLowerCase();
  } catch {
    return null;
  }
}

/**
 * Refuse requests whose `Host` is not allowed (403), cross-origin browser requests that change
 * state (403), and POST bodies that are not JSON (415). `"*"` allows every host (behind a proxy
 * that checks it).
 * @example
 * ```ts
 * app.use(originGuard({ allowedHosts: defaultAllowedHosts("127.0.0.1") }));
 * ```
 */
export function originGuard(options: { allowedHosts: readonly string[] | "*"; allowedOrigins?: readonly string[] }): MiddlewareHandler {
  const hosts = options.allowedHosts === "*" ? null : new Set(options.allowedHosts.map((h) => h.toLowerCase()));
  const origins = new Set(options.allowedOrigins ?? []);
  return async (c, next) => {
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    if (hosts && !hosts.has(hostname(host) ?? "")) {
      return respondError(c, new ApiError(403, "permission_error", "HOST_NOT_ALLOWED", `host "${host}" is not one this server answers to (allowed: ${[...hosts].join(", ")})`));
    }
    const safe = c.req.method === "GET" || c.req.method === "HEAD" || c.req.method === "OPTIONS";
    const origin = c.req.header("origin");
    if (!safe && origin !== undefined && !origins.has(origin)) {
      const name = origin === "null" ? null : hostname(origin.replace(/^[a-z]+:\/\//i, ""));
      const sameHost = name !== null && (hosts ? hosts.has(name) : name === hostname(host));
      if (!sameHost) return respondError(c, new ApiError(403, "permission_error", "ORIGIN_NOT_ALLOWED", `requests from origin "${origin}" are not allowed`));
    }
    if (c.req.method === "POST" && !/^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(c.req.header("content-type") ?? "")) {
      return respondError(c, new ApiError(415, "invalid_request_error", "UNSUPPORTED_MEDIA_TYPE", `the request body must be JSON (content-type: application/json), got ${JSON.stringify(c.req.header("content-type") ?? "none")}`));
    }
    await next();
  };
}
