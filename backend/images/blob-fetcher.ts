// Blob downloads off crispd's main thread. A pull opens a pool (BlobFetcher.pool) of at most its download
// concurrency. Downloads run in native/crisp-fetch processes (libcurl, native-fetch.ts) when it is built
// or installed; without it, on worker threads (blob-fetch-worker.ts, node's HTTP client, ~1.8x the CPU).
// Either is started on first use and reused for the pull's later layers (starting a worker costs tens of
// milliseconds of CPU, hundreds on a loaded machine; a crisp-fetch ~20 ms). Workers end with the pull;
// crisp-fetch processes idle up to 10 s for the next pull (kubelet pulls one image after another), so an
// idle crispd holds no extra threads, processes or heap. Either writes the body into the ingest's data file and hashes it;
// the main thread only prepares the request (auth), counts the progress and turns the answer into a result.
// The content store commits a blob whose hash matched without containerd reading it again, and leaves any
// other to containerd's own check (content-store.ts).
import { Worker } from 'node:worker_threads';
import { defaultHelperPath, isExecutableFile } from '../../native/helper-paths.js';
import { FetchProcess } from './native-fetch.js';
import { ReusablePool } from './reusable-pool.js';
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

/** How a worker's job ended (`at`: the bytes the file holds). */
export type FetchEnd = { type: 'done'; digest?: string } | { type: 'fallback' | 'broken' | 'overlong' | 'aborted' | 'io'; message: string; at: number };
/**
 * How a fill ended: false when nothing was written (the caller's own path should do it), true when the
 * file is filled, 'verified' when it is filled and its SHA-256 is the blob's digest.
 */
export type FillResult = boolean | 'verified';
export type FetchMessage = { type: 'bytes'; n: number } | FetchEnd;

/** How long a worker may take to stop after an abort before it is terminated. */
const ABORT_GRACE_MS = 2000;
/**
 * crisp-fetch processes kept between pulls, and for how long: kubelet pulls one image after another by
 * default, and starting them again (a spawn from crispd and libcurl's libraries) was ~1/20 of a pull's CPU.
 */
const MAX_IDLE_PROCESSES = 4;
const PROCESS_IDLE_MS = 10_000;

export interface BlobFetcherOptions {
  /** The worker's module (tests pass a stand-in). */
  worker?: URL;
  /** crisp-fetch's path; false: worker threads only. Default: the build's or the package's, if it is there. */
  native?: string | false;
  /** How long a crisp-fetch process idles after a pull for the next one before it ends. */
  processIdleMs?: number;
}

export class BlobFetcher {
  private readonly script: URL;
  /** The crisp-fetch binary downloads run with; undefined: worker threads. */
  readonly native: string | undefined;
  /** crisp-fetch processes a closed pool left for the next one, each with its idle timer; newest last. */
  private readonly idle: { proc: FetchProcess; timer: NodeJS.Timeout }[] = [];
  private readonly processIdleMs: number;

  constructor(opts: BlobFetcherOptions = {}) {
    this.processIdleMs = opts.processIdleMs ?? PROCESS_IDLE_MS;
    this.script = opts.worker ?? new URL('./blob-fetch-worker.js', import.meta.url);
    const native = opts.native ?? defaultHelperPath('crisp-fetch');
    this.native = native !== false && isExecutableFile(native) ? native : undefined;
  }

  /** A pool of at most `size` concurrent downloads for one pull; close() it when the pull ends. */
  pool(size: number): FetchPool {
    return new FetchPool(this.script, Math.max(1, size), this.native, {
      take: () => this.takeIdle(),
      keep: (proc) => this.keepIdle(proc),
    });
  }

  /** crisp-fetch processes idling between pulls, for tests. */
  get idleProcesses(): number {
    return this.idle.length;
  }

  /** Ends the processes idling between pulls. */
  async close(): Promise<void> {
    const idle = this.idle.splice(0);
    for (const { timer } of idle) clearTimeout(timer);
    await Promise.all(idle.map(({ proc }) => proc.end()));
  }

  private takeIdle(): FetchProcess | undefined {
    for (let entry = this.idle.pop(); entry; entry = this.idle.pop()) {
      clearTimeout(entry.timer);
      if (entry.proc.alive) {
        entry.proc.setRef(true);
        return entry.proc;
      }
      void entry.proc.end();
    }
    return undefined;
  }

  private keepIdle(proc: FetchProcess): boolean {
    if (!proc.alive || this.idle.length >= MAX_IDLE_PROCESSES) return false;
    // An idle process must not keep crispd (or a test) running; EOF on its stdin ends it with crispd.
    proc.setRef(false);
    const entry = {
      proc,
      timer: setTimeout(() => {
        const i = this.idle.indexOf(entry);
        if (i >= 0) this.idle.splice(i, 1);
        void proc.end();
      }, this.processIdleMs).unref(),
    };
    this.idle.push(entry);
    return true;
  }
}

/** Where a pool takes crisp-fetch processes from before starting one, and leaves them when it closes. */
interface IdleProcesses {
  take(): FetchProcess | undefined;
  keep(proc: FetchProcess): boolean;
}

export class FetchPool {
  private readonly workerPool: ReusablePool<Worker>;
  private readonly processPool: ReusablePool<FetchProcess>;
  /** Jobs in flight, settled once their worker is done with the file. */
  private readonly running = new Set<Promise<unknown>>();

