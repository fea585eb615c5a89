/**
 * Prometheus text for `GET /metrics`: what an operator watches on a steering server (requests by
 * status, tokens, decode speed, busy sequences, queue, time to first token, memory). Counters only grow;
 * tokens/s is the generated tokens counter over the generation seconds counter (use `rate()` on
 * both), plus the last request's decode speed as a gauge.
 */
import type { Slots } from "./slots.ts";

/** Time-to-first-token histogram buckets, in seconds. */
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export class Metrics {
  readonly #requests = new Map<string, number>();
  promptTokens = 0;
  completionTokens = 0;
  generationSeconds = 0;
  lastTokensPerSecond = 0;
  cancelled = 0;
  disconnected = 0;
  readonly #ttft = new Array<number>(TTFT_BUCKETS.length).fill(0);
  #ttftCount = 0;
  #ttftSum = 0;

  request(route: string, status: number): void {
    const key = `${route}\u0000${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  firstToken(seconds: number): void {
    this.#ttftCount++;
    this.#ttftSum += seconds;
    TTFT_BUCKETS.forEach((b, i) => {
      if (seconds <= b) this.#ttft[i]!++;
    });
  }

  generation(prompt: number, completion: number, seconds: number, tokensPerSecond: number): void {
    this.promptTokens += prompt;
    this.completionTokens += completion;
    this.generationSeconds += seconds;
    this.lastTokensPerSecond = tokensPerSecond;
  }

  /**
   * The Prometheus exposition text.
   * @example
   * ```ts
   * app.get("/metrics", (c) => c.text(metrics.render(slots), 200, { "content-type": "text/plain; version=0.0.4" }));
   * ```
   */
  render(slots: Slots): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    metric("steerkit_requests_total", "counter", "Requests answered, by route and HTTP status.", [...this.#requests].map(([k, n]) => {
      const [route, status] = k.split("\u0000");
      return `steerkit_requests_total{route="${route}",status="${status}"} ${n}`;
    }));
    metric("steerkit_requests_cancelled_total", "counter", "Generations stopped because the client left or the request timed out.", [`steerkit_requests_cancelled_total ${this.cancelled}`]);
    metric("steerkit_client_disconnects_total", "counter", "Clients that left before their answer was complete.", [`steerkit_client_disconnects_total ${this.disconnected}`]);
    metric("steerkit_prompt_tokens_total", "counter", "Prompt tokens evaluated.", [`steerkit_prompt_tokens_total ${this.promptTokens}`]);
    metric("steerkit_completion_tokens_total", "counter", "Tokens generated.", [`steerkit_completion_tokens_total ${this.completionTokens}`]);
    metric("steerkit_generation_seconds_total", "counter", "Seconds spent generating (prefill and decode).", [`steerkit_generation_seconds_total ${this.generationSeconds}`]);
    metric("steerkit_tokens_per_second", "gauge", "Decode speed of the last finished generation.", [`steerkit_tokens_per_second ${this.lastTokensPerSecond}`]);
    metric("steerkit_active_sequences", "gauge", "Sequences generating now.", [`steerkit_active_sequences ${slots.active}`]);
    metric("steerkit_max_sequences", "gauge", "Sequences that may generate at once.", [`steerkit_max_sequences ${slots.size}`]);
    metric("steerkit_queue_length", "gauge", "Requests waiting for a sequence.", [`steerkit_queue_length ${slots.queued}`]);
    // Memory, so that a leak shows on the operator's dashboard (and the soak bench reads it here).
    const memory = process.memoryUsage();
    metric("process_resident_memory_bytes", "gauge", "Resident set size of the server process.", [`process_resident_memory_bytes ${memory.rss}`]);
    metric("steerkit_js_heap_used_bytes", "gauge", "JavaScript heap in use (objects alive at the last collection and allocated since).", [`steerkit_js_heap_used_bytes ${memory.heapUsed}`]);
    metric("steerkit_time_to_first_token_seconds", "histogram", "From the request's arrival to its first generated token.", [
      ...TTFT_BUCKETS.map((b, i) => `steerkit_time_to_first_token_seconds_bucket{le="${b}"} ${this.#ttft[i]}`),
      `steerkit_time_to_first_token_seconds_bucket{le="+Inf"} ${this.#ttftCount}`,
      `steerkit_time_to_first_token_seconds_sum ${this.#ttftSum}`,
      `steerkit_time_to_first_token_seconds_count ${this.#ttftCount}`,
    ]);
    return out.join("\n") + "\n";
  }
}
