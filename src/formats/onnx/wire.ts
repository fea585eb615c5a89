/**
 * Protobuf wire format: just enough to read and write ONNX losslessly.
 *
 * Why hand-written: `onnx-proto` on npm lags the ONNX schema by years and `protobufjs` turns every
 * weight into JS numbers and drops fields it does not know. Here every field we do not interpret
 * stays an exact byte slice (tag included), so re-encoding a real export gives the same bytes.
 */
import { SteerkitError } from "../../core/errors.ts";

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_LEN = 2;
export const WIRE_FIXED32 = 5;

/** A field kept verbatim: its number and its exact bytes, tag included. */
export interface RawField {
  readonly field: number;
  readonly bytes: Uint8Array;
}

export class WireError extends SteerkitError {
  override name = "WireError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("INVALID_MODEL_FILE", message, options);
  }
}

const utf8Decoder = new TextDecoder("utf-8", { fatal: false });
const utf8Encoder = new TextEncoder();

export class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start = 0,
    readonly end = buf.length,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  /** A varint as a JS number: exact below 2^53, which covers every length, tag and enum. */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new WireError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** A varint as a signed 64-bit BigInt (protobuf int64: negatives are ten-byte two's complement). */
  varintBig(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError(`truncated varint at byte ${this.pos}`);
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return BigInt.asIntN(64, result);
      shift += 7n;
    }
    throw new WireError(`varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** An int64 varint as a number (dims, versions): exact for |v| < 2^53. */
  int64(): number {
    const start = this.pos;
    const v = this.varint();
    if (v < 2 ** 53) return v;
    this.pos = start;
    return Number(this.varintBig());
  }

  fixed32(): DataView {
    if (this.pos + 4 > this.end) throw new WireError(`truncated fixed32 at byte ${this.pos}`);
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4);
    this.pos += 4;
    return view;
  }

  float(): number {
    return this.fixed32().getFloat32(0, true);
  }

  /** The payload of a length-delimited field, as a view into the buffer (no copy). */
  bytes(): Uint8Array {
    const len = this.varint();
    if (this.pos + len > this.end) {
      throw new WireError(`length-delimited field of ${len} bytes at byte ${this.pos} runs past the end (${this.end})`);
    }
    const out = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return out;
  }

  string(): string {
    return utf8Decoder.decode(this.bytes());
  }

  /** A sub-reader over a length-delimited payload. */
  message(): Reader {
    const b = this.bytes();
    return new Reader(b, 0, b.length);
  }

  /** Skip a field's payload given its wire type. */
  skip(wire: number): void {
    switch (wire) {
      case WIRE_VARINT:
        this.varint();
        return;
      case WIRE_FIXED64:
        this.pos += 8;
        break;
      case WIRE_LEN: {
        const len = this.varint();
        this.pos += len;
        break;
      }
      case WIRE_FIXED32:
        this.pos += 4;
        break;
      default:
        throw new WireError(`unsupported wire type ${wire} at byte ${this.pos}`);
    }
    if (this.pos > this.end) throw new WireError(`field runs past the end of its message`);
  }

  /** Read the next tag; `start` is where the field (tag included) began, for raw capture. */
  tag(): { field: number; wire: number; start: number } {
    const start = this.pos;
    const t = this.varint();
    const field = Math.floor(t / 8);
    if (field === 0) throw new WireError(`field number 0 at byte ${start}: not a protobuf message`);
    return { field, wire: t & 7, start };
  }

  /** Skip the current field and return it verbatim. */
  raw(field: number, wire: number, start: number): RawField {
    this.skip(wire);
    return { field, bytes: this.buf.subarray(start, this.pos) };
  }
}

/**
 * Collects output as a list of chunks so that large payloads (initializer raw_data) are copied once,
 * into the final buffer, however deeply they are nested.
 */
export class Writer {
  private chunks: Uint8Array[] = [];
  private scratch = new Uint8Array(256);
  private used = 0;
  length = 0;

  private flushScratch(): void {
    if (this.used > 0) {
      this.chunks.push(this.scratch.slice(0, this.used));
      this.used = 0;
    }
  }

  private ensure(n: number): void {
    if (this.used + n > this.scratch.length) {
      this.flushScratch();
      if (n > this.scratch.length) this.scratch = new Uint8Array(n);
    }
  }

  byte(b: number): void {
    this.ensure(1);
    this.scratch[this.used++] = b;
    this.length++;
  }

  varint(v: number): void {
    if (!Number.isInteger(v) || v < 0) {
      this.varintBig(BigInt(v));
      return;
    }
    this.ensure(10);
    while (v >= 0x80) {
      this.scratch[this.used++] = (v % 128) | 0x80;
      this.length++;
      v = Math.floor(v / 128);
    }
    this.scratch[this.used++] = v;
    this.length++;
  }

  varintBig(v: bigint): void {
    let u = BigInt.asUintN(64, v);
    this.ensure(10);
    while (u >= 0x80n) {
      this.scratch[this.used++] = Number(u & 0x7fn) | 0x80;
      this.length++;
      u >>= 7n;
    }
    this.scratch[this.used++] = Number(u);
    this.length++;
  }

  tag(field: number, wire: number): void {
    this.varint(field * 8 + wire);
  }

  float(v: number): void {
    this.ensure(4);
    new DataView(this.scratch.buffer, this.used, 4).setFloat32(0, v, true);
    this.used += 4;
    this.length += 4;
  }

  /** Append bytes; large ones by reference (copied once, in `finish`). */
  append(b: Uint8Array): void {
    if (b.length <= 64) {
      this.ensure(b.length);
      this.scratch.set(b, this.used);
      this.used += b.length;
    } else {
      this.flushScratch();
      this.chunks.push(b);
    }
    this.length += b.length;
  }

  /** Field `field` as length-delimited bytes. */
  bytesField(field: number, b: Uint8Array): void {
    this.tag(field, WIRE_LEN);
    this.varint(b.length);
    this.append(b);
  }

  stringField(field: number, s: string): void {
    this.bytesField(field, utf8Encoder.encode(s));
  }

  varintField(field: number, v: number | bigint): void {
    this.tag(field, WIRE_VARINT);
    if (typeof v === "bigint") this.varintBig(v);
    else this.varint(v);
  }

  /** Field `field` as a nested message written by `body`. */
  messageField(field: number, body: (w: Writer) => void): void {
    const child = new Writer();
    body(child);
    this.tag(field, WIRE_LEN);
    this.varint(child.length);
    this.appendWriter(child);
  }

  appendWriter(child: Writer): void {
    child.flushScratch();
    this.flushScratch();
    for (const c of child.chunks) this.chunks.push(c);
    this.length += child.length;
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1 && this.chunks[0]!.length === this.length) return this.chunks[0]!;
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const c of this.chunks) {
      out.set(c, off);
      off += c.length;
    }
    return out;
  }
}

export function utf8(s: string): Uint8Array {
  return utf8Encoder.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  return utf8Decoder.decode(b);
}
