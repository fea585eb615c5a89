/**
 * `createChatServer`: a Hono app serving one model with steering chosen per request, safe by
 * default. Requests are untrusted (their recipes cannot write files or load code, and every cost is
 * bounded); the app answers only to allowed hosts and same-origin JSON, optionally behind a bearer
 * key; at most `parallel` generations run at once, others wait in a bounded queue or get 429.
 */
import { Hono } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { createArtifacts, type Artifacts } from "../core/artifacts.ts";
import type { Model } from "../core/backend.ts";
import type { PluginRegistry } from "../core/recipe.ts";
import { createRegistry } from "../plugins/index.ts";
import { ApiError, respondError } from "./errors.ts";
import { defaultAllowedHosts, originGuard } from "./guard.ts";
import { Metrics } from "./metrics.ts";
import { openaiRoutes } from "./openai.ts";
import { page } from "./page.ts";
import { toPreset, type Preset } from "./presets.ts";
import { Slots } from "./slots.ts";
import type { ServerState } from "./state.ts";

export interface ChatServerOptions {
  readonly model: Model;
  /** The id `/v1/models` lists and responses carry (default: the model's name). Requests may name any model; this one answers. */
  readonly modelId?: string;
  /** Plugins requests and presets may name (default: the built-ins). Packages are never imported for a request. */
  readonly registry?: PluginRegistry;
  /**
   * Plugin packages to import and register at start-up (npm names or paths, resolved from the
   * working directory): trusted, your configuration. Requests can then name their plugins; they
   * never make the server import anything.
   */
  readonly pluginPackages?: readonly string[];
  /** Named artifacts (directions, SAEs) recipes may refer to. */
  readonly artifacts?: Artifacts;
  /** Named recipes requests choose with `"steering": "<name>"`: trusted (your configuration). */
  readonly presets?: Record<string, Preset | readonly unknown[]>;
  /** Generations at once, one sequence each (default 4). */
  readonly parallel?: number;
  /**
   * Decode the generations running at once together, in shared forward passes (default true),
   * where the model's backend can (`model.batched`, llama.cpp): aggregate throughput grows with
   * `parallel`, each request keeps its own steering, and passes run off the JS thread. False: one
   * sequence and forward pass per generation.
   */
  readonly batched?: boolean;
  /** Requests that may wait for a sequence; more get 429 (default 16). */
  readonly maxQueue?: number;
  /** Most tokens one request may ask for (default: the context length). */
  readonly maxTokens?: number;
  /** Tokens generated when a request names no max_tokens (default 256, at most `maxTokens`). */
  readonly defaultMaxTokens?: number;
  /** Largest request body in bytes (default 4 MiB). */
  readonly bodyLimit?: number;
  /** Prompt bytes accepted per token of context, checked before tokenizing (default 32). */
  readonly maxPromptBytesPerToken?: number;
  /** Whole-request timeout in ms, queue wait included (default 10 minutes). */
  readonly requestTimeoutMs?: number;
  /** Require `Authorization: Bearer <apiKey>` on `/v1/*` and `/metrics`. */
  readonly apiKey?: string;
  /** The address the server is bound to: decides the default `allowedHosts` (default "127.0.0.1"). */
  readonly host?: string;
  /** Host names the server answers to (`"*"`: any, e.g. behind a proxy that checks). */
  readonly allowedHosts?: readonly string[] | "*";
  /** Origins (`https://app.example`) allowed to POST besides the allowed hosts' own. */
  readonly allowedOrigins?: readonly string[];
  /** Serve the chat page at `/` (default true). */
  readonly page?: boolean;
}

export interface ChatServer {
  /** The Hono app: `Bun.serve({ fetch: server.app.fetch })`, or mount it in yours. */
  readonly app: Hono;
  readonly fetch: (request: Request) => Response | Promise<Response>;
  /** Generations running now and requests waiting; whether they are decoded together. */
  stats(): { active: number; queued: number; parallel: number; batched: boolean };
  /** Resolves when nothing runs or waits. */
  whenIdle(): Promise<void>;
  /** Stop every generation and refuse new requests (503); resolves when all have ended. The model stays open: it is yours. */
  close(): Promise<void>;
}

/** `model`, except that its sequences come from `view`. */
function sequencesFrom(model: Model, view: Model): Model {
  return {
    info: model.info,
    capabilities: model.capabilities,
    tokenize: (text, o) => model.tokenize(text, o),
    detokenize: (tokens) => model.detokenize(tokens),
    applyChatTemplate: (messages, o) => model.applyChatTemplate(messages, o),
    createSequence: (o) => view.createSequence(o),
    dispose: () => view.dispose(),
  };
}

/**
 * A steering chat server for one model.
 * @example
 * ```ts
 * const model = await openModel(DEFAULT_MODEL_PATH);
 * const server = createChatServer({ model, presets: loadPresetsDir("presets"), parallel: 2 });
 * Bun.serve({ hostname: "127.0.0.1", port: 3000, fetch: server.fetch, idleTimeout: 0 });
 * // curl localhost:3000/v1/chat/completions -H 'content-type: application/json' \
 * //   -d '{"messages":[{"role":"user","content":"Hi"}],"steering":"calm","stream":true}'
 * ```
 */
