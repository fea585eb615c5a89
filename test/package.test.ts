/**
 * package.json `dependencies` must be exactly the packages `src/` imports: a runtime dependency
 * nothing in src/ uses is installed by every user for nothing (effect and hono were, for an example
 * and a test), and a package src/ imports without declaring it works here only because a dev
 * dependency happens to provide it. Optional peers (the native backends, which src/ imports or
 * resolves only when that adapter is used) are the one exception either way.
 *
 * src/ ships as TypeScript, so `import type` counts: a consumer's type check needs those packages.
 * That is why this reads the sources with a small scanner rather than Bun.Transpiler.scanImports,
 * which drops type-only imports.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "..");

interface PackageJson {
  readonly name: string;
  readonly dependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
  readonly peerDependencies?: Record<string, string>;
  readonly peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as PackageJson;

// `import ... from "x"`, `import "x"`, `export ... from "x"`, type-only and multi-line forms: a
// statement at the start of a line, then anything without a quote or `;` up to ` from "x"` (so a
// string in `export const a = "x"` is not taken for a specifier). JSDoc examples start with ` *`.
const STATIC_IMPORT = /^[ \t]*(?:import|export)\s(?:[^;"'`]*?\sfrom\s*)?["']([^"']+)["']/gm;
const DYNAMIC_IMPORT = /\bimport\(\s*["']([^"']+)["']\s*\)/g;

/** The specifiers a module's source imports, static or dynamic (with a literal specifier). */
function importSpecifiers(source: string): string[] {
  return [...source.matchAll(STATIC_IMPORT), ...source.matchAll(DYNAMIC_IMPORT)].map((m) => m[1]!);
}

/** `@scope/name/sub` -> `@scope/name`, `name/sub` -> `name`; null for relative paths and node:/bun: builtins. */
function packageName(specifier: string): string | null {
  if (specifier.startsWith(".") || specifier.startsWith("/") || /^(node|bun):/.test(specifier)) return null;
  const parts = specifier.split("/");
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(ts|tsx|js|mjs)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

/** Packages imported from src/, each with one file that imports it (for the failure message). */
function importedPackages(): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of sourceFiles(join(ROOT, "src"))) {
    for (const spec of importSpecifiers(readFileSync(file, "utf8"))) {
      const name = packageName(spec);
      if (name !== null && name !== pkg.name && !found.has(name)) found.set(name, file.slice(ROOT.length + 1));
    }
  }
  return found;
}

describe("package.json", () => {
  test("the import scanner sees type-only, multi-line, re-export, side-effect and dynamic imports, and skips the rest", () => {
    const source = [
      `import type { A } from "@scope/types";`,
      `import {`,
      `  b,`,
      `  type C,`,
      `} from "multi/sub/path";`,
      `export * from "re-exported";`,
      `import "side-effect";`,
      `const m = await import("dynamic");`,
      `import { x } from "./relative.ts";`,
      `import { spawn } from "node:child_process";`,
      ` * import { definePlugin } from "in-a-jsdoc-example";`,
      `export const NAME = "not-an-import";`,
      `const s = "import x from 'in-a-string'";`,
    ].join("\n");
    const names = importSpecifiers(source).map(packageName).filter((n) => n !== null);
    expect(names.sort()).toEqual(["@scope/types", "dynamic", "multi", "re-exported", "side-effect"]);
  });

  test("every runtime dependency is imported from src/", () => {
    const imported = importedPackages();
    const unused = Object.keys(pkg.dependencies ?? {}).filter((d) => !imported.has(d));
    expect(unused).toEqual([]);
  });

  test("every package src/ imports is a runtime dependency or an optional peer", () => {
    const peers = pkg.peerDependencies ?? {};
    const optional = (name: string) => name in peers && pkg.peerDependenciesMeta?.[name]?.optional === true;
    const undeclared = [...importedPackages()]
      .filter(([name]) => !(name in (pkg.dependencies ?? {})) && !optional(name))
      .map(([name, file]) => `${name} (imported by ${file})`);
    expect(undeclared).toEqual([]);
  });

  test("optional peers are dev dependencies at the same version, so the tests run against them", () => {
    const mismatched = Object.entries(pkg.peerDependencies ?? {})
      .filter(([name, range]) => pkg.devDependencies?.[name] !== range)
      .map(([name, range]) => `${name}: peer ${range}, dev ${pkg.devDependencies?.[name] ?? "missing"}`);
    expect(mismatched).toEqual([]);
  });
});
