/**
 * Fine-tunes stories260K into stories260K-chat with llama.cpp's training API (Steerkit's
 * `finetune`, src/adapters/llama-cpp/train.ts) on the examples data.ts wrote, then writes the
 * shipped GGUF: the base model's own metadata (byte for byte) plus the chat template, a new name and
 * the license, and the trained tensors.
 *
 *   bun scripts/stories260K-chat/train.ts [--seed 14] [--epochs 8] [--threads 1] [--out models/stories260K-chat.gguf]
 *
 * Tokens: every chat example is `BOS + template(prompt turns) + answer + EOS`, with the prompt
 * tokenized as inference tokenizes it (core's chatPromptTokens over the template below), so the
 * model learns exactly the sequence it will see. Plain stories are `BOS + story + EOS`. Examples are
 * packed end to end in a seeded order and cut into windows of 256 tokens (how llama2.c trained the
 * base model: documents packed with BOS between them).
 *
 * Loss: on every token, prompts included. llama_opt_epoch has no per-token loss mask (see
 * train.ts); the prompts are short (about a fifth of the tokens) and drawn from the same templates
 * the model is then asked with, so learning to predict them costs little, and it is what the only
 * training road inside Steerkit's own stack can do.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chatPromptTokens } from "../../src/core/chat-tokens.ts";
import { renderChat } from "../../src/core/chat-template.ts";
import { createRng } from "../../src/core/sampling.ts";
import type { ChatMessage, Model } from "../../src/core/backend.ts";
import { llamaCpp } from "../../src/adapters/llama-cpp/index.ts";
import { finetune } from "../../src/adapters/llama-cpp/train.ts";
import { readGgufHeader, readRawMetadata, readTensorBytes } from "../../src/formats/gguf.ts";
import { encodeGguf, type GgufTyped } from "../../src/formats/gguf-write.ts";
import { progressBar } from "../../src/cli/progress.ts";
import { CHAT_TEMPLATE } from "./spec.ts";
import type { Example } from "./data.ts";

/** Tokens per training window: a multiple of 256 (llama.cpp pads its context to 256, and the optimizer's window is the context). */
export const WINDOW = 256;

type Tokenizer = Pick<Model, "tokenize" | "applyChatTemplate" | "info">;

/** The base model's tokenizer with the chat template the trained model will carry. */
export function chatTokenizer(base: Model): Tokenizer {
  return {
    info: base.info,
    tokenize: (text, o) => base.tokenize(text, o),
    applyChatTemplate: (messages: readonly ChatMessage[], o) => renderChat(CHAT_TEMPLATE, messages, { addGenerationPrompt: o?.addGenerationPrompt }),
  };
}

/** One example as training tokens: BOS, prompt (as inference renders it), answer, EOS. */
export function exampleTokens(tok: Tokenizer, e: Example): number[] {
  const eos = tok.info.eosTokens[0]!;
  if (e.kind === "plain") return [...tok.tokenize(e.text, { addBos: true }), eos];
  const answer = e.messages.at(-1)!;
  if (answer.role !== "assistant") throw new Error(`example ${e.id}: the last message must be the assistant's answer`);
  return [...chatPromptTokens(tok, e.messages.slice(0, -1), true), ...tok.tokenize(answer.content, { addBos: false }), eos];
}

/** Examples packed end to end in a seeded order, cut into windows of `window + 1` tokens (inputs and next-token labels overlap by one). */
export function packWindows(sequences: readonly number[][], window: number, seed: number): Int32Array[] {
  const order = sequences.map((_, i) => i);
  const rng = createRng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const stream = order.flatMap((i) => sequences[i]!);
  const windows: Int32Array[] = [];
  for (let at = 0; at + window + 1 <= stream.length; at += window) windows.push(Int32Array.from(stream.slice(at, at + window + 1)));
  return windows;
}

function readExamples(path: string): Example[] {
  return readFileSync(path, "utf8").split("\n").filter(Boolean).map((line, i) => {
    try {
      return JSON.parse(line) as Example;
    } catch (e) {
      throw new Error(`${path}:${i + 1}: not JSON: ${(e as Error).message}`);
    }
  });
}

