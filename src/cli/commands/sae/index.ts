/** `steerkit sae <subcommand>`: SAEs from a shell. Each subcommand is its own module; this one only lists them. */
import { subcommands } from "../../args.ts";
import { saeEncodeCommand } from "./encode.ts";
import { featuresCommand } from "./features.ts";
import { saeInfoCommand } from "./info.ts";
import { saeTrainCommand } from "./train.ts";

export const saeCommand = subcommands(
  "sae",
  "sparse autoencoder files (SAELens, EleutherAI sparsify, Gemma Scope)",
  "SAE tools: describe, encode and decode, find features, train (SAELens format)",
  { info: saeInfoCommand, encode: saeEncodeCommand, features: featuresCommand, train: saeTrainCommand },
);
