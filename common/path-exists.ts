// Whether a path exists: false only for ENOENT; any other error (EACCES, EIO, ...) is the caller's.
import { lstat, stat } from 'node:fs/promises';
import { isENOENT } from './errors.js';

/** `link`: whether a symlink at `path` itself counts (lstat) rather than what it points to (stat). */
export async function pathExists(path: string, opts: { link?: boolean } = {}): Promise<boolean> {
  try {
    await (opts.link ? lstat(path) : stat(path));
    return true;
  } catch (err) {
    if (isENOENT(err)) return false;
    throw err;
  }
}
