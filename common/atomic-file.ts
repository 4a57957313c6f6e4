// Write-then-rename, so a reader (or a daemon restarting after a crash) sees the old file or the new
// one, never half of one.
import { open, rename, rm } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';

/**
 * `durable: false` skips the fsyncs: the file survives a crash of the process (the page cache is the
 * kernel's), not a power cut — enough for state that a power cut makes moot anyway.
 */
export async function writeFileAtomic(path: string, data: string, mode = 0o600, opts: { durable?: boolean } = {}): Promise<void> {
  const durable = opts.durable ?? true;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(data);
    if (durable) await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw naming(path, err);
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  if (!durable) return;
  // Persist the rename itself; without this a power cut can leave the directory entry unwritten.
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/**
 * A write error says which file (Node's ENOSPC from a write names none); the errno code and the
 * cause stay, so callers still tell a full disk from other failures.
 */
function naming(path: string, err: unknown): unknown {
  if (!(err instanceof Error)) return err;
  const e = new Error(`writing ${path}: ${err.message}`, { cause: err });
  return Object.assign(e, { code: (err as NodeJS.ErrnoException).code });
}

/** Temp files this module creates; listers skip them. */
export function isAtomicTempFile(name: string): boolean {
  return name.startsWith('.') && name.includes('.tmp-');
}