export async function createChatServer(options: ChatServerOptions): Promise<ChatServer> {
  const slots = new Slots(options.parallel ?? 4, options.maxQueue ?? 16);
  const registry = options.registry ?? createRegistry();
  for (const name of options.pluginPackages ?? []) await registry.registerPackage(name);
  const artifacts = options.artifacts ?? createArtifacts();
  const maxTokens = options.maxTokens ?? options.model.info.contextLength;
  const closing = new AbortController();
  const presets = new Map<string, ServerState["presets"] extends ReadonlyMap<string, infer P> ? P : never>();
  for (const [name, value] of Object.entries(options.presets ?? {})) {
    const preset = Array.isArray(value) ? toPreset(value, `preset "${name}"`) : (value as Preset);
    // Trusted: the operator wrote it. Resolved now so that a bad preset stops the server starting.
    presets.set(name, { ...preset, plugins: await registry.resolve(preset.recipe, { trust: "trusted" }) });
  }
  // Last, once nothing else can fail: the batched view holds a context until close(). It shares
  // the model's weights; the server owns (and closes) only the view, and takes only sequences from
  // it (tokenizing and templates stay the given model's).
  const batched = options.batched !== false && options.model.batched ? options.model.batched({ sequences: slots.size }) : null;
  const model = batched ? sequencesFrom(options.model, batched) : options.model;
  const state: ServerState = {
    model,
    modelId: options.modelId ?? model.info.name,
    registry,
    artifacts,
    presets,
    slots,
    metrics: new Metrics(),
    limits: {
      maxTokens,
      defaultMaxTokens: Math.min(options.defaultMaxTokens ?? 256, maxTokens),
      maxPromptBytesPerToken: options.maxPromptBytesPerToken ?? 32,
      requestTimeoutMs: options.requestTimeoutMs ?? 600_000,
    },
    closing: closing.signal,
  };

  const app = new Hono();
  // Hono's own errors (malformed JSON, a refused bearer token) carry a status, some a response.
  app.onError((e, c) => {
    if (!(e instanceof HTTPException)) return respondError(c, e);
    if (e.res) return e.getResponse();
    return respondError(c, new ApiError(e.status as ContentfulStatusCode, e.status === 401 ? "authentication_error" : "invalid_request_error", "INVALID_REQUEST", e.message));
  });
  app.notFound((c) => respondError(c, new ApiError(404, "invalid_request_error", "NOT_FOUND", `no route ${c.req.method} ${c.req.path}`)));
  app.use(async (c, next) => {
    await next();
    state.metrics.request(c.req.routePath === "/*" ? "other" : c.req.routePath, c.res.status);
  });
  app.use(originGuard({ allowedHosts: options.allowedHosts ?? defaultAllowedHosts(options.host ?? "127.0.0.1"), allowedOrigins: options.allowedOrigins }));
  app.use(async (c, next) => {
    if (closing.signal.aborted) return respondError(c, new ApiError(503, "server_error", "SHUTTING_DOWN", "the server is shutting down"));
    await next();
  });
  const limit = options.bodyLimit ?? 4 * 1024 * 1024;
  app.use(
    bodyLimit({
      maxSize: limit,
      onError: (c) => respondError(c, new ApiError(413, "invalid_request_error", "BODY_TOO_LARGE", `the request body is larger than this server accepts (${limit} bytes)`)),
    }),
  );
  if (options.apiKey !== undefined) {
    const unauthorized = () => ({ error: { message: "a valid API key is required: Authorization: Bearer <key>", type: "authentication_error", param: null, code: "INVALID_API_KEY" } });
    const auth = bearerAuth({ token: options.apiKey, noAuthenticationHeaderMessage: unauthorized, invalidAuthenticationHeaderMessage: unauthorized, invalidTokenMessage: unauthorized });
    app.use("/v1/*", auth);
    app.use("/metrics", auth);
  }

  app.get("/health", (c) => c.json({ status: "ok", model: state.modelId, ...stats() }));
  app.get("/metrics", (c) => c.text(state.metrics.render(state.slots), 200, { "content-type": "text/plain; version=0.0.4; charset=utf-8" }));
  app.route("/v1", openaiRoutes(state));
  if (options.page !== false) app.get("/", (c) => c.html(page(model.info, { apiKey: options.apiKey !== undefined })));

  function stats() {
    return { active: state.slots.active, queued: state.slots.queued, parallel: state.slots.size, batched: batched !== null };
  }
  return {
    app,
    fetch: app.fetch,
    stats,
    whenIdle: () => state.slots.whenIdle(),
    async close() {
      closing.abort(new DOMException("the server is shutting down", "AbortError"));
      await state.slots.whenIdle();
      batched?.dispose();
    },
  };
}
