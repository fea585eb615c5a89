/**
 * ggml tensor types: block size and bytes per block, as libggml-base reports them
 * (`ggml_blck_size`, `ggml_type_size`) for the llama.cpp release this project pins.
 * Removed and deprecated type ids are absent, so a file using them is refused by name.
 */
import { bf16BitsToFloat32, dequantizeQ8_0Fast, halfBitsToFloat32 } from "./half.ts";
import { dequantizeQ4_0, dequantizeQ4_K, dequantizeQ5_0, dequantizeQ5_1, dequantizeQ5_K, dequantizeQ6_K } from "./ggml-quants.ts";

export interface GgmlTypeInfo {
  readonly id: number;
  readonly name: string;
  /** Elements per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
}

const TABLE: readonly [number, string, number, number][] = [
  [0, "F32", 1, 4], [1, "F16", 1, 2], [2, "Q4_0", 32, 18], [3, "Q4_1", 32, 20],
  [6, "Q5_0", 32, 22], [7, "Q5_1", 32, 24], [8, "Q8_0", 32, 34], [9, "Q8_1", 32, 36],
  [10, "Q2_K", 256, 84], [11, "Q3_K", 256, 110], [12, "Q4_K", 256, 144], [13, "Q5_K", 256, 176],
  [14, "Q6_K", 256, 210], [15, "Q8_K", 256, 292], [16, "IQ2_XXS", 256, 66], [17, "IQ2_XS", 256, 74],
  [18, "IQ3_XXS", 256, 98], [19, "IQ1_S", 256, 50], [20, "IQ4_NL", 32, 18], [21, "IQ3_S", 256, 110],
  [22, "IQ2_S", 256, 82], [23, "IQ4_XS", 256, 136], [24, "I8", 1, 1], [25, "I16", 1, 2],
  [26, "I32", 1, 4], [27, "I64", 1, 8], [28, "F64", 1, 8], [29, "IQ1_M", 256, 56],
  [30, "BF16", 1, 2], [34, "TQ1_0", 256, 54], [35, "TQ2_0", 256, 66], [39, "MXFP4", 32, 17],
  [40, "NVFP4", 64, 36], [41, "Q1_0", 128, 18], [42, "Q2_0", 64, 18],
];

export const GGML_TYPES: ReadonlyMap<number, GgmlTypeInfo> = new Map(
  TABLE.map(([id, name, blockSize, typeSize]) => [id, { id, name, blockSize, typeSize }]),
);

export const GGML_TYPE = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8, Q4_K: 12, Q5_K: 13, Q6_K: 14, BF16: 30 } as const;

/** Block types `dequantize` reads beyond the float ones (ggml-quants.ts), by type id. */
const BLOCK_DEQUANTIZERS: ReadonlyMap<number, (bytes: Uint8Array, count: number) => Float32Array> = new Map([
  [GGML_TYPE.Q4_0, dequantizeQ4_0],
  [GGML_TYPE.Q5_0, dequantizeQ5_0],
  [GGML_TYPE.Q5_1, dequantizeQ5_1],
  [GGML_TYPE.Q4_K, dequantizeQ4_K],
  [GGML_TYPE.Q5_K, dequantizeQ5_K],
  [GGML_TYPE.Q6_K, dequantizeQ6_K],
]);
/** Every type `dequantize` reads. */
export const DEQUANTIZABLE_TYPES: readonly number[] = [GGML_TYPE.F32, GGML_TYPE.F16, GGML_TYPE.BF16, GGML_TYPE.Q8_0, ...BLOCK_DEQUANTIZERS.keys()];


export function ggmlTypeName(id: number): string {
  return GGML_TYPES.get(id)?.name ?? `unknown type ${id}`;
}

/**
 * Decode a tensor's raw bytes to float32. Covers the types a converter or a reference forward pass
 * meets in small and mid-size llama exports: F32, F16, BF16, Q8_0 (`d:f16, q:int8[32]`), and what
 * llama-quantize's q4_0 / q4_k_m / q5_k_m write (Q4_0, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; ggml-quants.ts).
 * Other quantisations are refused by name rather than guessed.
 */
export function dequantize(type: number, bytes: Uint8Array, count: number): Float32Array {
  const want = (GGML_TYPES.get(type)?.typeSize ?? 0) * (count / (GGML_TYPES.get(type)?.blockSize ?? 1));
  if (GGML_TYPES.has(type) && bytes.byteLength < want) {
    throw new RangeError(`${ggmlTypeName(type)} tensor of ${count} elements needs ${want} bytes, got ${bytes.byteLength}`);
  }
  // Typed views need aligned offsets; a tensor read on its own starts at 0, a slice may not.
  const aligned = bytes.byteOffset % 4 === 0 ? bytes : bytes.slice();
  switch (type) {
    case GGML_TYPE.F32:
      return new Float32Array(aligned.buffer, aligned.byteOffset, count).slice();
    case GGML_TYPE.F16:
      return halfBitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count));
    case GGML_TYPE.BF16:
      return bf16BitsToFloat32(new Uint16Array(aligned.buffer, aligned.byteOffset, count));
    case GGML_TYPE.Q8_0:
      if (count % 32 !== 0) throw new RangeError(`Q8_0 tensor of ${count} elements is not a whole number of 32-blocks`);
      return dequantizeQ8_0Fast(bytes, count);
    default: {
      const block = BLOCK_DEQUANTIZERS.get(type);
      if (block) return block(bytes, count);
      throw new RangeError(`cannot dequantize ggml type ${ggmlTypeName(type)} (supported: ${DEQUANTIZABLE_TYPES.map(ggmlTypeName).join(", ")})`);
    }
  }
}
