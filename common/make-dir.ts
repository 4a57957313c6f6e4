// mkdir -p that reports the real reason: Node's recursive mkdir answers ENOENT when the parent exists
// but cannot be written (a read-only filesystem), which sends an operator looking for a missing dir.
import { mkdir } from 'node:fs/promises';
import { isENOENT } from './errors.js';

export async function makeDir(path: string, mode: number): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode });
  } catch (err) {
    if (!isENOENT(err)) throw err;
    // Once more without recursion: where the parent exists, this fails with the real errno (EROFS…).
    await mkdir(path, { mode });
  }
}
