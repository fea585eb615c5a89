/** Built-in plugins, and a registry that knows them. */
import { PluginRegistry } from "../core/recipe.ts";
import { logger } from "./logger.ts";
import { ablateDirection, addVector } from "./steering.ts";

export { logger, LoggerOptions, type LogRecord, type LogitsRecord, type ResidualRecord } from "./logger.ts";
export { addVector, ablateDirection } from "./steering.ts";

export const builtinPlugins = [logger, addVector, ablateDirection] as const;

/** A registry with the built-in plugins; register your own or name npm packages in recipes. */
export function createRegistry(): PluginRegistry {
  return new PluginRegistry(builtinPlugins);
}
