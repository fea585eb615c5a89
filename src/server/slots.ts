/**
 * Concurrency: at most `size` generations at once, each holding one sequence (a KV cache), and a
 * bounded queue of requests waiting for one. A full queue is refused at once (the caller answers
 * 429 with Retry-After) instead of holding memory for every client that asks; a waiting request
 * whose client leaves drops out of the queue.
 */
import { ApiError } from "./errors.ts";

export type Release = () => void;

interface Waiter {
  readonly grant: (release: Release) => void;
  readonly fail: (e: unknown) => void;
}

export class Slots {
  #active = 0;
  readonly #queue: Waiter[] = [];
  #idle: (() => void)[] = [];
  /** Mean seconds a slot is held (moving average), for Retry-After. */
  #meanHold = 1;

  constructor(
    readonly size: number,
    readonly maxQueue: number,
  ) {
    if (!Number.isInteger(size) || size < 1) throw new RangeError(`concurrent sequences must be an integer >= 1, got ${size}`);
    if (!Number.isInteger(maxQueue) || maxQueue < 0) throw new RangeError(`the queue length must be an integer >= 0, got ${maxQueue}`);
  }

  get active(): number {
    return this.#active;
  }

  get queued(): number {
    return this.#queue.length;
  }

  /**
   * Wait for a slot; the returned function gives it back (idempotent). Rejects at once with a 429
   * when the queue is full, and with the signal's reason when it aborts while waiting.
   * @example
   * ```ts
   * const release = await slots.acquire(c.req.raw.signal);
   * try { await generate(model, options); } finally { release(); }
   * ```
   */
  acquire(signal?: AbortSignal): Promise<Release> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.size) return Promise.resolve(this.#grant());
    if (this.#queue.length >= this.maxQueue) {
      const wait = Math.max(1, Math.ceil((this.#meanHold * (this.#queue.length + 1)) / this.size));
      return Promise.reject(new ApiError(429, "rate_limit_error", "QUEUE_FULL", `all ${this.size} sequences are busy and ${this.#queue.length} requests are waiting; retry later`, null, { "retry-after": String(wait) }));
    }
    return new Promise<Release>((resolve, reject) => {
      const waiter: Waiter = {
        grant: (release) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(release);
        },
        fail: reject,
      };
      const onAbort = () => {
        const i = this.#queue.indexOf(waiter);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Resolves when no slot is held and nobody waits. */
  whenIdle(): Promise<void> {
    if (this.#active === 0 && this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #grant(): Release {
    this.#active++;
    const start = performance.now();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#meanHold = 0.8 * this.#meanHold + 0.2 * ((performance.now() - start) / 1000);
      this.#active--;
      const next = this.#queue.shift();
      if (next) next.grant(this.#grant());
      else if (this.#active === 0) for (const f of this.#idle.splice(0)) f();
    };
  }
}
