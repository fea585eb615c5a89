/**
 * `steerkit sae features` with an SAE loaded in memory (the file loaders live on their own branch):
 * the three modes print what the library computes, and usage errors name the flag.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeFeaturesCommand } from "../../src/cli/commands/sae/features.ts";
import { activeLatents, contrastLatents, topContexts } from "../../src/sae/discover.ts";
import { loadTestModel } from "../../src/testing/index.ts";
import { randomSae } from "../sae/make-sae.ts";

const sae = randomSae({ architecture: "relu", dIn: 64, dSae: 32, seed: 17, point: { site: "resid_post", layer: 2 } });
function cli() {
  const out: string[] = [];
  const command = makeFeaturesCommand({ loadSae: async () => sae, print: (l) => out.push(l) });
  return { out, run: (...argv: string[]) => command.run(["sae-dir", "--backend", "reference", ...argv]) };
}
const dir = mkdtempSync(join(tmpdir(), "sae-features-"));
const file = (name: string, lines: string[]) => {
  writeFileSync(join(dir, name), lines.join("\n") + "\n");
  return join(dir, name);
};

describe("steerkit sae features", () => {
  test("--prompt --json prints the active latents per token the library computes", async () => {
    const c = cli();
    await c.run("--prompt", "Once upon a time", "--top", "4", "--json");
    const printed = JSON.parse(c.out.join("\n"));
    expect(printed).toEqual(JSON.parse(JSON.stringify(await activeLatents(await loadTestModel(), sae, undefined, "Once upon a time", { top: 4 }))));
    expect(printed.point).toBe("resid_post.2");
    expect(printed.tokens.length).toBe(5);
    expect(printed.tokens.some((t: { latents: unknown[] }) => t.latents.length === 4)).toBe(true);
  });

  test("--contrast/--against and --latent/--texts print the library's rankings, as JSON and as text", async () => {
    const a = file("a.txt", ["The dog ran", "", "A big dog barked"]);
    const b = file("b.txt", ["The cat slept"]);
    const model = await loadTestModel();
    const c = cli();
    await c.run("--contrast", a, "--against", b, "--top", "3", "--json");
    expect(JSON.parse(c.out[0]!)).toEqual(JSON.parse(JSON.stringify(await contrastLatents(model, sae, undefined, ["The dog ran", "A big dog barked"], ["The cat slept"], { top: 3 }))));
    const t = cli();
    await t.run("--latent", "4", "--texts", a, "--top", "2");
    const ref = await topContexts(model, sae, undefined, 4, ["The dog ran", "A big dog barked"], { top: 2 });
    expect(t.out[0]).toBe(`latent 4 at resid_post.2: active at ${ref.active} of ${ref.tokens} tokens; top ${ref.contexts.length}:`);
    expect(t.out.length).toBe(1 + ref.contexts.length);
  });

  test("usage errors name what is missing", async () => {
    await expect(cli().run("--top", "3")).rejects.toThrow("give exactly one of --prompt, --contrast (with --against) or --latent (with --texts)");
    await expect(cli().run("--contrast", "a.txt")).rejects.toThrow("--contrast needs --against <file>");
    await expect(cli().run("--latent", "x", "--texts", "t.txt")).rejects.toThrow('--latent must be an integer >= 0, got "x"');
    await expect(cli().run("--latent", "1", "--texts", join(dir, "missing.txt"))).rejects.toThrow(/--texts: cannot read/);
    await expect(cli().run("--prompt", "hi", "--point", "resid_post.3")).rejects.toThrow(/was trained at resid_post.2, not resid_post.3/);
    await expect(cli().run("--contrast", "a.txt", "--against", "b.txt", "--positions", "first")).rejects.toThrow('--positions must be all or last, got "first"');
    await expect(cli().run("--prompt", "hi", "--positions", "last")).rejects.toThrow("--positions applies to --contrast only");
  });
});
