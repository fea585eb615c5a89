/**
 * An ONNX decoder export on disk: which file is the model, and what its config files say.
 * Layouts handled: onnxruntime-genai (`genai_config.json` naming the decoder file), Optimum /
 * transformers.js (`config.json` with `model.onnx`, `onnx/model.onnx`, or the merged decoder
 * `decoder_model_merged.onnx` / `onnx/decoder_model_merged.onnx`), or a bare `.onnx` path.
 */
import { existsSync, readdirSync, statSync } from "node:fs";
import { pathExists, pathKind, readRegularText } from "../../formats/files.ts";
import { basename, dirname, join } from "node:path";
import { SteerkitError } from "../../core/errors.ts";

export class OnnxExportError extends SteerkitError {
  override name = "OnnxExportError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_MODEL_FILE", message, options);
  }
}

export interface ExportConfig {
  readonly dir: string;
  readonly modelFile: string;
  readonly architecture: string;
  readonly name: string;
  readonly hiddenSize?: number;
  readonly nLayers?: number;
  readonly nHeads?: number;
  readonly kvHeads?: number;
  readonly headDim?: number;
  readonly vocabSize?: number;
  readonly contextLength?: number;
  readonly bosToken: number | null;
  readonly eosTokens: number[];
  /**
   * What config.json says about sliding-window attention: the window, when some layers use one
   * (`sliding_window` with `use_sliding_window` not false, or `layer_types` naming sliding layers),
   * or the model type of a family whose configs always have them (gemma2/3, cohere2).
   */
  readonly slidingWindow?: number | string;
  /** tokenizer.json, when present. */
  readonly tokenizerFile: string | null;
  readonly tokenizerConfig: Record<string, unknown> | null;
}

type Json = Record<string, unknown>;

/** Config JSON files (config.json, genai_config.json, tokenizer_config.json) are small; a larger one is refused unread. */
const MAX_CONFIG_JSON_BYTES = 64 * 1024 * 1024;

function readJson(file: string): Json | null {
  if (!pathExists(file)) return null;
  const text = readRegularText(file, (reason) => {
    throw new OnnxExportError(`${file}: ${reason}`);
  }, { expected: "a JSON file", maxBytes: MAX_CONFIG_JSON_BYTES });
  try {
    const v = JSON.parse(text);
    if (v === null || typeof v !== "object" || Array.isArray(v)) throw new Error("top level is not an object");
    return v as Json;
  } catch (e) {
    throw new OnnxExportError(`${file}: not valid JSON (${(e as Error).message})`);
  }
}

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined);
const first = (...vs: unknown[]): number | undefined => vs.map(num).find((v) => v !== undefined);
/** A token id field (`bos_token_id`, `eos_token_id`: one id or a list): non-negative integers, or a clear error naming the file. */
function tokenIds(file: string, field: string, v: unknown): number[] {
  if (v === undefined || v === null) return [];
  const list: unknown[] = Array.isArray(v) ? v : [v];
  if (!list.every((x) => typeof x === "number" && Number.isSafeInteger(x) && x >= 0)) {
    throw new OnnxExportError(`${file}: ${field} must be a token id (a non-negative integer) or a list of them, got ${JSON.stringify(v)}`);
  }
  return list as number[];
}

/** True when `path` is an .onnx file or a directory holding an ONNX export (no weights read). */
export function looksLikeOnnxExport(path: string): boolean {
  try {
    if (!existsSync(path)) return false;
    if (statSync(path).isFile()) return path.endsWith(".onnx");
    return (
      existsSync(join(path, "genai_config.json")) ||
      existsSync(join(path, "model.onnx")) ||
      existsSync(join(path, "onnx", "model.onnx")) ||
      existsSync(join(path, "onnx", "decoder_model_merged.onnx")) ||
      readdirSync(path).some((f) => f.endsWith(".onnx"))
    );
  } catch {
    return false;
  }
}

