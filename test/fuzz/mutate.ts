// Structure-aware mutations for the fuzzing campaign. Random bytes mostly die at the magic number;
// these aim at the fields a loader trusts: GGUF header counts, key/value types, string lengths and
// bytes, array counts, vocabulary entries, tensor dimensions, types and offsets; JSON numbers and
// structure (safetensors headers, cfg.json, tokenizer.json, direction files); plus truncations and
// bit flips everywhere. Deterministic from a seed, so a campaign can be replayed.

/** mulberry32: small, fast, seedable. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type Rng = () => number;
const pick = <T>(r: Rng, xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
const int = (r: Rng, n: number): number => Math.floor(r() * n);

/** Values that break arithmetic: zero, one, boundaries of each width, off-by-one around them. */
const INTERESTING_U32 = [0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 63, 64, 255, 256, 511, 512, 513, 1023, 1024, 4096, 65535, 65536, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];
const INTERESTING_U64 = [0n, 1n, 2n, 8n, 64n, 255n, 256n, 65536n, 0x7fffffffn, 0xffffffffn, 0x100000000n, 0x7fffffffffffffffn, 0x8000000000000000n, 0xffffffffffffffffn];

export interface Field {
  readonly at: number;
  readonly size: 4 | 8 | 1;
  readonly what: string;
}

export interface GgufLayout {
  readonly fields: Field[];
  /** Byte ranges of every string's bytes (keys, values, tokens, tensor names). */
  readonly strings: { at: number; length: number; what: string }[];
  /** The vocabulary entries (tokenizer.ggml.tokens), by index. */
  readonly tokens: { at: number; length: number }[];
  readonly headerEnd: number;
}

/** Walk a well-formed GGUF (the seed file) and record where every field is. */
export function ggufLayout(b: Uint8Array): GgufLayout {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const fields: Field[] = [];
  const strings: GgufLayout["strings"] = [];
  const tokens: GgufLayout["tokens"] = [];
  let p = 0;
  const u32 = (what: string) => {
    fields.push({ at: p, size: 4, what });
    const x = v.getUint32(p, true);
    p += 4;
    return x;
  };
  const u64 = (what: string) => {
    fields.push({ at: p, size: 8, what });
    const x = Number(v.getBigUint64(p, true));
    p += 8;
    return x;
  };
  const str = (what: string) => {
    const n = u64(`${what} length`);
    strings.push({ at: p, length: n, what });
    const s = new TextDecoder().decode(b.subarray(p, p + n));
    p += n;
    return { s, at: p - n, n };
  };
  const SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };
  const value = (type: number, what: string, key: string) => {
    if (type === 8) return void str(what);
    if (type === 9) {
      const et = u32(`${what} element type`);
      const n = u64(`${what} count`);
      for (let i = 0; i < n; i++) {
        if (et === 8) {
          const s = str(`${what}[${i}]`);
          if (key === "tokenizer.ggml.tokens") tokens.push({ at: s.at, length: s.n });
        } else {
          const size = SIZE[et]!;
          if (size === 4 || size === 8 || size === 1) fields.push({ at: p, size: size as 1 | 4 | 8, what: `${what}[${i}]` });
          p += size;
        }
      }
      return;
    }
    const size = SIZE[type]!;
    if (size === 4 || size === 8 || size === 1) fields.push({ at: p, size: size as 1 | 4 | 8, what });
    p += size;
  };
  u32("magic");
  u32("version");
  const nT = u64("tensor count");
  const nKv = u64("kv count");
  for (let i = 0; i < nKv; i++) {
    const key = str(`key #${i}`).s;
    const type = u32(`type of ${key}`);
    value(type, key, key);
  }
  for (let i = 0; i < nT; i++) {
    const name = str(`tensor #${i} name`).s;
    const nd = u32(`${name} n_dims`);
    for (let d = 0; d < nd; d++) u64(`${name} dim ${d}`);
    u32(`${name} type`);
    u64(`${name} offset`);
  }
  return { fields, strings, tokens, headerEnd: p };
}

function setField(out: Uint8Array, f: Field, r: Rng): string {
  const v = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (f.size === 1) {
    const x = pick(r, [0, 1, 2, 0x7f, 0x80, 0xff]);
    v.setUint8(f.at, x);
    return `${f.what} := ${x}`;
  }
  if (f.size === 4) {
    const old = v.getUint32(f.at, true);
    const x = r() < 0.3 ? (old + pick(r, [-2, -1, 1, 2])) >>> 0 : r() < 0.2 ? int(r, 13) : pick(r, INTERESTING_U32);
    v.setUint32(f.at, x, true);
    return `${f.what} := ${x}`;
  }
  const old = v.getBigUint64(f.at, true);
  const x = r() < 0.3 ? BigInt.asUintN(64, old + BigInt(pick(r, [-2, -1, 1, 2, 32, -32]))) : pick(r, INTERESTING_U64);
  v.setBigUint64(f.at, x, true);
  return `${f.what} := ${x}`;
}

