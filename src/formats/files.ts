/**
 * Opening the files a user names (models, SAE files, directions, recipes) so that a special file
 * fails at once with a clear reason instead of hanging or misleading.
 *
 * Why this exists: `openSync(path, "r")` on a FIFO blocks until some other process opens it for
 * writing (a FIFO named `x.gguf` hung `steerkit generate` forever); a device reads forever or not at
 * all; a symbolic-link loop surfaced as "no such file". Here every file is opened non-blocking
 * (`O_NONBLOCK` only matters for FIFOs and devices) and `fstat`ed through the descriptor we hold, so
 * the check and the read see the same file; anything but a regular file is refused by its kind.
 *
 * Each reader keeps its own error class: the helpers take a `fail(reason)` that throws it.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, statSync, type Stats } from "node:fs";

export type Fail = (reason: string) => never;

/** What a non-regular file is, in words; null for a regular file. */
function kindProblem(s: Stats, expected: string): string | null {
  if (s.isFile()) return null;
  if (s.isDirectory()) return `is a directory, expected ${expected}`;
  if (s.isFIFO()) return `is a FIFO (named pipe), not ${expected}`;
  if (s.isCharacterDevice()) return `is a character device, not ${expected}`;
  if (s.isBlockDevice()) return `is a block device, not ${expected}`;
  if (s.isSocket()) return `is a socket, not ${expected}`;
  return `is not a regular file, expected ${expected}`;
}

/** An errno from opening or stat-ing `path`, in words (a dangling link is told apart from a missing file). */
export function describeOpenError(path: string, e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  switch (code) {
    case "ENOENT": {
      let dangling = false;
      try {
        dangling = lstatSync(path).isSymbolicLink();
      } catch {
        // the path itself is missing
      }
      return dangling ? "is a symbolic link to a file that does not exist" : "no such file or directory";
    }
    case "ELOOP":
      return "is a symbolic link loop (too many levels of symbolic links)";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "ENOTDIR":
      return "a component of the path is not a directory";
    case "ENAMETOOLONG":
      return "the path is too long";
    default:
      return `cannot open (${code ?? (e as Error)?.message ?? String(e)})`;
  }
}

/**
 * Open `path` for reading, refusing anything but a regular file. Returns the descriptor (the caller
 * closes it) and the size. `expected` names what was wanted ("a .gguf file").
 */
export function openRegularFile(path: string, fail: Fail, expected = "a regular file"): { fd: number; size: number } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code === "EISDIR") return fail(`is a directory, expected ${expected}`);
    return fail(describeOpenError(path, e));
  }
  let s: Stats;
  try {
    s = fstatSync(fd);
  } catch (e) {
    closeSync(fd);
    return fail(describeOpenError(path, e));
  }
  const problem = kindProblem(s, expected);
  if (problem !== null) {
    closeSync(fd);
    return fail(problem);
  }
  return { fd, size: s.size };
}

/** The whole of a regular file, refused when larger than `maxBytes`. */
export function readRegularFile(path: string, fail: Fail, options: { expected?: string; maxBytes?: number } = {}): Uint8Array {
  const { fd, size } = openRegularFile(path, fail, options.expected);
  try {
    if (options.maxBytes !== undefined && size > options.maxBytes) {
      fail(`is ${size} bytes, more than the ${options.maxBytes} allowed for ${options.expected ?? "this file"}`);
    }
    const out = new Uint8Array(size);
    let done = 0;
    while (done < size) {
      const n = readSync(fd, out, done, size - done, done);
      if (n === 0) break;
      done += n;
    }
    return done === size ? out : out.subarray(0, done);
  } finally {
    closeSync(fd);
  }
}

/** A regular file as UTF-8 text. */
export function readRegularText(path: string, fail: Fail, options: { expected?: string; maxBytes?: number } = {}): string {
  return new TextDecoder().decode(readRegularFile(path, fail, options));
}

/**
 * What `path` is, following links: a regular file or a directory; anything else (FIFO, device,
 * socket, link loop, missing) fails with its reason.
 */
export function pathKind(path: string, fail: Fail, expected = "a file or a directory"): "file" | "directory" {
  let s: Stats;
  try {
    s = statSync(path);
  } catch (e) {
    return fail(describeOpenError(path, e));
  }
  if (s.isDirectory()) return "directory";
  const problem = kindProblem(s, expected);
  if (problem !== null) return fail(problem);
  return "file";
}

/** Fail unless `path` is a directory (links followed). */
export function checkDirectory(path: string, fail: Fail, expected = "a directory"): void {
  if (pathKind(path, fail, expected) !== "directory") fail(`is a file, expected ${expected}`);
}

/** Whether `path` exists as anything at all, without following a final link (a loop "exists"). */
export function pathExists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
