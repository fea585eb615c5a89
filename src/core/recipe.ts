/**
 * Recipes: a steering chain as data, `[{ "plugin": "<name>", "options": {...} }]`, the one shape the
 * library, the CLI and the chat server accept. Names resolve through a registry of plugin
 * factories: the built-ins, ones a user registers, and npm packages named in the recipe
 * (`steerkit-plugin-*` or scoped names), imported on demand.
 *
 * Trust: a recipe is resolved as `trusted` (written by whoever runs the code: code, a CLI flag, a
 * server's own presets) or `untrusted` (anything a request carries), and untrusted is the default.
 * An untrusted recipe cannot import packages, cannot set a plugin's trusted-only options (a file
 * to write, a callback) and is bounded in length; artifacts it can only name, never give a path.
 */
import { readRegularText } from "../formats/files.ts";
import { OptionsError, SteerkitError, UntrustedOptionError } from "./errors.ts";
import type { ConfiguredPlugin, PluginFactory } from "./plugin.ts";

export interface RecipeEntry {
  readonly plugin: string;
  readonly options?: unknown;
}
export type Recipe = readonly RecipeEntry[];

export class RecipeError extends SteerkitError {
  override name = "RecipeError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_RECIPE", message, options);
  }
}

export class UnknownPluginError extends SteerkitError {
  override name = "UnknownPluginError";
  constructor(
    readonly plugin: string,
    readonly known: readonly string[],
    detail = "",
  ) {
    super("UNKNOWN_PLUGIN", `unknown plugin "${plugin}"${detail}; known plugins: ${known.join(", ") || "(none)"}`);
  }
}

/** Check the shape of a parsed recipe (not the plugin options: those are each plugin's schema). */
export function parseRecipe(value: unknown, source = "recipe"): Recipe {
  if (!Array.isArray(value)) throw new RecipeError(`${source}: expected an array of { "plugin": "<name>", "options": {...} }, got ${kind(value)}`);
  return value.map((entry, i) => {
    const at = `${source}[${i}]`;
    if (typeof entry !== "object" || entry === null || Array.isArray(entry)) throw new RecipeError(`${at}: expected an object, got ${kind(entry)}`);
    const { plugin, options, ...rest } = entry as Record<string, unknown>;
    if (typeof plugin !== "string" || plugin.length === 0) throw new RecipeError(`${at}.plugin: expected a plugin name, got ${kind(plugin)}`);
    const extra = Object.keys(rest);
    if (extra.length) throw new RecipeError(`${at}: unexpected field${extra.length > 1 ? "s" : ""} ${extra.map((k) => `"${k}"`).join(", ")} (expected "plugin" and "options")`);
    return options === undefined ? { plugin } : { plugin, options };
  });
}

/** A recipe file larger than this is refused before it is read (inline vectors of a wide model fit easily). */
export const MAX_RECIPE_FILE_BYTES = 64 * 1024 * 1024;

/** Read and check a recipe JSON file (a FIFO, device or directory fails at once, naming what it is). */
export function loadRecipeFile(path: string): Recipe {
  const text = readRegularText(
    path,
    (reason) => {
      throw new RecipeError(`${path}: cannot read recipe (${reason})`);
    },
    { expected: "a recipe JSON file", maxBytes: MAX_RECIPE_FILE_BYTES },
  );
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RecipeError(`${path}: not valid JSON: ${(e as Error).message}`);
  }
  return parseRecipe(json, path);
}

function kind(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  return typeof v === "object" ? "an object" : `${typeof v} ${JSON.stringify(v)}`;
}

export type Trust = "trusted" | "untrusted";

export interface ResolveOptions {
  /**
   * Who wrote the recipe (default "untrusted"): "trusted" for code, the CLI and a server's own
   * presets; "untrusted" for anything a request carries.
   */
  readonly trust?: Trust;
  /** Import npm packages named in the recipe that are not registered (default: true when trusted; never when untrusted). */
  readonly importPackages?: boolean;
  /** Longest recipe accepted when untrusted (default {@link MAX_UNTRUSTED_ENTRIES}). */
  readonly maxEntries?: number;
}

/**
 * Longest untrusted recipe by default: composing affine edits at one point grows with the square
 * of their count, so an unbounded request could hold the server for minutes.
 */
export const MAX_UNTRUSTED_ENTRIES = 32;

/** Package names a recipe may import: `steerkit-plugin-*` or any scoped package. */
const IMPORTABLE = /^(steerkit-plugin-[a-z0-9][\w.-]*|@[a-z0-9][\w.-]*\/[a-z0-9][\w.-]*)$/;

export class PluginRegistry {
  private readonly factories = new Map<string, PluginFactory<any>>();

  constructor(factories: Iterable<PluginFactory<any>> = []) {
    for (const f of factories) this.register(f);
  }

  register(factory: PluginFactory<any>): this {
    if (typeof factory !== "function" || typeof factory.pluginName !== "string" || !Array.isArray(factory.trustedOptions)) {
      throw new TypeError("register: expected a plugin factory made by definePlugin");
    }
    const existing = this.factories.get(factory.pluginName);
    if (existing && existing !== factory) throw new TypeError(`register: a different plugin named "${factory.pluginName}" is already registered`);
    this.factories.set(factory.pluginName, factory);
    return this;
  }

