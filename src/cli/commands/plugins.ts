import { createRegistry } from "../../plugins/index.ts";
import { parse, type Command } from "../args.ts";

export const pluginsCommand: Command = {
  summary: "list the plugins a recipe can name",
  help: `steerkit plugins — list the built-in plugins

Usage: steerkit plugins [--json]

Recipes may also name npm packages (steerkit-plugin-* or scoped) that export a plugin.
`,
  async run(argv) {
    const { values } = parse(argv, { json: { type: "boolean" } });
    const registry = createRegistry();
    const list = registry.names.map((name) => {
      const f = registry.get(name)!;
      return { name, description: f.description ?? "", trustedOptions: f.trustedOptions };
    });
    if (values.json) console.log(JSON.stringify(list));
    else for (const p of list) console.log(`${p.name.padEnd(18)} ${p.description}${p.trustedOptions.length ? ` (trusted-only: ${p.trustedOptions.join(", ")})` : ""}`);
  },
};
