/**
 * Steerkit chat example: a Hono server with steering chosen per request.
 *
 *   bun examples/chat.ts [--model <path>] [--backend llama-cpp|onnx|reference] [--port 3000] [--direction name=file.json ...]
 *
 * Open http://localhost:3000, or call the API:
 *   POST /api/generate   { "messages": [...] | "prompt": "...", "recipe": [{ "plugin", "options" }], "maxTokens", "temperature", ..., "stream": true }
 *     stream: true  -> text/event-stream of `token` events, then one `done` (or an `error`)
 *     stream: false -> one JSON GenerationResult
 *   GET  /api/info       model info and the plugins a recipe may name
 *
 * Every request compiles its own chain: concurrent requests with different recipes share the model
 * but never each other's steering. A request's recipe is untrusted: it cannot set trusted-only
 * options (the logger's `file`), import packages or exceed the recipe length limit. A bad request is
 * answered 4xx (by the error's code) with the failing fields; a plugin that fails mid-stream ends
 * that stream with an `error` event; the server keeps serving.
 */
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import * as v from "valibot";
import { createArtifacts, directionArtifact, errorStatus, OptionsError, type Artifacts, preparePlugins, SamplingSchema, SteerkitError, stream, type GenerateOptions, type GenerationEvent, type Model, type PluginRegistry } from "../src/index.ts";
import { openModel } from "../src/adapters/index.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { createRegistry } from "../src/plugins/index.ts";
import { page } from "./chat-page.ts";

const Body = v.object({
  ...SamplingSchema.entries,
  prompt: v.optional(v.string()),
  messages: v.optional(v.pipe(v.array(v.object({ role: v.string(), content: v.string() })), v.minLength(1))),
  recipe: v.optional(v.array(v.unknown()), []),
  stream: v.optional(v.boolean(), true),
});

/**
 * The app. `artifacts` are what request recipes may name (registered from the server's own
 * configuration: a request can name them, never give a path).
 */
export function createChatApp(model: Model, registry: PluginRegistry = createRegistry(), artifacts: Artifacts = createArtifacts()) {
  const app = new Hono();

  app.get("/", (c) => c.html(page(model.info)));

  app.get("/api/info", (c) =>
    c.json({
      model: model.info,
      capabilities: model.capabilities,
      plugins: registry.names.map((name) => ({ name, description: registry.get(name)!.description ?? "" })),
      artifacts: artifacts.list(),
    }),
  );

  app.post("/api/generate", async (c) => {
    let json: unknown;
    try {
      json = await c.req.json();
    } catch {
      return c.json({ error: "the request body must be JSON" }, 400);
    }
    const parsed = v.safeParse(Body, json);
    if (!parsed.success) {
      const issues = parsed.issues.map((i) => ({ path: v.getDotPath(i) ?? "", message: i.message }));
      return c.json({ error: "invalid request", issues }, 400);
    }
    const { recipe, stream: streaming, prompt, messages, ...sampling } = parsed.output;
    let events: ReadableStream<GenerationEvent>;
    try {
      const plugins = await preparePlugins(model, await registry.resolve(recipe, { trust: "untrusted" }), { artifacts });
      const options: GenerateOptions = { ...sampling, ...(messages ? { messages } : { prompt }), plugins, signal: c.req.raw.signal };
      events = stream(model, options); // invalid input throws here: answered 400 before any token
    } catch (e) {
      const status = errorStatus(e).status;
      return c.json(describeError(e), status === 403 ? 403 : status >= 500 ? 500 : 400);
    }
    if (!streaming) {
      try {
        for await (const ev of events) if (ev.type === "done") return c.json(ev.result);
        throw new Error("generation ended without a result");
      } catch (e) {
        console.error("generate failed:", e);
        return c.json(describeError(e), 500);
      }
    }
    return streamSSE(c, async (sse) => {
      try {
        for await (const ev of events) {
          if (ev.type === "done") await sse.writeSSE({ event: "done", data: JSON.stringify(ev.result) });
          else await sse.writeSSE({ event: "token", data: JSON.stringify(ev) });
        }
      } catch (e) {
        await sse.writeSSE({ event: "error", data: JSON.stringify(describeError(e)) });
      }
    });
  });

  return app;
}

function describeError(e: unknown): { error: string; code?: string; issues?: unknown } {
  if (e instanceof OptionsError) return { error: e.message, code: e.code, issues: e.issues };
  if (e instanceof SteerkitError) return { error: e.message, code: e.code };
  return { error: e instanceof Error ? e.message : String(e) };
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { model: { type: "string" }, backend: { type: "string" }, port: { type: "string" }, threads: { type: "string" }, direction: { type: "string", multiple: true } },
  });
  const artifacts = createArtifacts();
  for (const flag of values.direction ?? []) {
    const [name, path] = flag.split(/=(.*)/s);
    if (!name || !path) throw new Error(`--direction must be <name>=<file.json>, got "${flag}"`);
    artifacts.register(name, directionArtifact, { path });
  }
  const path = values.model ?? DEFAULT_MODEL_PATH;
  const model = await openModel(path, { backend: values.backend ?? (values.model ? undefined : "llama-cpp"), threads: values.threads ? Number(values.threads) : undefined });
  const port = Number(values.port ?? process.env.PORT ?? 3000);
  const server = Bun.serve({ port, fetch: createChatApp(model, createRegistry(), artifacts).fetch, idleTimeout: 120 });
  console.log(`steerkit chat: ${model.info.name} (${model.info.backend}, ${model.info.nLayers} layers) on http://localhost:${server.port}`);
}
