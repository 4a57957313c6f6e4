// Blob downloads on worker threads: one worker per download, started for it and ended after it (no pool
// kept between pulls, so an idle crispd holds no extra threads or heap). The worker (blob-fetch-worker.ts)
// writes the body into the ingest's data file; the main thread only prepares the request (auth), counts the
// progress and turns the worker's end into a result. Digest and size are still containerd's to verify at
// commit (content-store.ts).
import { Worker } from 'node:worker_threads';
import type { PreparedBlobRequest } from '../registry/client.js';
import { ContentMismatchError } from '../registry/verify.js';
import { CrispError, unavailable } from '../../common/errors.js';

/** What a worker is given. */
export interface FetchJob {
  request: PreparedBlobRequest;
  /** The ingest's data file, written from `offset` on. */
  file: string;
  offset: number;
  size: number;
  digest: string;
}

/** How a worker's download ended (`at`: the bytes the file holds). */
export type FetchEnd = { type: 'done' } | { type: 'fallback' | 'broken' | 'overlong' | 'aborted' | 'io'; message: string; at: number };
export type FetchMessage = { type: 'bytes'; n: number } | FetchEnd;

/** How long a worker may take to stop after an abort before it is terminated. */
const ABORT_GRACE_MS = 2000;

export class BlobFetcher {
  /** `script`: the worker's module (tests pass a stand-in). */
  constructor(private readonly script: URL = new URL('./blob-fetch-worker.js', import.meta.url)) {}

  /**
   * Download the rest of a blob into `job.file`. Resolves true when the file holds the whole blob, false
   * when nothing was written and the caller should use its own path (the worker met an answer it leaves to
   * the main thread's client). Returns or throws only after the worker has ended, so nothing writes to
   * the file afterwards. A broken or dead worker is UNAVAILABLE with the bytes it wrote kept (the next
   * attempt resumes); too many bytes is a ContentMismatchError.
   */
  fetch(job: FetchJob, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<boolean> {
    const what = `${job.request.endpoint}: blob ${job.digest}`;
    if (signal?.aborted) return Promise.reject(cancelled(signal, what));
    return new Promise<boolean>((resolve, reject) => {
      const worker = new Worker(this.script, { workerData: job });
      let last: FetchEnd | undefined;
      let received = 0;
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        worker.postMessage({ type: 'abort' });
        killTimer = setTimeout(() => void worker.terminate(), ABORT_GRACE_MS);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      let crash: Error | undefined;
      worker.on('message', (m: FetchMessage) => {
        if (m.type === 'bytes') {
          received += m.n;
          onBytes(m.n);
        } else last = m;
      });
      worker.on('error', (err) => (crash = err));
      worker.once('exit', () => {
        clearTimeout(killTimer);
        signal?.removeEventListener('abort', onAbort);
        if (last?.type === 'done') return resolve(true);
        if (last?.type === 'fallback' && received === 0 && !signal?.aborted) return resolve(false);
        if (signal?.aborted) return reject(cancelled(signal, what));
        if (!last) {
          const at = job.offset + received;
          return reject(unavailable(`${what}: download worker ended at byte ${at} of ${job.size}${crash ? `: ${crash.message}` : ''}`, crash));
        }
        switch (last.type) {
          case 'overlong':
            return reject(new ContentMismatchError(job.digest, `${what}: ${last.message}`));
          case 'io':
            return reject(new Error(`${what}: writing ${job.file}: ${last.message}`));
          default:
            return reject(unavailable(`${what}: download broke off at byte ${last.at} of ${job.size}: ${last.message}`));
        }
      });
    });
  }
}

function cancelled(signal: AbortSignal, what: string): Error {
  return signal.reason instanceof Error ? signal.reason : new CrispError('CANCELLED', `${what}: download cancelled`);
}