export function readExportDir(path: string): ExportConfig {
  const isFile = pathKind(path, (reason) => {
    throw new OnnxExportError(`${path}: ${reason}`);
  }, "an .onnx file or an ONNX export directory") === "file";
  const dir = isFile ? dirname(path) : path;
  // transformers.js keeps configs at the root and the graph under onnx/.
  const root = basename(dir) === "onnx" && !existsSync(join(dir, "config.json")) ? dirname(dir) : dir;
  const genai = readJson(join(root, "genai_config.json"));
  const config = readJson(join(root, "config.json"));
  const gm = (genai?.model ?? {}) as Json;
  const gd = (gm.decoder ?? {}) as Json;

  let modelFile: string;
  if (isFile) modelFile = path;
  else {
    const candidates = [
      typeof gd.filename === "string" ? join(dir, gd.filename) : null,
      join(dir, "model.onnx"),
      join(dir, "onnx", "model.onnx"),
      // Optimum's merged decoder (with and without past in one file; transformers.js v2 keeps it
      // under onnx/) before the plain decoder, which has no KV cache.
      join(dir, "decoder_model_merged.onnx"),
      join(dir, "onnx", "decoder_model_merged.onnx"),
      join(dir, "decoder_with_past_model.onnx"),
      join(dir, "decoder_model.onnx"),
    ].filter((f): f is string => f !== null);
    const found = candidates.find((f) => existsSync(f));
    if (found) modelFile = found;
    else {
      // transformers.js repos keep variants under onnx/ (model_fp16.onnx, model_q4.onnx, ...).
      const onnxFiles = [dir, join(dir, "onnx")]
        .filter((d) => existsSync(d) && statSync(d).isDirectory())
        .flatMap((d) => readdirSync(d).filter((f) => f.endsWith(".onnx")).map((f) => join(d, f)));
      if (onnxFiles.length === 1) modelFile = onnxFiles[0]!;
      else {
        throw new OnnxExportError(
          `${dir}: cannot tell which file is the decoder (looked for ${candidates.map((c) => c.slice(dir.length + 1)).join(", ")}; ` +
            (onnxFiles.length ? `found ${onnxFiles.map((f) => f.slice(dir.length + 1)).join(", ")}: pass the one to load as the path` : "found no .onnx file") +
            ")",
        );
      }
    }
  }

  const hiddenSize = first(config?.hidden_size, config?.n_embd, config?.d_model, gd.hidden_size);
  const nHeads = first(config?.num_attention_heads, config?.n_head, gd.num_attention_heads);
  const headDim = first(config?.head_dim, gd.head_size) ?? (hiddenSize && nHeads ? hiddenSize / nHeads : undefined);
  const tokenizerFile = pathExists(join(root, "tokenizer.json")) ? join(root, "tokenizer.json") : null;
  // config.json's id wins over genai_config.json's, as before; an error names the file it came from.
  const idSource = (field: "bos_token_id" | "eos_token_id"): [string, string, unknown] =>
    config?.[field] !== undefined && config?.[field] !== null ? [join(root, "config.json"), field, config[field]] : [join(root, "genai_config.json"), `model.${field}`, gm[field]];
  return {
    dir: root,
    modelFile,
    architecture: String(config?.model_type ?? gm.type ?? "unknown"),
    name: String(config?._name_or_path ?? basename(root)),
    hiddenSize,
    nLayers: first(config?.num_hidden_layers, config?.n_layer, gd.num_hidden_layers),
    nHeads,
    kvHeads: first(config?.num_key_value_heads, gd.num_key_value_heads, nHeads),
    headDim,
    vocabSize: first(config?.vocab_size, gm.vocab_size),
    contextLength: first(gm.context_length, config?.max_position_embeddings, config?.n_positions, config?.n_ctx),
    bosToken: tokenIds(...idSource("bos_token_id"))[0] ?? null,
    eosTokens: tokenIds(...idSource("eos_token_id")),
    slidingWindow: slidingWindowOf(config),
    tokenizerFile,
    tokenizerConfig: readJson(join(root, "tokenizer_config.json")),
  };
}

/** Model types whose layers alternate sliding and global attention whatever the config spells out. */
const SLIDING_FAMILIES = new Set(["gemma2", "gemma3", "gemma3_text", "cohere2"]);

function slidingWindowOf(config: Json | null): number | string | undefined {
  if (!config) return undefined;
  const window = config.sliding_window;
  const types = Array.isArray(config.layer_types) ? config.layer_types : [];
  if (typeof window === "number" && window > 0 && config.use_sliding_window !== false) return window;
  if (types.some((t) => typeof t === "string" && t.includes("sliding"))) return typeof window === "number" ? window : "layer_types";
  const family = String(config.model_type ?? "");
  return SLIDING_FAMILIES.has(family) ? family : undefined;
}
