/**
 * steerkit/sae: sparse autoencoders as their tools write them, and what Steerkit does with them.
 * - the one in-memory shape and its reference math (`Sae`, `encode`, `decode`);
 * - loading SAELens, EleutherAI sparsify and Gemma Scope files (`loadSae`), writing SAELens's
 *   (`saveSaelens`), and the `saeArtifact` kind recipes name SAEs through;
 * - discovery (`contrastLatents`, `topContexts`, `activeLatents`) and training (`collectResiduals`,
 *   `generateCorpus`, `trainSae`).
 * The plugins that steer with them (`sae-clamp`, `sae-latents`) are in `steerkit/plugins`.
 */
export * from "./sae.ts";
export { loadSae, detectSaeFamily, checkSaeFitsModel, type LoadSaeOptions } from "./load.ts";
export { saveSaelens, type SaveSaelensOptions } from "./save-saelens.ts";
export { saeArtifact, checkSae } from "./artifact.ts";
export {
  contrastLatents,
  topContexts,
  activeLatents,
  type PromptSet,
  type DiscoverOptions,
  type LatentContrast,
  type ContrastResult,
  type TopContextsResult,
  type ActivatingContext,
  type TokenLatents,
} from "./discover.ts";
export { collectResiduals, generateCorpus, type CollectOptions, type Residuals, type CorpusOptions } from "./collect.ts";
export { trainSae, type TrainOptions, type TrainResult, type TrainStats, type TrainProgress } from "./train.ts";
export { evaluateSae, type SaeEvaluation } from "./evaluate.ts";
