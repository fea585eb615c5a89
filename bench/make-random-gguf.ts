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
import { readGgufHeader, type GgufValue } from "../src/formats/gguf.ts";

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
const T_U32 = 4, T_I32 = 5, T_F32 = 6, T_STRING = 8, T_ARRAY = 9;

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

type Kv = [string, number, GgufValue, number?];
const kvs: Kv[] = [
  ["general.architecture", T_STRING, "llama"],
  ["general.name", T_STRING, `random llama d${d} l${nLayers} f16`],
  ["llama.context_length", T_U32, ctx],
  ["llama.embedding_length", T_U32, d],
  ["llama.block_count", T_U32, nLayers],
  ["llama.feed_forward_length", T_U32, ff],
  ["llama.attention.head_count", T_U32, heads],
  ["llama.attention.head_count_kv", T_U32, kvHeads],
  ["llama.rope.dimension_count", T_U32, headDim],
  ["llama.attention.layer_norm_rms_epsilon", T_F32, 1e-5],
  ["llama.vocab_size", T_U32, vocab],
  ["tokenizer.ggml.model", T_STRING, "llama"],
  ["tokenizer.ggml.tokens", T_ARRAY, tokens, T_STRING],
  ["tokenizer.ggml.scores", T_ARRAY, scores, T_F32],
  ["tokenizer.ggml.token_type", T_ARRAY, types, T_I32],
  ["tokenizer.ggml.bos_token_id", T_U32, 1],
  ["tokenizer.ggml.eos_token_id", T_U32, 2],
  ["tokenizer.ggml.unknown_token_id", T_U32, 0],
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

// Header.
const parts: Buffer[] = [];
const u32 = (n: number) => { const b = Buffer.alloc(4); b.writeUInt32LE(n); parts.push(b); };
const i32 = (n: number) => { const b = Buffer.alloc(4); b.writeInt32LE(n); parts.push(b); };
const u64 = (n: number) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); parts.push(b); };
const f32 = (n: number) => { const b = Buffer.alloc(4); b.writeFloatLE(n); parts.push(b); };
const str = (s: string) => { const b = Buffer.from(s, "utf8"); u64(b.length); parts.push(b); };
const scalar = (type: number, v: GgufValue) => {
  if (type === T_U32) u32(v as number);
  else if (type === T_I32) i32(v as number);
  else if (type === T_F32) f32(v as number);
  else if (type === T_STRING) str(v as string);
  else throw new Error(`unsupported type ${type}`);
};
u32(0x46554747);
u32(3);
u64(tensors.length);
u64(kvs.length);
for (const [key, type, value, elem] of kvs) {
  str(key);
  u32(type);
  if (type === T_ARRAY) {
    const arr = value as GgufValue[];
    u32(elem!);
    u64(arr.length);
    for (const x of arr) scalar(elem!, x);
  } else scalar(type, value);
}
let offset = 0;
for (const t of tensors) {
  str(t.name);
  u32(t.dims.length);
  for (const n of t.dims) u64(n);
  u32(t.type);
  u64(offset);
  offset = align(offset + bytesOf(t));
}
let header = Buffer.concat(parts);
header = Buffer.concat([header, Buffer.alloc(align(header.length) - header.length)]);

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
