/**
 * Checks a GGUF before llama.cpp opens it: llama.cpp answers some damaged files by aborting the
 * process, so the header, tensor table and offsets are validated in TypeScript first
 * (src/formats/gguf.ts), and architectures whose residual tensors this adapter has not checked are
 * refused with a clear error rather than silently hooking the wrong tensors.
 */
import { architecture, GgufError, readGgufHeader, type GgufFile } from "../../formats/gguf.ts";
import { SteerkitError } from "../../core/errors.ts";
import { checkLlamaLoad } from "./load-checks.ts";
import { ARCHITECTURE_GRAPHS } from "./architectures.ts";

/**
 * Architectures whose residual tensors in llama.cpp's graph are known (architectures.ts names them
 * per architecture and says how each was verified).
 */
export const SUPPORTED_ARCHITECTURES: readonly string[] = Object.keys(ARCHITECTURE_GRAPHS);

export class UnsupportedModelError extends SteerkitError {
  override name = "UnsupportedModelError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("UNSUPPORTED_MODEL", message, options);
  }
}

/** Validate `path` as a GGUF this adapter can hook; returns the parsed header. */
export function validateModelFile(path: string): GgufFile {
  const file = readGgufHeader(path);
  let arch: string;
  try {
    arch = architecture(file);
  } catch (e) {
    if (e instanceof GgufError) throw e;
    throw new GgufError(path, `general.architecture is missing or not a string`);
  }
  if (!SUPPORTED_ARCHITECTURES.includes(arch)) {
    throw new UnsupportedModelError(
      `${path}: architecture "${arch}" is not supported by the llama.cpp adapter ` +
        `(supported: ${SUPPORTED_ARCHITECTURES.join(", ")}); its residual hook points have not been verified`,
    );
  }
  if (file.tensors.length === 0) throw new GgufError(path, "has no tensors (a vocabulary-only file?)");
  // What llama.cpp asserts (aborting the process) while loading the vocabulary, hyperparameters and tensors.
  checkLlamaLoad(file, arch);
  return file;
}
