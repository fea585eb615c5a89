import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The embedded default model (llama2.c stories260K, see models/README.md), resolved relative to
 * this package so it works from any working directory.
 */
export const DEFAULT_MODEL_PATH: string = fileURLToPath(new URL("../models/stories260K.gguf", import.meta.url));

/** stories260K's file says 2048, but it was trained on 512 tokens: contexts default to this. */
export const DEFAULT_MODEL_CONTEXT = 512;

/** The context a loader should use for `path` when the caller gives none (the embedded model's cap, else undefined). */
export function defaultContextLength(path: string): number | undefined {
  return resolve(path) === DEFAULT_MODEL_PATH ? DEFAULT_MODEL_CONTEXT : undefined;
}
