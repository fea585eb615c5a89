import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createArtifacts } from "../../src/core/artifacts.ts";
import { createRegistry, saeLatents, type LatentRecord } from "../../src/plugins/index.ts";
import { saeArtifact } from "../../src/sae/artifact.ts";
import { encode, newRowScale } from "../../src/sae/sae.ts";
import { runPlugin } from "../../src/testing/index.ts";
import { randomSae } from "../sae/make-sae.ts";

const d = 64;
const sae = randomSae({ architecture: "topk", dIn: d, dSae: 48, k: 8, seed: 31, point: { site: "resid_mid", layer: 1 } });
const artifacts = () => createArtifacts().register("s", saeArtifact, { value: sae });

describe("sae-latents", () => {
  test("records the chosen latents' activations at every row, equal to the dense encode, and changes nothing", async () => {
    const records: LatentRecord[] = [];
    const run = await runPlugin(saeLatents({ sae: "s", latents: [0, 5, 47, 5], onRecord: (r) => records.push(r) }), { artifacts: artifacts(), maxTokens: 3 });
    expect(run.changed).toEqual([]);
    const traces = run.residuals.filter((t) => t.point === "resid_mid.1");
    expect(records.map((r) => r.position)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(records.map((r) => r.token)).toEqual([...run.result.promptTokens, ...run.result.tokens.slice(0, 2)]);
    expect(records.map((r) => r.step)).toEqual([0, 0, 0, 0, 0, 1, 2]);
    let active = 0;
    for (const rec of records) {
      expect(rec.point).toBe("resid_mid.1");
      expect(Object.keys(rec.activations).sort()).toEqual(["0", "47", "5"]);
      const t = traces.find((t) => t.step === rec.step)!;
      const r = t.positions.indexOf(rec.position);
      const acts = new Float32Array(48);
      encode(sae, t.before.subarray(r * d, (r + 1) * d), acts, new Float32Array(d), newRowScale());
      for (const k of ["0", "5", "47"]) {
        expect(rec.activations[k]!).toBeCloseTo(acts[Number(k)]!, 4);
        if (acts[Number(k)]! > 0) active++;
      }
    }
    expect(active).toBeGreaterThan(0);
  });

  test("positions limit the records; a file sink gets JSONL", async () => {
    const file = join(mkdtempSync(join(tmpdir(), "sae-latents-")), "acts.jsonl");
    await runPlugin(saeLatents({ sae: "s", latents: [3], positions: "generated", file }), { artifacts: artifacts(), maxTokens: 3 });
    const lines = readFileSync(file, "utf8").trim().split("\n").map((l) => JSON.parse(l) as LatentRecord);
    expect(lines.map((l) => l.position)).toEqual([5, 6]);
    expect(typeof lines[0]!.activations["3"]).toBe("number");
  });

  test("needs a sink; sinks are trusted-only; a bad index names the option", async () => {
    await expect(runPlugin(saeLatents({ sae: "s", latents: [3] }), { artifacts: artifacts() })).rejects.toThrow(/nowhere to write/);
    await expect(createRegistry().resolve([{ plugin: "sae-latents", options: { sae: "s", latents: [3], file: "/tmp/x.jsonl" } }])).rejects.toMatchObject({ code: "UNTRUSTED_OPTION", message: expect.stringContaining("file") });
    const untrusted = createRegistry().resolve([{ plugin: "sae-latents", options: { sae: "s", latents: [3], console: true } }]);
    await expect(untrusted).rejects.toMatchObject({ code: "UNTRUSTED_OPTION" });
    await expect(runPlugin(saeLatents({ sae: "s", latents: [3, 48], onRecord: () => {} }), { artifacts: artifacts() })).rejects.toThrow(/latents\[1\]: latent 48 is out of range/);
  });
});
