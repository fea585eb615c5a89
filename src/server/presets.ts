/**
 * Presets: named recipes from the server's own configuration, which requests choose by name
 * (`"steering": "calm"`). They are trusted — they may write files, name packages — because the
 * operator wrote them; a request only picks one. A presets directory holds one `<name>.json` per
 * preset: a recipe array, or `{ "description": "...", "recipe": [...] }`.
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseRecipe, RecipeError, type Recipe } from "../core/recipe.ts";

export interface Preset {
  readonly description: string;
  readonly recipe: Recipe;
}

/**
 * Read every `*.json` in a directory as a preset named after the file.
 * @example
 * ```ts
 * const server = createChatServer({ model, presets: loadPresetsDir("presets/") });
 * ```
 */
export function loadPresetsDir(dir: string): Record<string, Preset> {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  } catch (e) {
    throw new RecipeError(`presets directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const presets: Record<string, Preset> = {};
  for (const file of files) {
    const path = join(dir, file);
    let json: unknown;
    try {
      json = JSON.parse(readFileSync(path, "utf8"));
    } catch (e) {
      throw new RecipeError(`${path}: not valid JSON: ${(e as Error).message}`);
    }
    presets[basename(file, ".json")] = toPreset(json, path);
  }
  return presets;
}

/** A preset given as a recipe or as `{ description, recipe }`. */
export function toPreset(value: unknown, source: string): Preset {
  if (Array.isArray(value)) return { description: "", recipe: parseRecipe(value, source) };
  const o = value as { description?: unknown; recipe?: unknown } | null;
  if (typeof o !== "object" || o === null || !("recipe" in o)) throw new RecipeError(`${source}: expected a recipe array or { "description", "recipe" }`);
  return { description: typeof o.description === "string" ? o.description : "", recipe: parseRecipe(o.recipe, `${source}.recipe`) };
}
