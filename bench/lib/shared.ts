/**
 * Pieces several benchmarks share: the "steered batch" recipe of the batched benches (llama.cpp and
 * ONNX measure the same steering) and the line reader for worker child processes.
 */
import * as v from "valibot";
import type { ChainPlugin } from "../../src/core/chain.ts";
import { definePlugin } from "../../src/core/plugin.ts";

/**
 * Adds a fixed small vector at every layer's block output: as a JS hook (`affine: false`) or as an
 * affine edit (native or in-graph). `recipeOf(steered, i)` gives sequence i its recipe: odd ones the
 * affine form, even ones the JS hook, so a steered batch is half of each.
 */
export function everyLayerSteering(nLayers: number, dModel: number) {
  const vector = Float32Array.from({ length: dModel }, (_, i) => Math.sin(i) * 0.05);
  const everyLayer = definePlugin({
    name: "bench-every-layer",
    options: v.object({ affine: v.boolean() }),
    needs: ["residual:write"],
    create: (o) => ({
      points: Array.from({ length: nLayers }, (_, layer) => ({ site: "resid_post" as const, layer })),
      onResidual(x) {
        for (let off = 0; off < x.data.length; off += dModel) for (let i = 0; i < dModel; i++) x.data[off + i]! += vector[i]!;
      },
      ...(o.affine && { affine: () => ({ rank: 0 as const, U: null, V: null, c: vector }) }),
    }),
  });
  return (steered: boolean, i: number): ChainPlugin[] => (steered ? [everyLayer({ affine: i % 2 === 1 })] : []);
}

/** The lines a child process writes to stdout, as they come. */
export async function* stdoutLines(stdout: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stdout) {
    buf += decoder.decode(chunk);
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      yield buf.slice(0, i);
      buf = buf.slice(i + 1);
    }
  }
}
