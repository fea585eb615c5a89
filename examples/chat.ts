/**
 * Steerkit chat server: an OpenAI-compatible API with steering per request, and a page that shows
 * steered and unsteered text side by side. Everything lives in `steerkit/server`; this file only
 * reads flags, opens the model, registers artifacts and listens.
 *
 *   bun examples/chat.ts                       # the embedded model on http://127.0.0.1:3000
 *   bun examples/chat.ts --help
 */
import { parseArgs } from "node:util";
import { createArtifacts, directionArtifact } from "../src/index.ts";
import { openModel } from "../src/adapters/index.ts";
import { DEFAULT_MODEL_PATH } from "../src/default-model.ts";
import { saeArtifact } from "../src/sae/artifact.ts";
import { createChatServer, loadPresetsDir } from "../src/server/index.ts";

const SHIPPED_SAE = new URL("../models/sae/stories260K-resid_post.2-topk", import.meta.url).pathname;
const SHIPPED_DOG = new URL("../models/directions/stories260K-dog/dog.safetensors", import.meta.url).pathname;

const HELP = `bun examples/chat.ts [options]

  --model <path>          .gguf file or ONNX export directory   (env STEERKIT_MODEL; default: embedded stories260K)
  --backend <name>        llama-cpp | onnx | reference          (default: from the path)
  --host <address>        address to bind                       (env HOST; default 127.0.0.1: this machine only)
  --port <n>              port                                  (env PORT; default 3000)
  --context <n>           context length per sequence
  --threads <n>           CPU threads for the forward pass
  --parallel <n>          generations at once                   (default 4)
  --queue <n>             requests that may wait; more get 429  (default 16)
  --no-batching           one forward pass per generation (default: generations running at once
                          are decoded together where the backend can: llama.cpp, and ONNX
                          exports with a batch dimension; /health says "batched")
  --presets <dir>         named recipes, one <name>.json each (trusted: requests pick them by name)
  --plugin <package>      import a plugin package you trust and register its plugins (repeatable;
                          env STEERKIT_PLUGINS, comma-separated); requests never import code
  --direction name=file   register a direction file requests may name (repeatable)
  --sae name=dir          register an SAE directory requests may name (repeatable)
                          (on the embedded model, its shipped SAE "sae" and direction "dog" are registered)
  --api-key <key>         require "Authorization: Bearer <key>"  (env STEERKIT_API_KEY)
  --help

API: POST /v1/chat/completions, POST /v1/completions (with "steering": "<preset>" or a recipe),
GET /v1/models, /v1/plugins, /v1/presets, /health, /metrics.`;

// Bad flags, an unreadable model, a plugin package that does not load: one line on stderr, exit 1.
main().catch((e: unknown) => {
  console.error(`steerkit chat: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});

async function main() {
  const { values: flags } = parseArgs({
    options: {
      model: { type: "string" }, backend: { type: "string" }, host: { type: "string" }, port: { type: "string" },
      context: { type: "string" }, threads: { type: "string" }, parallel: { type: "string" }, queue: { type: "string" },
      presets: { type: "string" }, plugin: { type: "string", multiple: true }, direction: { type: "string", multiple: true }, sae: { type: "string", multiple: true },
      "api-key": { type: "string" }, "no-batching": { type: "boolean" }, help: { type: "boolean" },
    },
  });
  if (flags.help) {
    console.log(HELP);
    process.exit(0);
  }

  const int = (name: string, value: string | undefined) => {
    if (value === undefined) return undefined;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number, got "${value}"`);
    return n;
  };

  const named = (flag: string, value: string) => {
    const [name, path] = value.split(/=(.*)/s);
    if (!name || !path) throw new Error(`--${flag} must be <name>=<path>, got "${value}"`);
    return [name, { path }] as const;
  };
  // Loaded on first use, once; requests name them and never see the paths.
  const artifacts = createArtifacts();
  for (const [name, source] of (flags.direction ?? []).map((f) => named("direction", f))) artifacts.register(name, directionArtifact, source);
  for (const [name, source] of (flags.sae ?? []).map((f) => named("sae", f))) artifacts.register(name, saeArtifact, source);

  const modelPath = flags.model ?? process.env.STEERKIT_MODEL;
  // On the embedded model, its shipped SAE and "dog" direction too, so the page can steer and shade with no other step.
  if (!modelPath) {
    if (!artifacts.has("sae")) artifacts.register("sae", saeArtifact, { path: SHIPPED_SAE });
    if (!artifacts.has("dog")) artifacts.register("dog", directionArtifact, { path: SHIPPED_DOG });
  }
  const model = await openModel(modelPath ?? DEFAULT_MODEL_PATH, {
    backend: flags.backend ?? (modelPath ? undefined : "llama-cpp"),
    contextLength: int("context", flags.context),
    threads: int("threads", flags.threads),
  });
  const host = flags.host ?? process.env.HOST ?? "127.0.0.1";
  const server = await createChatServer({
    model,
    artifacts,
    host,
    presets: flags.presets ? loadPresetsDir(flags.presets) : {},
    pluginPackages: flags.plugin ?? process.env.STEERKIT_PLUGINS?.split(",").filter(Boolean) ?? [],
    parallel: int("parallel", flags.parallel),
    maxQueue: int("queue", flags.queue),
    batched: !flags["no-batching"],
    apiKey: flags["api-key"] ?? process.env.STEERKIT_API_KEY,
  });
  // idleTimeout 0: a stream may pause longer than Bun's default 10 s (a slow model, a long prefill).
  const http = Bun.serve({ hostname: host, port: int("port", flags.port ?? process.env.PORT) ?? 3000, fetch: server.fetch, idleTimeout: 0 });
  console.log(`steerkit chat: ${model.info.name} (${model.info.backend}, ${model.info.nLayers} layers) on ${http.url}`);

  process.on("SIGINT", async () => {
    await server.close();
    http.stop();
    model.dispose();
    process.exit(0);
  });
}