/** The shipped GGUF: `base`'s metadata with `overrides`, and every tensor from `trained` in `base`'s order. */
export function writeChatGguf(basePath: string, trainedPath: string, outPath: string, overrides: Record<string, GgufTyped>): void {
  const base = readGgufHeader(basePath);
  const trained = readGgufHeader(trainedPath);
  const byName = new Map(trained.tensors.map((t) => [t.name, t]));
  const metadata: [string, GgufTyped][] = [...base.metadata.keys()]
    .filter((k) => !(k in overrides))
    .map((k) => [k, { type: "raw", bytes: readRawMetadata(base, k) }]);
  for (const [k, v] of Object.entries(overrides)) metadata.push([k, v]);
  const tensors = base.tensors.map((t) => {
    const u = byName.get(t.name);
    if (!u || u.type !== t.type || u.dims.join() !== t.dims.join()) throw new Error(`${trainedPath}: tensor ${t.name} missing or reshaped`);
    return { name: t.name, type: t.type, dims: t.dims, data: readTensorBytes(trained, u) };
  });
  writeFileSync(outPath, encodeGguf({ version: base.version, alignment: base.alignment, metadata, tensors }));
}

if (import.meta.main) {
  const { values } = parseArgs({ options: {
    seed: { type: "string", default: "14" },
    epochs: { type: "string", default: "8" },
    threads: { type: "string", default: "1" },
    lr: { type: "string", default: "3e-4" },
    "lr-end": { type: "string", default: "3e-5" },
    data: { type: "string", default: "scripts/stories260K-chat/data" },
    base: { type: "string", default: "models/stories260K.gguf" },
    out: { type: "string", default: "models/stories260K-chat.gguf" },
  } });
  const seed = Number(values.seed);
  const base = await llamaCpp.load(values.base!, { threads: 1 });
  const tok = chatTokenizer(base);
  const encode = (path: string) => readExamples(path).map((e) => exampleTokens(tok, e));
  const train = encode(`${values.data}/train.jsonl`);
  const validation = encode(`${values.data}/validation.jsonl`);
  base.dispose();
  const windows = packWindows(train, WINDOW, seed);
  const validationWindows = packWindows(validation, WINDOW, seed + 1);
  const tokens = train.reduce((n, s) => n + s.length, 0);
  console.error(`${train.length} examples, ${tokens} tokens, ${windows.length} windows of ${WINDOW}; validation ${validationWindows.length} windows`);

  const epochs = Number(values.epochs);
  const started = performance.now();
  const bar = progressBar(windows.length * epochs, "steps");
  const scratch = mkdtempSync(join(tmpdir(), "stories260K-chat-"));
  const raw = join(scratch, "trained.gguf"); // llama_model_save_to_file's own metadata is replaced below
  const result = finetune(values.base!, windows, validationWindows, raw, {
    window: WINDOW,
    threads: Number(values.threads),
    epochs,
    learningRate: Number(values.lr),
    learningRateEnd: Number(values["lr-end"]),
    seed,
    onStep: (s, n, loss) => {
      bar.update(s, `loss ${loss.toFixed(3)}`);
      // A line per hundred steps for logs (the bar draws on a terminal only).
      if (!process.stderr.isTTY && (s % 100 === 0 || s === n)) console.error(`step ${s}/${n} loss ${loss.toFixed(4)} ${((performance.now() - started) / 1000).toFixed(0)} s`);
    },
  });
  bar.done();
  writeChatGguf(values.base!, raw, values.out!, {
    "general.name": { type: "string", value: "stories260K-chat" },
    "general.license": { type: "string", value: "MIT" },
    "general.base_model.0.name": { type: "string", value: "stories260K" },
    "tokenizer.chat_template": { type: "string", value: CHAT_TEMPLATE },
  });
  rmSync(scratch, { recursive: true });
  const summary = {
    seed, epochs, threads: Number(values.threads), lr: Number(values.lr), lrEnd: Number(values["lr-end"]), window: WINDOW,
    examples: train.length, tokens, windows: windows.length, steps: result.steps,
    trainLoss: result.trainLoss.map((x) => +x.toFixed(4)), validationLoss: result.validationLoss.map((x) => +x.toFixed(4)),
    seconds: +result.seconds.toFixed(1),
  };
  writeFileSync(`${values.data}/train-log.json`, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary));
}