  get(name: string): PluginFactory<any> | undefined {
    return this.factories.get(name);
  }

  get names(): string[] {
    return [...this.factories.keys()].sort();
  }

  /**
   * Configure every entry of a recipe; errors name the entry, the plugin and the failing fields.
   * @example
   * ```ts
   * const registry = createRegistry();
   * // a request's recipe: untrusted (the default)
   * const plugins = await registry.resolve(body.steering);
   * // the CLI's --recipe file: trusted, may import steerkit-plugin-* packages and write files
   * const mine = await registry.resolve(loadRecipeFile("steer.json"), { trust: "trusted" });
   * ```
   */
  async resolve(recipe: unknown, options: ResolveOptions = {}): Promise<ConfiguredPlugin[]> {
    const trusted = options.trust === "trusted";
    const entries = parseRecipe(recipe);
    if (trusted && (options.importPackages ?? true)) {
      for (const e of entries) {
        if (!this.factories.has(e.plugin) && IMPORTABLE.test(e.plugin)) await this.importPackage(e.plugin);
      }
    }
    return this.resolveSync(entries, options);
  }

  /** Like `resolve`, without importing packages. */
  resolveSync(recipe: unknown, options: Omit<ResolveOptions, "importPackages"> = {}): ConfiguredPlugin[] {
    const trusted = options.trust === "trusted";
    const entries = parseRecipe(recipe);
    const max = options.maxEntries ?? MAX_UNTRUSTED_ENTRIES;
    if (!trusted && entries.length > max) {
      throw new RecipeError(`recipe: ${entries.length} entries; a request may give at most ${max}`);
    }
    return entries.map((e, i) => {
      const factory = this.factories.get(e.plugin);
      if (!factory) {
        const hint = !trusted && IMPORTABLE.test(e.plugin) ? " (packages are imported only for trusted recipes)" : "";
        throw new UnknownPluginError(e.plugin, this.names, ` in recipe[${i}]${hint}`);
      }
      if (!trusted && factory.trustedOptions.length && typeof e.options === "object" && e.options !== null) {
        const set = factory.trustedOptions.filter((k) => (e.options as Record<string, unknown>)[k] !== undefined);
        if (set.length) throw new UntrustedOptionError(`recipe[${i}] (plugin "${e.plugin}")`, set);
      }
      try {
        return factory(e.options ?? {});
      } catch (err) {
        if (err instanceof OptionsError) throw new OptionsError(`recipe[${i}] (plugin "${e.plugin}")`, err.issues);
        throw err;
      }
    });
  }

  /**
   * Import a package the operator trusts (a server's `--plugin`, a CLI's configuration) and
   * register every plugin factory it exports; resolves with their names. Never call this with a
   * name a request gave: importing runs the package's code.
   * @example
   * ```ts
   * const registry = createRegistry();
   * await registry.registerPackage("steerkit-plugin-logit-bias"); // ["steerkit-plugin-logit-bias"]
   * ```
   */
  async registerPackage(name: string): Promise<string[]> {
    let mod: Record<string, unknown>;
    try {
      mod = await importFromProject(name);
    } catch (e) {
      throw new RecipeError(`plugin package "${name}": importing it failed: ${(e as Error).message.split("\n")[0]}`, { cause: e });
    }
    const factories = pluginFactories(mod);
    if (factories.length === 0) throw new RecipeError(`plugin package "${name}" exports no plugin factory (made by definePlugin)`);
    for (const f of factories) this.register(f);
    return factories.map((f) => f.pluginName);
  }

  private async importPackage(name: string): Promise<void> {
    let mod: Record<string, unknown>;
    try {
      mod = await importFromProject(name);
    } catch (e) {
      throw new UnknownPluginError(name, this.names, ` (not registered, and importing the package failed: ${(e as Error).message.split("\n")[0]})`);
    }
    const factory = pluginFactories(mod).find((f) => f.pluginName === name);
    if (!factory) throw new UnknownPluginError(name, this.names, ` (package "${name}" exports no plugin factory named "${name}")`);
    this.register(factory);
  }
}

/**
 * Import a package resolved from the user's project first: with isolated installs (bun, pnpm)
 * steerkit itself cannot see the packages installed beside it.
 */
async function importFromProject(name: string): Promise<Record<string, unknown>> {
  let target = name;
  try {
    target = require.resolve(name, { paths: [process.cwd()] });
  } catch {}
  return await import(target);
}

/** The plugin factories a module exports (default, `plugin`, or any named export), each once. */
function pluginFactories(mod: Record<string, unknown>): PluginFactory<any>[] {
  const found = new Set<PluginFactory<any>>();
  for (const c of [mod.default, mod.plugin, ...Object.values(mod)]) {
    if (typeof c === "function" && typeof (c as PluginFactory).pluginName === "string" && Array.isArray((c as PluginFactory).trustedOptions)) found.add(c as PluginFactory<any>);
  }
  return [...found];
}
