/**
 * steerkit-plugin-logit-bias: add a bias to chosen tokens' logits, or ban every token whose text
 * contains a given string. An example of a third-party plugin: it imports only `steerkit`, and its
 * options are an Effect Schema, validated through Standard Schema like any other.
 *
 * Recipe: [{ "plugin": "steerkit-plugin-logit-bias", "options": { "ban": ["ball"], "bias": { "403": -2.5 } } }]
 */
import { Schema } from "effect";
import { definePlugin } from "steerkit";

const Options = Schema.Struct({
  /** token id (as a string key, JSON-style) -> bias added to its logit */
  // Keys are checked in create: an Effect Record silently drops keys its key schema rejects.
  bias: Schema.optional(Schema.Record(Schema.String, Schema.Finite)),
  /** case-insensitive substrings; tokens whose text contains one get -Infinity */
  ban: Schema.optional(Schema.Array(Schema.NonEmptyString)),
});

export const logitBias = definePlugin({
  name: "steerkit-plugin-logit-bias",
  description: "Bias tokens by id, or ban tokens containing a string.",
  // Validation (Standard Schema) and a JSON Schema of the options (Standard JSON Schema), which a
  // server's GET /v1/plugins lists so that a UI can build a form for them.
  options: Schema.toStandardSchemaV1(Schema.toStandardJSONSchemaV1(Options)),
  needs: ["logits:write"],
  // Once per model and options, shared by every request: decoding a whole vocabulary to find the
  // banned tokens costs milliseconds on large models.
  prepare(options, { model, detokenize, invalid }) {
    const ids: number[] = [];
    const values: number[] = [];
    for (const [key, value] of Object.entries(options.bias ?? {})) {
      const id = Number(key);
      if (!/^\d+$/.test(key)) invalid(`bias.${key}`, `"${key}" is not a token id`);
      if (id >= model.vocabSize) invalid(`bias.${key}`, `token ${id} is outside the vocabulary (0..${model.vocabSize - 1})`);
      ids.push(id);
      values.push(value);
    }
    const banned: number[] = [];
    const needles = (options.ban ?? []).map((s) => s.toLowerCase());
    if (needles.length > 0) {
      for (let t = 0; t < model.vocabSize; t++) {
        const text = detokenize([t]).toLowerCase();
        if (needles.some((n) => text.includes(n))) banned.push(t);
      }
    }
    return { ids: Int32Array.from(ids), values: Float32Array.from(values), banned: Int32Array.from(banned) };
  },
  create(_options, { prepared: { ids, values, banned } }) {
    return {
      onLogits(logits) {
        for (let i = 0; i < ids.length; i++) logits[ids[i]!]! += values[i]!;
        for (let i = 0; i < banned.length; i++) logits[banned[i]!] = -Infinity;
      },
    };
  },
});

export default logitBias;
