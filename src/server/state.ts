/**
 * What every route of one server shares: the model, plugins and artifacts requests may use, the
 * presets, the sequence slots, metrics and limits. Built once by `createChatServer`.
 */
import type { Artifacts } from "../core/artifacts.ts";
import type { Model } from "../core/backend.ts";
import type { ConfiguredPlugin } from "../core/plugin.ts";
import type { PluginRegistry } from "../core/recipe.ts";
import type { Metrics } from "./metrics.ts";
import type { Preset } from "./presets.ts";
import type { Slots } from "./slots.ts";

export interface Limits {
  /** Most tokens one request may ask for. */
  readonly maxTokens: number;
  /** Tokens generated when a request names no max_tokens. */
  readonly defaultMaxTokens: number;
  /** Prompt bytes read per token of context, at most (checked before tokenizing). */
  readonly maxPromptBytesPerToken: number;
  /** Whole request, queue wait included. */
  readonly requestTimeoutMs: number;
}

export interface ServerState {
  readonly model: Model;
  readonly modelId: string;
  readonly registry: PluginRegistry;
  readonly artifacts: Artifacts;
  readonly presets: ReadonlyMap<string, Preset & { readonly plugins: readonly ConfiguredPlugin[] }>;
  readonly slots: Slots;
  readonly metrics: Metrics;
  readonly limits: Limits;
  /** Aborted by `close()`: every generation stops. */
  readonly closing: AbortSignal;
}
