/** Built-in plugins, and a registry that knows them. */
import { PluginRegistry } from "../core/recipe.ts";
import { logger } from "./logger.ts";
import { saeClamp } from "./sae-clamp.ts";
import { saeLatents } from "./sae-latents.ts";
import { ablateDirection, addVector } from "./steering.ts";

export { logger, LoggerOptions, type LogRecord, type LogitsRecord, type ResidualRecord } from "./logger.ts";
export { addVector, ablateDirection } from "./steering.ts";
export { saeClamp, SaeClampOptions, type ClampMode } from "./sae-clamp.ts";
export { saeLatents, SaeLatentsOptions, type LatentRecord } from "./sae-latents.ts";

export const builtinPlugins = [logger, addVector, ablateDirection, saeClamp, saeLatents] as const;

/**
 * A registry with the built-in plugins; register your own or name npm packages in trusted recipes.
 * @example
 * ```ts
 * const registry = createRegistry().register(myPlugin);
 * const fromRequest = await registry.resolve(body.steering); // untrusted: no files, no packages
 * const fromCli = await registry.resolve(loadRecipeFile("steer.json"), { trust: "trusted" });
 * ```
 */
export function createRegistry(): PluginRegistry {
  return new PluginRegistry(builtinPlugins);
}
