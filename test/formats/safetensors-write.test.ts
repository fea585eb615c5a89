import { describe, expect, test } from "bun:test";
import { serializeSafetensors } from "../../src/formats/safetensors/write.ts";

/** The header of a safetensors buffer, parsed the plain way (u64 length, JSON). */
function header(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { n, text: new TextDecoder().decode(bytes.subarray(8, 8 + n)), json: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) };
}

describe("safetensors writer", () => {
  // The expected bytes are the ones huggingface/safetensors' own Rust tests (safetensors/src/tensor.rs,
  // test_serialization / test_serialization_forced_alignement / test_empty) assert for these inputs.
  test("byte for byte as the reference writer: one F32 tensor, header padded with spaces to 8", () => {
    const data = Float32Array.from([0, 1, 2, 3, 4, 5]);
    const a = serializeSafetensors({ "attn.0": { dtype: "F32", shape: [1, 2, 3], data } });
    const json = '{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}';
    expect(json.length).toBe(64); // already aligned: no padding
    expect([...a.subarray(0, 8)]).toEqual([64, 0, 0, 0, 0, 0, 0, 0]);
    expect(new TextDecoder().decode(a.subarray(8, 72))).toBe(json);
    expect([...a.subarray(72)]).toEqual([0, 0, 0, 0, 0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64, 0, 0, 128, 64, 0, 0, 160, 64]);

    const b = serializeSafetensors({ attn0: { dtype: "F32", shape: [1, 1, 2, 3], data } });
    expect(header(b).n).toBe(72);
    expect(header(b).text).toBe('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ');
    expect(b.length).toBe(8 + 72 + 24);
  });

  test("empty files and __metadata__ first", () => {
    expect([...serializeSafetensors({})]).toEqual([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]);
    const m = serializeSafetensors({}, { framework: "pt" });
    expect(header(m).n).toBe(40);
    expect(header(m).text).toBe('{"__metadata__":{"framework":"pt"}}     ');
    const t = serializeSafetensors({ x: { dtype: "F32", shape: [1], data: new Float32Array(1) } }, { format: "pt" });
    expect(header(t).text.startsWith('{"__metadata__":{"format":"pt"},"x":')).toBe(true);
  });

  test("tensors sorted by dtype (wider first), then by name; offsets contiguous; data where the header says", () => {
    const tensors = {
      b: { dtype: "F32" as const, shape: [2], data: Float32Array.from([1, 2]) },
      a: { dtype: "F32" as const, shape: [3], data: Float32Array.from([3, 4, 5]) },
      h: { dtype: "F16" as const, shape: [3], data: Uint16Array.from([0x3c00, 0x4000, 0x4200]) },
      d: { dtype: "F64" as const, shape: [1], data: Float64Array.from([7]) },
    };
    const bytes = serializeSafetensors(tensors);
    const { n, json } = header(bytes);
    expect(n % 8).toBe(0);
    expect(Object.keys(json)).toEqual(["d", "a", "b", "h"]);
    let end = 0;
    for (const name of Object.keys(json)) {
      const [s, e] = json[name].data_offsets;
      expect(s).toBe(end);
      end = e;
    }
    expect(bytes.length).toBe(8 + n + end);
    const [s, e] = json.a.data_offsets;
    expect([...new Float32Array(bytes.slice(8 + n + s, 8 + n + e).buffer)]).toEqual([3, 4, 5]);
    expect(new Float64Array(bytes.slice(8 + n, 8 + n + 8).buffer)[0]).toBe(7);
  });

  test("bad input is refused, naming the tensor", () => {
    expect(() => serializeSafetensors({ w: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } })).toThrow(/"w" \[2, 2\] F32 needs 16 bytes, got 12/);
    expect(() => serializeSafetensors({ w: { dtype: "Q4" as never, shape: [1], data: new Float32Array(1) } })).toThrow(/unsupported dtype Q4/);
    expect(() => serializeSafetensors({ __metadata__: { dtype: "F32", shape: [1], data: new Float32Array(1) } })).toThrow(/reserved/);
  });
});
