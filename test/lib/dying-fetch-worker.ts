// A stand-in for blob-fetch-worker.ts that dies mid-download: it writes the first half of what the job
// asks for into the file, reports those bytes, and ends its thread without an answer, as a crash would.
import { parentPort } from 'node:worker_threads';
import { closeSync, openSync, writeSync } from 'node:fs';
import type { FetchJob } from '../../backend/images/blob-fetcher.js';

parentPort!.on('message', (m: { type: string; job?: FetchJob }) => {
  if (m.type !== 'job' || !m.job) return;
  const half = Math.floor((m.job.size - m.job.offset) / 2);
  const fd = openSync(m.job.file, 'r+');
  writeSync(fd, Buffer.alloc(half, 7), 0, half, m.job.offset);
  closeSync(fd);
  parentPort!.postMessage({ type: 'bytes', n: half });
  process.exit(3);
});
