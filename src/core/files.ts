/**
 * Writing files and folders so that a reader never sees them half-written and a failure never loses
 * what was there: the content goes to a temporary name beside the target (unique per write, so two
 * writers of the same file, in one process or two, never share one), is flushed to disk, and is then
 * renamed into place, which is atomic on one filesystem.
 */
import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { SourceError, TunekitError } from "./errors.js";

/** What a file is filled with: its text or bytes, or a function that writes them to the open handle. */
export type FileContent = string | Uint8Array | ((handle: FileHandle) => Promise<void>);

/** A name beside `path` that no other write uses: `.name.<random>.tmp`. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
}

/**
 * Writes `content` to `path` atomically (temporary file, fsync, rename), creating the folder. A failure
 * of the filesystem is a `SourceError` (`write_failed`) naming the file; an error thrown by a content
 * function passes through as it is. Either way the temporary file is removed and `path` keeps what it held.
 */
export async function writeFileAtomically(path: string, content: FileContent): Promise<void> {
  const temporary = temporaryPath(path);
  let handle: FileHandle | undefined;
  try {
    await mkdir(dirname(path), { recursive: true });
    handle = await open(temporary, "wx");
    if (typeof content === "function") await content(handle);
    else await handle.writeFile(content);
    await handle.sync();
    await handle.close();
    handle = undefined;
    await rename(temporary, path);
  } catch (error) {
    await handle?.close().catch(() => undefined);
    await rm(temporary, { force: true }).catch(() => undefined);
    throw writeError(error, path);
  }
}

/** `value` as indented JSON with a final newline, written atomically. */
export function writeJsonAtomically(path: string, value: unknown): Promise<void> {
  return writeFileAtomically(path, `${JSON.stringify(value, null, 2)}\n`);
}

/**
 * Fills a temporary folder beside `path` through `fill`, then puts it in place of `path`. An older
 * folder there is first moved aside and removed only once the new one is in place, so a failure at
 * any point leaves either the old folder or the new one. With `replace: false` an existing `path` is
 * an error (`exists`) and nothing is written.
 */
export async function writeFolderAtomically(
  path: string,
  fill: (temporary: string) => Promise<void>,
  options: { replace?: boolean } = {},
): Promise<void> {
  const temporary = temporaryPath(path);
  try {
    await mkdir(temporary, { recursive: true });
    await fill(temporary);
    const aside = temporaryPath(path);
    let moved = false;
    try {
      await rename(path, aside);
      moved = true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    }
    if (moved && options.replace === false) {
      await rename(aside, path);
      throw new SourceError("exists", "the folder exists; give a new one", { location: { file: path } });
    }
    try {
      await rename(temporary, path);
    } catch (error) {
      if (moved) await rename(aside, path).catch(() => undefined);
      throw error;
    }
    if (moved) await rm(aside, { recursive: true, force: true });
  } catch (error) {
    await rm(temporary, { recursive: true, force: true }).catch(() => undefined);
    throw writeError(error, path);
  }
}

function writeError(error: unknown, path: string): unknown {
  // Only the filesystem's own errors (ENOSPC, EACCES, …) are wrapped; anything else passes through.
  // (Checked by shape: errors from Node's internals may come from another realm than this code's.)
  if (TunekitError.isInstance(error) || typeof error !== "object" || error === null || !("syscall" in error))
    return error;
  return new SourceError(
    "write_failed",
    `cannot write: ${String((error as { message?: unknown }).message)}`,
    {
      location: { file: path },
      cause: error,
    },
  );
}
