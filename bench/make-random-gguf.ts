/**
 * Writes a random-weight llama GGUF of realistic width for benchmarks only (never committed; the
 * default output is under bench/models/, which is gitignored). The 1.2 MB stories260K is too small
 * to show what hooks cost next to real matrix work.
 *
 *   bun bench/make-random-gguf.ts [--out bench/models/random-d1024-l16-f16.gguf] [--d 1024] [--layers 16]
 *       [--ff 2816] [--heads 16] [--kv-heads 16] [--vocab 32000] [--ctx 4096]
 *
 * The vocabulary is stories260K's 512 SentencePiece tokens padded with placeholder tokens up to
 * --vocab, so the output matrix has a real model's size. Weights are random f16 (norms f32 = 1).
 * A minimal GGUF v3 writer lives here rather than in src/: nothing in Steerkit writes GGUF files.
 */
import { closeSync, mkdirSync, openSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { readGgufHeader } from "../src/formats/gguf.ts";
import { encodeGgufHeader, type GgufTyped } from "../src/formats/gguf-write.ts";

const { values: args } = parseArgs({
  options: {
    out: { type: "string", default: join(import.meta.dir, "models", "random-d1024-l16-f16.gguf") },
    d: { type: "string", default: "1024" },
    layers: { type: "string", default: "16" },
    ff: { type: "string", default: "2816" },
    heads: { type: "string", default: "16" },
    "kv-heads": { type: "string", default: "16" },
    vocab: { type: "string", default: "32000" },
    ctx: { type: "string", default: "4096" },
  },
});
const d = Number(args.d), nLayers = Number(args.layers), ff = Number(args.ff);
const heads = Number(args.heads), kvHeads = Number(args["kv-heads"]), vocab = Number(args.vocab), ctx = Number(args.ctx);
const headDim = d / heads;
if (!Number.isInteger(headDim)) throw new Error(`--d ${d} is not a multiple of --heads ${heads}`);

const F32 = 0, F16 = 1;

// Tokenizer: stories260K's, padded.
const stories = readGgufHeader(join(import.meta.dir, "..", "models", "stories260K.gguf"));
const baseTokens = stories.metadata.get("tokenizer.ggml.tokens") as string[];
const baseScores = stories.metadata.get("tokenizer.ggml.scores") as number[];
const baseTypes = stories.metadata.get("tokenizer.ggml.token_type") as number[];
const tokens = [...baseTokens], scores = [...baseScores], types = [...baseTypes];
for (let i = tokens.length; i < vocab; i++) {
  tokens.push(`<pad${i}>`);
  scores.push(-1e6);
  types.push(1);
}

const u32 = (value: number): GgufTyped => ({ type: "u32", value });
const kvs: (readonly [string, GgufTyped])[] = [
  ["general.architecture", { type: "string", value: "llama" }],
  ["general.name", { type: "string", value: `random llama d${d} l${nLayers} f16` }],
  ["llama.context_length", u32(ctx)],
  ["llama.embedding_length", u32(d)],
  ["llama.block_count", u32(nLayers)],
  ["llama.feed_forward_length", u32(ff)],
  ["llama.attention.head_count", u32(heads)],
  ["llama.attention.head_count_kv", u32(kvHeads)],
  ["llama.rope.dimension_count", u32(headDim)],
  ["llama.attention.layer_norm_rms_epsilon", { type: "f32", value: 1e-5 }],
  ["llama.vocab_size", u32(vocab)],
  ["tokenizer.ggml.model", { type: "string", value: "llama" }],
  ["tokenizer.ggml.tokens", { type: "array", of: "string", value: tokens }],
  ["tokenizer.ggml.scores", { type: "array", of: "f32", value: scores }],
  ["tokenizer.ggml.token_type", { type: "array", of: "i32", value: types }],
  ["tokenizer.ggml.bos_token_id", u32(1)],
  ["tokenizer.ggml.eos_token_id", u32(2)],
  ["tokenizer.ggml.unknown_token_id", u32(0)],
];

interface TensorSpec { name: string; dims: number[]; type: number }
const tensors: TensorSpec[] = [{ name: "token_embd.weight", dims: [d, vocab], type: F16 }];
for (let l = 0; l < nLayers; l++) {
  const b = `blk.${l}.`;
  tensors.push(
    { name: `${b}attn_norm.weight`, dims: [d], type: F32 },
    { name: `${b}attn_q.weight`, dims: [d, d], type: F16 },
    { name: `${b}attn_k.weight`, dims: [d, kvHeads * headDim], type: F16 },
    { name: `${b}attn_v.weight`, dims: [d, kvHeads * headDim], type: F16 },
    { name: `${b}attn_output.weight`, dims: [d, d], type: F16 },
    { name: `${b}ffn_norm.weight`, dims: [d], type: F32 },
    { name: `${b}ffn_gate.weight`, dims: [d, ff], type: F16 },
    { name: `${b}ffn_up.weight`, dims: [d, ff], type: F16 },
    { name: `${b}ffn_down.weight`, dims: [ff, d], type: F16 },
  );
}
tensors.push({ name: "output_norm.weight", dims: [d], type: F32 }, { name: "output.weight", dims: [d, vocab], type: F16 });

const ALIGN = 32;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;
const bytesOf = (t: TensorSpec) => t.dims.reduce((a, b) => a * b, 1) * (t.type === F32 ? 4 : 2);

const { header } = encodeGgufHeader({ metadata: kvs, tensors: tensors.map((t) => ({ ...t, byteLength: bytesOf(t) })), alignment: ALIGN });

mkdirSync(dirname(args.out!), { recursive: true });
const fd = openSync(args.out!, "w");
writeSync(fd, header);
let seed = 0x9e3779b9;
const CHUNK = 1 << 22;
const buf = new Uint16Array(CHUNK);
for (const t of tensors) {
  const n = t.dims.reduce((a, b) => a * b, 1);
  if (t.type === F32) {
    writeSync(fd, new Uint8Array(new Float32Array(n).fill(1).buffer));
  } else {
    // Random f16 bit patterns: random sign and mantissa, exponents 2^-8..2^-5 (|w| ~ 0.004..0.06).
    for (let done = 0; done < n; done += CHUNK) {
      const m = Math.min(CHUNK, n - done);
      for (let i = 0; i < m; i++) {
        seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
        buf[i] = (seed & 0x8000) | ((7 + ((seed >>> 16) & 3)) << 10) | (seed & 0x3ff);
      }
      writeSync(fd, new Uint8Array(buf.buffer, 0, m * 2));
    }
  }
  const pad = align(bytesOf(t)) - bytesOf(t);
  if (pad > 0) writeSync(fd, new Uint8Array(pad));
}
closeSync(fd);
const file = readGgufHeader(args.out!); // validates what was written
const params = tensors.reduce((a, t) => a + t.dims.reduce((x, y) => x * y, 1), 0);
console.log(`wrote ${args.out} (${(file.fileSize / 1e6).toFixed(0)} MB, ${(params / 1e6).toFixed(0)}M params, ${file.tensors.length} tensors)`);
