/**
 * steerkit/server: an OpenAI-compatible chat server with steering per request, as a library.
 * `createChatServer` returns a Hono app; `examples/chat.ts` is the command that runs it.
 */
export { createChatServer, type ChatServer, type ChatServerOptions } from "./app.ts";
export { loadPresetsDir, type Preset } from "./presets.ts";
export { describePlugin, type PluginDescription } from "./plugin-schemas.ts";
export { defaultAllowedHosts, originGuard } from "./guard.ts";
export { ApiError, toOpenAIError, type OpenAIErrorBody } from "./errors.ts";
export { FINISH_REASONS } from "./openai.ts";
export { ChatBody, CompletionBody, Message, Steering } from "./schemas.ts";
export { Slots } from "./slots.ts";
