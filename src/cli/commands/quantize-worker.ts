/**
 * The child process of `steerkit quantize`: runs quantizeGguf (one blocking llama.cpp call) so the
 * parent's event loop stays free to draw a progress bar from the growing output file. Arguments:
 * one JSON object { input, output, options }. Prints the report as JSON; on failure prints
 * { error } and exits 1.
 */
import { quantizeGguf, type QuantizeOptions } from "../../adapters/llama-cpp/quantize.ts";

const { input, output, options } = JSON.parse(process.argv[2] ?? "{}") as { input: string; output: string; options: QuantizeOptions };
try {
  console.log(JSON.stringify(quantizeGguf(input, output, options)));
} catch (e) {
  console.log(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
  process.exit(1);
}
