/**
 * Fine-tunes stories260K into stories260K-chat on the examples data.ts wrote, then writes the
 * shipped GGUF: the base model's own metadata (byte for byte) plus the chat template, a new name and
 * the license, and the trained tensors.
 *
 *   bun scripts/stories260K-chat/train.ts [--seed 14] [--epochs 3] [--batch 4] [--lr 5e-4] [--lr-end 5e-5]
 *       [--loss answer|all] [--decision-weight 1] [--trainer ts|llama-opt] [--threads 1] [--out models/stories260K-chat.gguf]
 *
 * Trainer: `ts` (default), Steerkit's TypeScript trainer (src/train/llama.ts), which trains every
 * weight; `llama-opt`, llama.cpp's training API through `finetune`, which never trains attention
 * keys/values or the embeddings (see src/train/llama.ts) — the road the first release took, kept
 * because the model card compares the two.
 *
 * Tokens: every chat example is `BOS + template(prompt turns) + answer + EOS`, with the prompt
 * tokenized as inference tokenizes it (core's chatPromptTokens over the template below), so the
 * model learns exactly the sequence it will see. Plain stories are `BOS + story + EOS`. Examples are
 * packed end to end in a seeded order and cut into windows of 256 tokens (how llama2.c trained the
 * base model: documents packed with BOS between them).
 *
 * Loss: on the answer only (`--loss answer`, the default): the last assistant turn and its EOS of a
 * chat example, and every token of a plain story; the prompt (BOS, user turns, earlier turns, the
 * `Assistant:` marker) is context, weight 0, through finetune's `lossWeights`. The weights are scaled
 * to average 1 over the data, so the step size is that of a mean over the trained tokens.
 * `--decision-weight K` multiplies the weight of the first answer token, where the model decides
 * between a story and the refusal: one token in ~50 of a safe answer, so without it the decision is
 * a small part of the loss. `--loss all` trains on every token (the first release of the model).
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
import { trainLlama } from "../../src/train/llama.ts";
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

/** Where the answer of an example starts in its tokens: the first token the model is trained to predict. */
export function answerStart(tok: Tokenizer, e: Example): number {
  return e.kind === "plain" ? 1 : chatPromptTokens(tok, e.messages.slice(0, -1), true).length;
}

/** An example's tokens and the weight of predicting each of them (0 for the context it is given). */
export interface WeightedSequence {
  readonly tokens: readonly number[];
  /** weights[k] weighs the loss of predicting tokens[k] from the tokens before it. */
  readonly weights: readonly number[];
}

/**
 * One example as a weighted sequence: prompt tokens 0, answer tokens 1, the answer's first token
 * `decisionWeight`; with `loss: "all"` every token after BOS weighs 1.
 */
export function weightedExample(tok: Tokenizer, e: Example, loss: "answer" | "all", decisionWeight = 1): WeightedSequence {
  const tokens = exampleTokens(tok, e);
  const start = loss === "all" ? 1 : answerStart(tok, e);
  const weights = tokens.map((_, k) => (k < start ? 0 : k === start && e.kind !== "plain" ? decisionWeight : 1));
  return { tokens, weights };
}

/**
 * Examples packed end to end in a seeded order, cut into windows of `window + 1` tokens (inputs and
 * next-token labels overlap by one), with the loss weight of each window position (position r
 * predicts the window's token r + 1), scaled to average 1 over all windows.
 */