  constructor(
    script: URL,
    size: number,
    /** crisp-fetch; dropped (workers take over) when it cannot be started. */
    private native: string | undefined,
    idle?: IdleProcesses,
  ) {
    this.processPool = new ReusablePool<FetchProcess>(size, {
      start: () => idle?.take() ?? new FetchProcess(native!),
      alive: (p) => p.alive,
      end: (p) => p.end(),
      ...(idle ? { keep: (p: FetchProcess) => idle.keep(p) } : {}),
    });
    this.workerPool = new ReusablePool<Worker>(size, {
      start: (gone) => {
        const w = new Worker(script);
        // A worker's own error ends it; the job in flight learns of it from 'exit'.
        w.on('error', () => undefined);
        w.once('exit', gone);
        return w;
      },
      // An ended worker has left the pool already (its 'exit').
      alive: () => true,
      end: (w) => w.terminate(),
    });
  }

  /** Workers running (busy or idle), for tests. */
  get workers(): number {
    return this.workerPool.count;
  }

  /** crisp-fetch processes running (busy or idle), for tests. */
  get nativeProcesses(): number {
    return this.processPool.count;
  }

  /** Whether downloads run crisp-fetch (false: worker threads), for tests. */
  get usesNative(): boolean {
    return this.native !== undefined;
  }

  /**
   * Download the rest of a blob into `job.file`. Resolves true when the file holds the whole blob, false
   * when nothing was written and the caller should use its own path (the worker met an answer it leaves to
   * the main thread's client, or it ended before a byte arrived). Settles only once the worker is done with the file (it answered, or it
   * ended), so nothing writes to the file afterwards. A broken download or a dead worker is UNAVAILABLE
   * with the bytes written so far kept (the next attempt resumes); too many bytes is a
   * ContentMismatchError.
   */
  async fetch(job: FetchJob, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<FillResult> {
    const what = `${job.request.endpoint}: blob ${job.digest}`;
    const onCancel = () => cancelled(signal!, what);
    if (this.native) {
      const proc = await this.processPool.acquire(signal, onCancel, what);
      let reusable = false;
      try {
        const r = await this.track(proc.run(job, signal, onBytes));
        reusable = !r.startError && proc.alive;
        if (!r.startError) return settle(r, job, signal, what);
        // It could not start (removed, not executable): nothing ran; the workers do this pool's downloads.
        this.native = undefined;
      } finally {
        this.processPool.release(proc, reusable);
      }
    }
    const worker = await this.workerPool.acquire(signal, onCancel, what);
    let reusable = false;
    try {
      const end = await this.track(this.run(worker, job, signal, onBytes));
      reusable = end.reusable;
      return settle(end, job, signal, what);
    } finally {
      this.workerPool.release(worker, reusable);
    }
  }

  /**
   * End every worker, once the jobs in flight have ended: a failed pull aborts its downloads, and a worker
   * is given the time to write what arrived (the next pull resumes after it) before it is terminated.
   */
  async close(): Promise<void> {
    // Waiters wake and throw at once; the jobs in flight end before their members are ended.
    const inFlight = Promise.all(this.running);
    await Promise.all([this.processPool.close(inFlight), this.workerPool.close(inFlight)]);
  }

  /** A job in flight, until it settles (close() waits for it). */
  private track<R>(running: Promise<R>): Promise<R> {
    this.running.add(running);
    void running.finally(() => this.running.delete(running));
    return running;
  }

  /** One job on `worker`: its answer, or undefined when the worker ended without one. */
  private run(worker: Worker, job: FetchJob, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<{ end?: FetchEnd; error?: Error; received: number; reusable: boolean }> {
    return new Promise((resolve) => {
      let received = 0;
      let error: Error | undefined;
      let killTimer: NodeJS.Timeout | undefined;
      const onAbort = () => {
        worker.postMessage({ type: 'abort' });
        killTimer = setTimeout(() => void worker.terminate(), ABORT_GRACE_MS);
      };
      const onMessage = (m: FetchMessage) => {
        if (m.type === 'bytes') {
          received += m.n;
          onBytes(m.n);
          return;
        }
        done();
        resolve({ end: m, received, reusable: true });
      };
      const onError = (err: Error) => (error = err);
      const onExit = () => {
        done();
        resolve({ ...(error ? { error } : {}), received, reusable: false });
      };
      const done = () => {
        clearTimeout(killTimer);
        signal?.removeEventListener('abort', onAbort);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
      };
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.once('exit', onExit);
      signal?.addEventListener('abort', onAbort, { once: true });
      worker.postMessage({ type: 'job', job });
      if (signal?.aborted) onAbort();
    });
  }
}

function settle(r: { end?: FetchEnd; error?: Error; received: number }, job: FetchJob, signal: AbortSignal | undefined, what: string): FillResult {
  const { end } = r;
  // A digest that does not match is left to the content store's own check, which discards the blob.
  if (end?.type === 'done') return end.digest === job.digest ? 'verified' : true;
  if (signal?.aborted) throw cancelled(signal, what);
  if (end?.type === 'fallback' && r.received === 0) return false;
  // A worker that ended before reporting a byte (it could not start): the main thread's path can still
  // do the job. Bytes it wrote unreported are the blob's own at their own offsets, written over again.
  if (!end && r.received === 0) return false;
  if (!end) {
    const at = job.offset + r.received;
    throw unavailable(`${what}: download worker ended at byte ${at} of ${job.size}${r.error ? `: ${r.error.message}` : ''}`, r.error);
  }
  switch (end.type) {
    case 'overlong':
      throw new ContentMismatchError(job.digest, `${what}: ${end.message}`);
    case 'io':
      throw new Error(`${what}: writing ${job.file}: ${end.message}`);
    default:
      throw unavailable(`${what}: download broke off at byte ${end.at} of ${job.size}: ${end.message}`);
  }
}

function cancelled(signal: AbortSignal, what: string): Error {
  return signal.reason instanceof Error ? signal.reason : new CrispError('CANCELLED', `${what}: download cancelled`);
}
