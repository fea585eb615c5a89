/** Steerkit core: the plugin contract, the hook chain, the Backend contract and generation. */
export * from "./tensor.ts";
export * from "./sites.ts";
export type * from "./backend.ts";
export { CAPABILITIES } from "./backend.ts";
export { checkPrefill, checkAffineEdit, type PrefillLimits } from "./backend-kit.ts";
export * from "./errors.ts";
export { validateSync, isStandardSchema, type StandardSchemaV1 } from "./schema.ts";
export * from "./plugin.ts";
export { compose } from "./compose.ts";
export {
  compileChain,
  preparePlugins,
  preparePluginsSync,
  checkCapabilities,
  orderPlugins,
  applyAffine,
  type Chain,
  type ChainOptions,
  type ChainModel,
  type ChainPlugin,
  type CreatedPlugin,
} from "./chain.ts";
export * from "./points.ts";
export * from "./artifacts.ts";
export { createRng, createSampler, type SamplingOptions, type Sampler } from "./sampling.ts";
export { IncrementalDetokenizer, StopStringMatcher } from "./text-stream.ts";
export {
  generate,
  stream,
  promptTokens,
  SamplingSchema,
  type GenerateOptions,
  type GenerationEvent,
  type GenerationResult,
  type FinishReason,
  type SamplingInput,
} from "./generate.ts";
export * from "./recipe.ts";
export { chatPromptTokens } from "./chat-tokens.ts";
export { score, scoreTokens, type ScoreOptions, type ScoreResult } from "./score.ts";
export { renderChat, ChatTemplateError, type RenderChatOptions } from "./chat-template.ts";
