/**
 * float32 <-> IEEE half in bulk: our field arithmetic and 65536-entry table vs the engine's
 * `Float16Array`, measured in the same run, to decide which direction src/formats/half.ts sends
 * through the engine (float32 -> half: the engine; half -> float32: the table).
 *
 *   bun bench/half.ts [--rounds 7]
 *   bun bench/half.ts --exhaustive     # also check the shipped float32ToHalfBits against the field
 *                                      # definition on all 2^32 float32 bit patterns (~1 min)
 *
 * Each round runs every method once per size in a fresh shuffled order, each method converting
 * ~16M values (repeating the array); the table shows median ns/value and the speed-up over the
 * baseline of the same size and run (>1 = faster than the baseline).
 */
import { parseArgs } from "node:util";
import { float32BitsToHalf, float32ToHalfBits, halfBitsToFloat32 } from "../src/formats/half.ts";

const { values: args } = parseArgs({
  options: { rounds: { type: "string", default: "7" }, exhaustive: { type: "boolean", default: false } },
});
const rounds = Number(args.rounds);
const SIZES = [16, 64, 1024, 65536, 1 << 22]; // a few values, one hidden row, a row block, a weight tensor
const VALUES_PER_RUN = 1 << 24;

/** The previous float32ToHalfBits: the field arithmetic on every element. */
function f2hFields(src: Float32Array, out: Uint16Array): void {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) out[i] = float32BitsToHalf(bits[i]!);
}
function f2hEngine(src: Float32Array, out: Uint16Array): void {
  new Float16Array(out.buffer, out.byteOffset, out.length).set(src);
}
function h2fTable(bits: Uint16Array, out: Float32Array): void {
  halfBitsToFloat32(bits, out);
}
function h2fEngine(bits: Uint16Array, out: Float32Array): void {
  out.set(new Float16Array(bits.buffer, bits.byteOffset, bits.length));
}

interface Method {
  readonly table: "float32 -> half" | "half -> float32";
  readonly name: string;
  readonly baseline: boolean;
  readonly run: (n: number) => void;
}

// Weight-like data: normal with sd 0.02 (many values near the subnormal range once scaled), seeded.
let seed = 12345;
const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) + 0.5) / 2 ** 32;
const maxN = SIZES[SIZES.length - 1]!;
const f32 = Float32Array.from({ length: maxN }, () => 0.02 * Math.sqrt(-2 * Math.log(rand())) * Math.cos(2 * Math.PI * rand()));
const f16 = float32ToHalfBits(f32);
const outF16 = new Uint16Array(maxN);
const outF32 = new Float32Array(maxN);
const view = <T extends Float32Array | Uint16Array>(a: T, n: number) => a.subarray(0, n) as T;

const methods: Method[] = [
  { table: "float32 -> half", name: "field arithmetic (previous code)", baseline: true, run: (n) => f2hFields(view(f32, n), view(outF16, n)) },
  { table: "float32 -> half", name: "engine Float16Array.set", baseline: false, run: (n) => f2hEngine(view(f32, n), view(outF16, n)) },
  { table: "float32 -> half", name: "float32ToHalfBits (shipped)", baseline: false, run: (n) => void float32ToHalfBits(view(f32, n), view(outF16, n)) },
  { table: "half -> float32", name: "65536-entry table (shipped)", baseline: true, run: (n) => h2fTable(view(f16, n), view(outF32, n)) },
  { table: "half -> float32", name: "engine Float32Array.set(Float16Array)", baseline: false, run: (n) => h2fEngine(view(f16, n), view(outF32, n)) },
];

function nsPerValue(m: Method, n: number): number {
  const reps = Math.max(1, Math.round(VALUES_PER_RUN / n));
  const t0 = Bun.nanoseconds();
  for (let r = 0; r < reps; r++) m.run(n);
  return (Bun.nanoseconds() - t0) / (reps * n);
}
const shuffle = <T>(xs: T[]): T[] => {
  for (let i = xs.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [xs[i], xs[j]] = [xs[j]!, xs[i]!];
  }
  return xs;
};
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const samples = new Map<string, number[]>();
const key = (m: Method, n: number) => `${m.name}@${n}`;
for (const n of SIZES) for (const m of methods) nsPerValue(m, n); // warm-up: every JIT tier, every size
for (let r = 0; r < rounds; r++) {
  for (const n of SIZES) {
    for (const m of shuffle([...methods])) {
      const k = key(m, n);
      samples.set(k, [...(samples.get(k) ?? []), nsPerValue(m, n)]);
    }
  }
}

console.log(`\nBun ${Bun.version}, ${rounds} rounds, ~${VALUES_PER_RUN / 2 ** 20}M values per measurement\n`);
for (const table of ["float32 -> half", "half -> float32"] as const) {
  const rows = methods.filter((m) => m.table === table);
  const base = rows.find((m) => m.baseline)!;
  console.log(`${table} (ratio = speed-up over "${base.name}")\n`);
  console.log(`| method | ${SIZES.map((n) => `n=${n} ns/value | ratio`).join(" | ")} |`);
  console.log(`|---|${SIZES.map(() => "---:|---:").join("|")}|`);
  for (const m of rows) {
    const cells = SIZES.map((n) => {
      const t = median(samples.get(key(m, n))!);
      return `${t.toFixed(2)} | ${(median(samples.get(key(base, n))!) / t).toFixed(2)}`;
    });
    console.log(`| ${m.name} | ${cells.join(" | ")} |`);
  }
  console.log();
}

if (args.exhaustive) {
  // Every float32 bit pattern through the shipped bulk conversion vs the field definition.
  const chunk = 1 << 24;
  const bits = new Uint32Array(chunk);
  const floats = new Float32Array(bits.buffer);
  const out = new Uint16Array(chunk);
  let mismatches = 0;
  const t0 = performance.now();
  for (let start = 0; start < 2 ** 32; start += chunk) {
    for (let i = 0; i < chunk; i++) bits[i] = start + i;
    float32ToHalfBits(floats, out);
    for (let i = 0; i < chunk; i++) {
      if (out[i] !== float32BitsToHalf(bits[i]!)) {
        if (mismatches++ < 10) console.log(`mismatch: float32 0x${bits[i]!.toString(16)} -> 0x${out[i]!.toString(16)}, fields 0x${float32BitsToHalf(bits[i]!).toString(16)}`);
      }
    }
  }
  console.log(`exhaustive: ${mismatches} of 2^32 float32 bit patterns differ from the field definition (${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  if (mismatches > 0) process.exitCode = 1;
}
