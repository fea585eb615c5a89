/**
 * The OpenAI-compatible routes: `POST /v1/chat/completions`, `POST /v1/completions` (JSON, or
 * server-sent events ending in `data: [DONE]`), `GET /v1/models`, and Steerkit's `GET /v1/plugins`
 * and `GET /v1/presets`. Responses have OpenAI's shapes so existing clients work unchanged; what
 * only Steerkit knows (its own finish reason, the seed, timings) rides in an extra `steerkit` field.
 */
import { vValidator } from "@hono/valibot-validator";
import { Hono } from "hono";
import type { FinishReason, GenerationResult } from "../core/generate.ts";
import { startCompletion, type CompletionInput } from "./completions.ts";
import { respondError, toOpenAIError, validationError } from "./errors.ts";
import { describePlugin } from "./plugin-schemas.ts";
import { ChatBody, CompletionBody, type SamplingFields } from "./schemas.ts";
import type { ServerState } from "./state.ts";
import type { TraceValue } from "./trace.ts";

/**
 * Steerkit's finish reasons in OpenAI's words: "stop" when the model or a stop string ended the
 * text (or a plugin ended or answered it), "length" when a token budget did (max_tokens or the
 * context).
 */
export const FINISH_REASONS: Record<FinishReason, "stop" | "length"> = { eos: "stop", stop: "stop", length: "length", context: "length", plugin: "stop", respond: "stop" };

type Kind = "chat" | "text";

/** The `/v1` routes of one server. */
export function openaiRoutes(state: ServerState): Hono {
  const app = new Hono();
  const invalid = (result: { success: boolean; issues?: unknown }, c: Parameters<typeof respondError>[0]) => {
    if (!result.success) return respondError(c, validationError(result.issues as Parameters<typeof validationError>[0]));
  };

  app.post("/chat/completions", vValidator("json", ChatBody, invalid), (c) => {
    const body = c.req.valid("json");
    const messages = body.messages.map((m) => ({ role: m.role, content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("") }));
    return complete(c, state, "chat", body, { sampling: body, messages });
  });

  app.post("/completions", vValidator("json", CompletionBody, invalid), (c) => {
    const body = c.req.valid("json");
    return complete(c, state, "text", body, { sampling: body, prompt: typeof body.prompt === "string" ? body.prompt : body.prompt[0] });
  });

  app.get("/models", (c) =>
    c.json({
      object: "list",
      data: [{ id: state.modelId, object: "model", created: 0, owned_by: "steerkit", steerkit: { ...state.model.info, chatTemplate: state.model.info.chatTemplate !== null } }],
    }),
  );

  app.get("/plugins", (c) =>
    c.json({
      object: "list",
      data: state.registry.names.map((n) => describePlugin(state.registry.get(n)!)),
      artifacts: state.artifacts.list(),
    }),
  );

  // Names, descriptions and which plugins a preset runs; its options stay private (they may hold paths).
  app.get("/presets", (c) =>
    c.json({
      object: "list",
      data: [...state.presets].map(([name, p]) => ({ name, description: p.description, plugins: p.recipe.map((e) => e.plugin) })),
    }),
  );

  return app;
}

async function complete(c: Parameters<typeof respondError>[0], state: ServerState, kind: Kind, body: SamplingFields, input: CompletionInput): Promise<Response> {
  let run;
  try {
    run = await startCompletion(state, input, c.req.raw.signal);
  } catch (e) {
    return respondError(c, e);
  }
  const id = `${kind === "chat" ? "chatcmpl" : "cmpl"}-${crypto.randomUUID().replaceAll("-", "")}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: kind === "chat" ? "chat.completion" : "text_completion", created, model: state.modelId };

  const tracing = body.trace != null;
  if (!body.stream) {
    const trace: TraceValue[] = [];
    try {
      for await (const ev of run.events) {
        if (ev.type === "error") throw ev.error;
        if (ev.type === "trace") trace.push({ position: ev.position, value: ev.value });
        if (ev.type === "done") return c.json({ ...head, choices: [choice(kind, ev.result.text, ev.result)], usage: usage(ev.result), steerkit: { ...extra(ev.result), ...(tracing && { trace }) } });
      }
      throw new Error("the generation ended without a result");
    } catch (e) {
      return respondError(c, e);
    }
  }

  const chunkHead = { ...head, object: kind === "chat" ? "chat.completion.chunk" : "text_completion" };
  const includeUsage = body.stream_options?.include_usage === true;
  const encoder = new TextEncoder();
  const line = (data: unknown) => encoder.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
  const delta = (text: string, finish: string | null, first = false) =>
    kind === "chat"
      ? { ...chunkHead, choices: [{ index: 0, delta: first ? { role: "assistant", content: "" } : finish ? {} : { content: text }, logprobs: null, finish_reason: finish }] }
      : { ...chunkHead, choices: [{ index: 0, text, logprobs: null, finish_reason: finish }] };
  // With a trace, each text chunk says which token positions its text covers (a token that only
  // starts a character adds its position to the next chunk), so a client can match trace values to text.
  const positions: number[] = [];
  const reader = run.events.getReader();
  const sse = new ReadableStream<Uint8Array>({
    // Something at once, so the status and headers go out before the first token (Bun sends
    // them with the first chunk): the role chunk OpenAI also sends first, or an SSE comment.
    start(controller) {
      controller.enqueue(kind === "chat" ? line(delta("", null, true)) : encoder.encode(": steerkit\n\n"));
    },
    // Each pull must enqueue or close (a pull that enqueues nothing is not called again), so
    // events without text (a token that only starts a character) are skipped in a loop.
    async pull(controller) {
      for (;;) {
        const ev = await reader.read();
        if (ev.done) return controller.close();
        const e = ev.value;
        if (e.type === "error") {
          // Mid-stream failure (a plugin, a timeout): OpenAI's clients read `data: {"error": ...}`.
          controller.enqueue(line(toOpenAIError(e.error).body));
          controller.enqueue(line("[DONE]"));
          return controller.close();
        }
        if (e.type === "trace") {
          controller.enqueue(line({ ...chunkHead, choices: [], steerkit: { trace: { position: e.position, value: e.value } } }));
          return;
        }
        if (e.type !== "done") {
          if (tracing && e.type === "token") positions.push(run.promptTokens + e.step - 1);
          if (e.text.length === 0) continue;
          controller.enqueue(line(tracing ? { ...delta(e.text, null), steerkit: { positions: positions.splice(0) } } : delta(e.text, null)));
          return;
        }
        controller.enqueue(line({ ...delta("", FINISH_REASONS[e.result.finishReason]), steerkit: extra(e.result) }));
        if (includeUsage) controller.enqueue(line({ ...chunkHead, choices: [], usage: usage(e.result) }));
        controller.enqueue(line("[DONE]"));
        return controller.close();
      }
    },
    cancel(reason) {
      return reader.cancel(reason); // the client left: stops the generation, frees its sequence
    },
  });
  return new Response(sse, { headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" } });
}

function choice(kind: Kind, text: string, r: GenerationResult) {
  const finish_reason = FINISH_REASONS[r.finishReason];
  return kind === "chat" ? { index: 0, message: { role: "assistant", content: text }, logprobs: null, finish_reason } : { index: 0, text, logprobs: null, finish_reason };
}

function usage(r: GenerationResult) {
  return { prompt_tokens: r.promptTokens.length, completion_tokens: r.tokens.length, total_tokens: r.promptTokens.length + r.tokens.length };
}

function extra(r: GenerationResult) {
  return { finish_reason: r.finishReason, seed: r.seed, timings: r.timings };
}
