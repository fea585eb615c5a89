/**
 * Checks a GGUF before llama.cpp opens it: llama.cpp answers some damaged files by aborting the
 * process, so the header, tensor table and offsets are validated in TypeScript first
 * (src/formats/gguf.ts), and architectures whose residual tensors this adapter has not checked are
 * refused with a clear error rather than silently hooking the wrong tensors.
 */
import { architecture, GgufError, readGgufHeader, type GgufFile } from "../../formats/gguf.ts";
import { SteerkitError } from "../../core/errors.ts";
import { checkLlamaLoad } from "./load-checks.ts";

/**
 * Architectures whose llama.cpp graph names the residual stream as the hooks expect: the token
 * embeddings `embd`, the mid-block sum `ffn_inp-L` and the block output `l_out-L`, with nothing
 * applied to the stream between `embd` and block 0. "llama" is tested on a real model; the others
 * were checked in llama.cpp's source (src/models/<arch>.cpp) of the verified release only.
 */
export const SUPPORTED_ARCHITECTURES: readonly string[] = ["llama", "qwen2", "qwen3", "mistral3", "smollm3"];

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
