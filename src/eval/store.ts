/**
 * An append-only JSONL results file that survives being killed: every record is one line, written
 * whole with a single write before the runner moves on, so after an interrupt the file holds every
 * finished item and at most one torn last line. A write is in the kernel once `write` returns, so a
 * killed process (SIGKILL, a crash) loses nothing; fsync, which also survives a power cut, costs
 * ~6 ms per call on a VM disk — as much as generating a short answer on a small model — so lines
 * are fsync'd in groups: at the first append 100 ms or more after the last fsync, and on close.
 * A power cut can cost at most the last 100 ms of items. Opening it again drops a torn tail
 * (truncating to the last newline, so the next append starts a fresh line) and indexes the records
 * by key; the runner skips every key whose record matches the work it would do now.
 *
 * A record is "finished" for the current run only when its `hash` matches: the hash covers what
 * determines the result (model, recipe, settings, the item's content, the judge), so a changed
 * config reruns what it changed and reuses the rest — adding a condition to a finished run costs
 * only the new condition. Superseded records stay in the file (it is also the audit trail); the
 * newest record of a key wins.
 */
import { closeSync, fstatSync, fsyncSync, ftruncateSync, openSync, readFileSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EvalError } from "./errors.ts";

/** Longest time an appended line waits for its fsync (see the module comment). */
const SYNC_INTERVAL_MS = 100;

export interface StoredRecord {
  /** `<run>|<set>|<item id>|<seed>` (seed "-" for scores, which do not sample). */
  readonly key: string;
  /** What determined the result; a record is reused only when it matches. */
  readonly hash: string;
}

/** A record as read back: its key, hash and whatever else was written. */
export type ReadRecord = StoredRecord & Readonly<Record<string, unknown>>;

export interface ResultsStore {
  readonly path: string;
  /** The newest record of `key` when its hash is `hash`, else undefined. */
  get(key: string, hash: string): ReadRecord | undefined;
  /** Append one record (written at once; fsync'd within 100 ms, and on close). */
  append<R extends StoredRecord>(record: R): void;
  /** Records read at open that were dropped: a torn last line. */
  readonly dropped: number;
  close(): void;
}

/**
 * The key of one result.
 * @example
 * ```ts
 * resultKey("clamp=4", "unsafe", "u17", 0); // "clamp=4|unsafe|u17|0"
 * ```
 */
export function resultKey(run: string, set: string, id: string, seed: number | null): string {
  return `${run}|${set}|${id}|${seed ?? "-"}`;
}

/**
 * Open (creating it if needed) a results file.
 * @example
 * ```ts
 * const store = openResultsStore("out/generations.jsonl");
 * if (!store.get(key, hash)) store.append({ key, hash, output: "..." });
 * store.close();
 * ```
 */
export function openResultsStore(path: string): ResultsStore {
  const fd = openSync(path, "a+");
  const bytes = readAll(fd);
  const end = bytes.lastIndexOf(0x0a) + 1; // everything after the last newline is a torn write
  const dropped = end < bytes.length ? 1 : 0;
  if (dropped) ftruncateSync(fd, end);
  const index = new Map<string, ReadRecord>();
  const text = new TextDecoder().decode(bytes.subarray(0, end));
  let lineNo = 0;
  for (const line of text.split("\n")) {
    lineNo++;
    if (line === "") continue;
    let r: unknown;
    try {
      r = JSON.parse(line);
    } catch {
      closeSync(fd);
      throw new EvalError(`${path}:${lineNo}: not a results record (not JSON); this file was not written by steerkit eval, or was edited: move it away or choose another output directory`);
    }
    if (typeof r !== "object" || r === null || typeof (r as StoredRecord).key !== "string" || typeof (r as StoredRecord).hash !== "string") {
      closeSync(fd);
      throw new EvalError(`${path}:${lineNo}: not a results record (no "key" and "hash"); move the file away or choose another output directory`);
    }
    index.set((r as ReadRecord).key, r as ReadRecord);
  }
  const encoder = new TextEncoder();
  let closed = false;
  let synced = -Infinity; // the first record is synced at once
  return {
    path,
    dropped,
    get(key, hash) {
      const r = index.get(key);
      return r && r.hash === hash ? r : undefined;
    },
    append(record) {
      if (closed) throw new Error(`results store ${path} is closed`);
      const data = encoder.encode(JSON.stringify(record) + "\n");
      let done = 0;
      while (done < data.length) done += writeSync(fd, data, done, data.length - done);
      const now = performance.now();
      if (now - synced >= SYNC_INTERVAL_MS) {
        fsyncSync(fd);
        synced = now;
      }
      index.set(record.key, record as ReadRecord);
    },
    close() {
      if (!closed) {
        fsyncSync(fd);
        closeSync(fd);
      }
      closed = true;
    },
  };
}

function readAll(fd: number): Uint8Array {
  const size = fstatSync(fd).size;
  const out = new Uint8Array(size);
  let done = 0;
  while (done < size) {
    const n = readSync(fd, out, done, size - done, done);
    if (n === 0) break;
    done += n;
  }
  return out.subarray(0, done);
}

/**
 * Claim an output directory for one evaluation at a time: two processes appending the same items
 * would both compute them. The lock file holds the owner's pid; a lock whose process is gone (a
 * killed run) is taken over. Returns the release function.
 * @example
 * ```ts
 * const release = lockOutput("out/");
 * try { ... } finally { release(); }
 * ```
 */
export function lockOutput(dir: string): () => void {
  const path = join(dir, ".steerkit-eval.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(path, "wx");
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(path, { force: true });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw new EvalError(`${dir}: cannot write to the output directory (${(e as Error).message})`);
      const owner = Number(readFileSync(path, "utf8").trim());
      if (Number.isInteger(owner) && owner > 0 && alive(owner)) {
        const who = owner === process.pid ? "this process" : `pid ${owner}`;
        throw new EvalError(`${dir}: another steerkit eval (${who}) is writing to this output directory; wait for it, or use another "output"`);
      }
      rmSync(path, { force: true }); // a killed run's lock
    }
  }
  throw new EvalError(`${dir}: could not take the output directory's lock (${path})`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}