function flipBits(out: Uint8Array, from: number, to: number, r: Rng): string {
  const n = 1 + int(r, 4);
  const at: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = from + int(r, Math.max(1, to - from));
    out[p]! ^= 1 << int(r, 8);
    at.push(p);
  }
  return `bit flips at ${at.join(",")}`;
}

/** One mutation of a GGUF; returns the bytes and what was done. */
export function mutateGguf(seed: Uint8Array, layout: GgufLayout, r: Rng): { bytes: Uint8Array; what: string } {
  const out = seed.slice();
  const kind = int(r, 10);
  switch (kind) {
    case 0:
    case 1:
    case 2: {
      // A header, count, type, dimension or offset field set to an interesting value.
      const f = pick(r, layout.fields);
      return { bytes: out, what: setField(out, f, r) };
    }
    case 3: {
      // Vocabulary: one token's text made equal to another of the same length, or bytes changed.
      if (layout.tokens.length === 0) return { bytes: out, what: setField(out, pick(r, layout.fields), r) }; // a control vector has none
      const t = pick(r, layout.tokens);
      const same = layout.tokens.filter((u) => u.length === t.length && u !== t);
      if (same.length > 0 && r() < 0.5) {
        const u = pick(r, same);
        out.copyWithin(t.at, u.at, u.at + u.length);
        return { bytes: out, what: `token at ${t.at} copies token at ${u.at}` };
      }
      if (t.length === 0) return { bytes: out, what: "no-op" };
      const p = t.at + int(r, t.length);
      out[p] = pick(r, [0, 0x20, 0x3c, 0x3e, 0x80, 0xc3, 0xff, int(r, 256)]);
      return { bytes: out, what: `token byte ${p} := ${out[p]}` };
    }
    case 4: {
      // Any string's bytes (keys, architecture, tokenizer model, chat template, tensor names).
      const s = pick(r, layout.strings);
      if (s.length === 0) return { bytes: out, what: "no-op" };
      const p = s.at + int(r, s.length);
      out[p] = pick(r, [0, 0x2e, 0x30, 0x39, 0x5f, 0x7b, 0x7d, 0x80, 0xff, int(r, 256)]);
      return { bytes: out, what: `${s.what} byte ${p} := ${out[p]}` };
    }
    case 5:
      return { bytes: out, what: flipBits(out, 0, layout.headerEnd, r) };
    case 6: {
      // Weights: bit flips in the data (NaN/Inf floats, huge values).
      return { bytes: out, what: flipBits(out, layout.headerEnd, out.length, r) };
    }
    case 7: {
      const at = r() < 0.7 ? int(r, layout.headerEnd + 64) : int(r, out.length);
      return { bytes: out.subarray(0, at), what: `truncated at ${at}` };
    }
    case 8: {
      // Two fields at once: counts that agree with each other but not with the file.
      const a = pick(r, layout.fields);
      const b = pick(r, layout.fields);
      return { bytes: out, what: `${setField(out, a, r)}; ${setField(out, b, r)}` };
    }
    default: {
      // A chunk of the header deleted or duplicated (shifts every later offset).
      const at = int(r, layout.headerEnd);
      const len = 1 + int(r, 32);
      if (r() < 0.5) {
        const res = new Uint8Array(out.length - len);
        res.set(out.subarray(0, at));
        res.set(out.subarray(at + len), at);
        return { bytes: res, what: `deleted ${len} bytes at ${at}` };
      }
      const res = new Uint8Array(out.length + len);
      res.set(out.subarray(0, at + len));
      res.set(out.subarray(at), at + len);
      return { bytes: res, what: `duplicated ${len} bytes at ${at}` };
    }
  }
}

