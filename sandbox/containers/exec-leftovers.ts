// Exec FIFO directories left by a crispd that died inside ExecSync or a streaming exec. A shim may
// still be waiting to open one of them for writing (which blocks it until a reader comes): each FIFO
// is opened for reading, drained for a moment so the shim's copy finishes or fails, then closed, and
// the directory removed. Runs in the background at start, so it never delays serving.
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { openFifoReader } from '../../common/fifo.js';
import { errorMessage, isENOENT } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import type { Logger } from '../../common/logger.js';

const DRAIN_MS = 2000;

export async function sweepExecLeftovers(execDir: string, log: Logger): Promise<number> {
  let dirs: string[];
  try {
    dirs = await readdir(execDir);
  } catch (err) {
    if (isENOENT(err)) return 0;
    throw err;
  }
  const readers = [];
  for (const d of dirs) {
    for (const f of await readdir(join(execDir, d)).catch(() => [] as string[])) {
      const path = join(execDir, d, f);
      const st = await lstat(path).catch(() => undefined);
      if (!st?.isFIFO()) continue;
      // Reading (and writing) end at once: the open never blocks, and a waiting shim gets its writer open.
      readers.push(await openFifoReader(path, 0).catch(() => undefined));
    }
  }
  if (readers.length > 0) await sleep(DRAIN_MS);
  for (const r of readers) r?.close();
  for (const d of dirs) {
    await rm(join(execDir, d), { recursive: true, force: true }).catch((err: unknown) => log.warn({ dir: d, err: errorMessage(err) }, 'removing a leftover exec directory failed'));
  }
  if (dirs.length > 0) log.info({ dirs: dirs.length, fifos: readers.length }, 'exec directories left by an interrupted crispd removed');
  return dirs.length;
}
