/**
 * The model a backend's `batched()` returns: the same weights, tokenizer and templates, but
 * sequences that share one batch (llama.cpp: one context; ONNX: one padded KV buffer) and are
 * decoded together. Written once because both adapters' views are the same shell around their batch;
 * what differs is the batch itself.
 */
import type { Capability, ChatMessage, Model, ModelInfo, Sequence, SequenceOptions, TokenizeOptions } from "./backend.ts";

/** What a view needs of a backend's batch. */
export interface SequenceBatch<O extends SequenceOptions, S extends Sequence> {
  createSequence(options?: O): S;
  /** Free the batch's sequences and shared state; never the model's weights. */
  dispose(): void;
}

/**
 * A model whose sequences come from `batch`; everything else is `model`'s.
 * @example
 * ```ts
 * class BatchedLlamaModel extends BatchedModelView<LlamaSequenceOptions, BatchedSequence, LlamaBatch> {}
 * const view = new BatchedLlamaModel(model, batch);
 * const seq = view.createSequence(); // decoded in the batch's passes
 * ```
 */
export class BatchedModelView<O extends SequenceOptions, S extends Sequence, B extends SequenceBatch<O, S> = SequenceBatch<O, S>> implements Model {
  readonly info: ModelInfo;
  readonly capabilities: readonly Capability[];
  constructor(
    readonly model: Model,
    readonly batch: B,
  ) {
    this.info = model.info;
    this.capabilities = model.capabilities;
  }
  tokenize(text: string, options?: TokenizeOptions): number[] {
    return this.model.tokenize(text, options);
  }
  detokenize(tokens: ArrayLike<number>): string {
    return this.model.detokenize(tokens);
  }
  applyChatTemplate(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string {
    return this.model.applyChatTemplate(messages, options);
  }
  createSequence(options?: O): S {
    return this.batch.createSequence(options);
  }
  /** Free the batch and its sequences; the model's weights stay (they are the model's). */
  dispose(): void {
    this.batch.dispose();
  }
}
