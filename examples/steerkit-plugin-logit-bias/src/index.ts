/**
 * steerkit-plugin-logit-bias: add a bias to chosen tokens' logits, or ban every token whose text
 * contains a given string. An example of a third-party plugin: it imports only `steerkit`, and its
 * options are an Effect Schema, validated through Standard Schema like any other.
 *
 * Recipe: [{ "plugin": "steerkit-plugin-logit-bias", "options": { "ban": ["ball"], "bias": { "403": -2.5 } } }]
 */
import { Schema } from "effect";
import { definePlugin, type ModelInfo } from "steerkit";

const Options = Schema.Struct({
  /** token id (as a string key, JSON-style) -> bias added to its logit */
  // Keys are checked in create: an Effect Record silently drops keys its key schema rejects.
  bias: Schema.optional(Schema.Record(Schema.String, Schema.Finite)),
  /** case-insensitive substrings; tokens whose text contains one get -Infinity */
  ban: Schema.optional(Schema.Array(Schema.NonEmptyString)),
});

// Decoding a whole vocabulary costs milliseconds on large models: once per model, not per request.
const vocabularies = new WeakMap<ModelInfo, string[]>();

export const logitBias = definePlugin({
  name: "steerkit-plugin-logit-bias",
  description: "Bias tokens by id, or ban tokens containing a string.",
  options: Schema.toStandardSchemaV1(Options),
  needs: ["logits:write"],
  create(options, { model, detokenize }) {
    const ids: number[] = [];
    const values: number[] = [];
    for (const [key, value] of Object.entries(options.bias ?? {})) {
      const id = Number(key);
      if (!/^\d+$/.test(key)) throw new RangeError(`bias: key "${key}" is not a token id`);
      if (id >= model.vocabSize) throw new RangeError(`bias: token ${id} is outside the vocabulary (0..${model.vocabSize - 1})`);
      ids.push(id);
      values.push(value);
    }
    const banned: number[] = [];
    const needles = (options.ban ?? []).map((s) => s.toLowerCase());
    if (needles.length > 0) {
      let vocab = vocabularies.get(model);
      if (!vocab) {
        vocab = Array.from({ length: model.vocabSize }, (_, t) => detokenize([t]).toLowerCase());
        vocabularies.set(model, vocab);
      }
      vocab.forEach((text, t) => {
        if (needles.some((n) => text.includes(n))) banned.push(t);
      });
    }
    return {
      onLogits(logits) {
        for (let i = 0; i < ids.length; i++) logits[ids[i]!]! += values[i]!;
        for (const t of banned) logits[t] = -Infinity;
      },
    };
  },
});

export default logitBias;