export function packWeighted(sequences: readonly WeightedSequence[], window: number, seed: number): { windows: Int32Array[]; lossWeights: Float32Array[] } {
  const order = sequences.map((_, i) => i);
  const rng = createRng(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const stream = order.flatMap((i) => sequences[i]!.tokens);
  const streamWeights = order.flatMap((i) => sequences[i]!.weights);
  const windows: Int32Array[] = [];
  const lossWeights: Float32Array[] = [];
  for (let at = 0; at + window + 1 <= stream.length; at += window) {
    windows.push(Int32Array.from(stream.slice(at, at + window + 1)));
    lossWeights.push(Float32Array.from(streamWeights.slice(at + 1, at + window + 1)));
  }
  const mean = lossWeights.reduce((s, w) => s + w.reduce((a, b) => a + b, 0), 0) / (lossWeights.length * window);
  for (const w of lossWeights) for (let r = 0; r < w.length; r++) w[r]! /= mean;
  return { windows, lossWeights };
}

/** Examples packed end to end in a seeded order, cut into windows of `window + 1` tokens (every position weighs the same). */
export function packWindows(sequences: readonly number[][], window: number, seed: number): Int32Array[] {
  return packWeighted(sequences.map((tokens) => ({ tokens, weights: tokens.map(() => 1) })), window, seed).windows;
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
    epochs: { type: "string", default: "3" },
    threads: { type: "string", default: "1" },
    lr: { type: "string", default: "5e-4" },
    loss: { type: "string", default: "answer" },
    "decision-weight": { type: "string", default: "1" },
    trainer: { type: "string", default: "ts" },
    batch: { type: "string", default: "4" },
    "lr-end": { type: "string", default: "5e-5" },
    data: { type: "string", default: "scripts/stories260K-chat/data" },
    base: { type: "string", default: "models/stories260K.gguf" },
    out: { type: "string", default: "models/stories260K-chat.gguf" },
  } });
  const seed = Number(values.seed);
  const base = await llamaCpp.load(values.base!, { threads: 1 });
  const tok = chatTokenizer(base);
  const loss = values.loss;
  if (loss !== "answer" && loss !== "all") throw new Error(`--loss must be answer or all, got ${loss}`);
  const decisionWeight = Number(values["decision-weight"]);
  if (!(decisionWeight >= 0)) throw new Error(`--decision-weight must be a number >= 0, got ${values["decision-weight"]}`);
  const encode = (path: string) => readExamples(path).map((e) => weightedExample(tok, e, loss, decisionWeight));
  const train = encode(`${values.data}/train.jsonl`);
  const validation = encode(`${values.data}/validation.jsonl`);
  base.dispose();
  const { windows, lossWeights } = packWeighted(train, WINDOW, seed);
  const { windows: validationWindows, lossWeights: validationLossWeights } = packWeighted(validation, WINDOW, seed + 1);
  const tokens = train.reduce((n, s) => n + s.tokens.length, 0);
  const trained = train.reduce((n, s) => n + s.weights.filter((w) => w > 0).length, 0);
  console.error(`${train.length} examples, ${tokens} tokens (${trained} trained on), ${windows.length} windows of ${WINDOW}; validation ${validationWindows.length} windows`);

  const epochs = Number(values.epochs);
  const batch = Number(values.batch);
  const trainer = values.trainer;
  if (trainer !== "ts" && trainer !== "llama-opt") throw new Error(`--trainer must be ts or llama-opt, got ${trainer}`);
  const started = performance.now();
  const bar = progressBar(trainer === "ts" ? Math.ceil(windows.length / batch) * epochs : windows.length * epochs, "steps");
  const onStep = (s: number, n: number, stepLoss: number) => {
    bar.update(s, `loss ${stepLoss.toFixed(3)}`);
    // A line per hundred steps for logs (the bar draws on a terminal only).
    if (!process.stderr.isTTY && (s % 100 === 0 || s === n)) console.error(`step ${s}/${n} loss ${stepLoss.toFixed(4)} ${((performance.now() - started) / 1000).toFixed(0)} s`);
  };
  const schedule = { window: WINDOW, epochs, learningRate: Number(values.lr), learningRateEnd: Number(values["lr-end"]), seed, lossWeights, onStep };
  const metadata: Record<string, GgufTyped> = {
    "general.name": { type: "string", value: "stories260K-chat" },
    "general.license": { type: "string", value: "MIT" },
    "general.base_model.0.name": { type: "string", value: "stories260K" },
    "tokenizer.chat_template": { type: "string", value: CHAT_TEMPLATE },
  };
  let result;
  if (trainer === "ts") {
    // Every weight, attention keys/values and embeddings included (src/train/llama.ts says why).
    const trained = trainLlama(values.base!, windows, validationWindows, { ...schedule, validationLossWeights, batch, clipNorm: 1 });
    result = trained.result;
    trained.weights.save(values.out!, metadata);
  } else {
    const scratch = mkdtempSync(join(tmpdir(), "stories260K-chat-"));
    const raw = join(scratch, "trained.gguf"); // llama_model_save_to_file's own metadata is replaced below
    result = finetune(values.base!, windows, validationWindows, raw, { ...schedule, threads: Number(values.threads) });
    writeChatGguf(values.base!, raw, values.out!, metadata);
    rmSync(scratch, { recursive: true });
  }
  bar.done();
  const summary = {
    trainer, batch: trainer === "ts" ? batch : 1,
    seed, epochs, threads: trainer === "ts" ? 1 : Number(values.threads), lr: Number(values.lr), lrEnd: Number(values["lr-end"]), window: WINDOW,
    loss, decisionWeight, examples: train.length, tokens, trainedTokens: trained, windows: windows.length, steps: result.steps,
    trainLoss: result.trainLoss.map((x) => +x.toFixed(4)), validationLoss: result.validationLoss.map((x) => +x.toFixed(4)),
    seconds: +result.seconds.toFixed(1),
  };
  writeFileSync(`${values.data}/train-log.json`, JSON.stringify(summary, null, 2) + "\n");
  console.log(JSON.stringify(summary));
}