/** Generic binary mutation (protobuf, zip, safetensors data): bit flips, interesting ints, truncation, splices. */
export function mutateBinary(seed: Uint8Array, r: Rng, focus = seed.length): { bytes: Uint8Array; what: string } {
  const out = seed.slice();
  const kind = int(r, 6);
  const limit = Math.min(out.length, focus);
  if (kind === 0 || kind === 1) return { bytes: out, what: flipBits(out, 0, kind === 0 ? limit : out.length, r) };
  if (kind === 2) {
    const p = int(r, Math.max(1, limit - 8));
    const v = new DataView(out.buffer);
    const w = pick(r, [1, 2, 4, 8]);
    if (w === 1) v.setUint8(p, pick(r, [0, 1, 0x7f, 0x80, 0xff]));
    else if (w === 2) v.setUint16(p, pick(r, [0, 1, 0x7fff, 0x8000, 0xffff]), true);
    else if (w === 4) v.setUint32(p, pick(r, INTERESTING_U32), true);
    else v.setBigUint64(p, pick(r, INTERESTING_U64), true);
    return { bytes: out, what: `${w}-byte interesting value at ${p}` };
  }
  if (kind === 3) {
    const at = int(r, out.length);
    return { bytes: out.subarray(0, at), what: `truncated at ${at}` };
  }
  if (kind === 4) {
    // Protobuf varints: 0xff runs make over-long varints and huge lengths.
    const p = int(r, Math.max(1, limit - 10));
    const n = 1 + int(r, 10);
    out.fill(pick(r, [0xff, 0x80, 0x00]), p, p + n);
    return { bytes: out, what: `${n} bytes filled at ${p}` };
  }
  const at = int(r, limit);
  const len = 1 + int(r, 16);
  const res = new Uint8Array(Math.max(0, out.length - len));
  res.set(out.subarray(0, at));
  res.set(out.subarray(at + len), at);
  return { bytes: res, what: `deleted ${len} bytes at ${at}` };
}

const JSON_NUMBERS = ["0", "-1", "1e309", "-1e309", "1e-320", "4294967296", "9007199254740993", "1.5", "-0", "3.4e38", "65536", "2147483648", "NaN", "null", '"7"', "[]", "{}", "true"];

/** JSON-aware text mutation: numbers, strings, keys and brackets (cfg.json, safetensors headers, directions, tokenizer.json). */
export function mutateJsonText(text: string, r: Rng): { text: string; what: string } {
  const kind = int(r, 6);
  const numbers = [...text.matchAll(/-?\d+(\.\d+)?([eE][-+]?\d+)?/g)];
  const strings = [...text.matchAll(/"(?:[^"\\]|\\.)*"/g)];
  if ((kind <= 2 && numbers.length > 0) || strings.length === 0) {
    const m = pick(r, numbers.length ? numbers : [{ index: 0, 0: "" } as unknown as RegExpMatchArray]);
    const v = pick(r, JSON_NUMBERS);
    return { text: text.slice(0, m.index) + v + text.slice(m.index! + m[0].length), what: `number at ${m.index} := ${v}` };
  }
  if (kind === 3) {
    const m = pick(r, strings);
    const v = pick(r, ['""', '"x"', '"F64"', '"I64"', '"BF16"', '"resid_post.99"', '"blocks.-1.hook_resid_post"', "null", "0", '"\\u0000"', "[]"]);
    return { text: text.slice(0, m.index) + v + text.slice(m.index! + m[0].length), what: `string at ${m.index} := ${v}` };
  }
  if (kind === 4) {
    const at = int(r, text.length);
    return { text: text.slice(0, at), what: `truncated at ${at}` };
  }
  const at = int(r, text.length);
  const c = pick(r, ["{", "}", "[", "]", ",", ":", '"', "\\", "\u0000"]);
  return { text: text.slice(0, at) + c + text.slice(at + 1), what: `char ${at} := ${JSON.stringify(c)}` };
}

/** safetensors: the JSON header mutated as text (length prefix kept consistent or not), or the binary. */
export function mutateSafetensors(seed: Uint8Array, r: Rng): { bytes: Uint8Array; what: string } {
  const n = Number(new DataView(seed.buffer, seed.byteOffset).getBigUint64(0, true));
  if (r() < 0.6) {
    const header = new TextDecoder().decode(seed.subarray(8, 8 + n));
    const m = mutateJsonText(header, r);
    const h = new TextEncoder().encode(m.text);
    const keep = r() < 0.8; // usually keep the prefix in step, so the header itself gets parsed
    const out = new Uint8Array(8 + h.length + (seed.length - 8 - n));
    new DataView(out.buffer).setBigUint64(0, BigInt(keep ? h.length : n), true);
    out.set(h, 8);
    out.set(seed.subarray(8 + n), 8 + h.length);
    return { bytes: out, what: `header ${m.what}${keep ? "" : " (length prefix stale)"}` };
  }
  return mutateBinary(seed, r, 8 + n);
}
