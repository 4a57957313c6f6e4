// Blob downloads through native/crisp-fetch (libcurl). A pool slot starts one `crisp-fetch --serve`
// process on its first download and gives it the pull's later ones, one at a time (starting it costs
// ~20 ms of CPU, mostly loading libcurl's libraries; a pull of 11 layers with 3 slots starts 3, not 11);
// after the pull it idles for a while (blob-fetcher.ts) for the next pull, then ends. The process does what blob-fetch-worker.ts does on a worker thread at a
// little over half the CPU (bench/README.md, "Where the time goes: PullImage"): GET, redirects, TLS
// settings of the registry's own origin, the body written into the ingest's data file from `offset`,
// SHA-256 of the whole blob. Each request, Authorization included, goes over its stdin (never its argv)
// as a length-prefixed frame; each answer is one line on stdout. Progress is the file's size, polled:
// crisp-fetch writes what arrived at least every 200 ms. An abort is a SIGTERM to the process (it writes
// what arrived and answers) and retires it: it takes no further job, so a signal that arrives late
// cannot abort another; one that does not answer in time is killed. crispd spawns it itself (a streaming
// child, like the embedded containerd): crisp-spawner answers only once a command has ended.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { stat } from 'node:fs/promises';
import type { FetchEnd, FetchJob } from './blob-fetcher.js';

/** How often the file's size is read for progress. */
const POLL_MS = 200;
/** How long the process may take to stop after an abort before it is killed. */
const ABORT_GRACE_MS = 2000;

/** How a native run ended: as a worker's job does (blob-fetcher.ts `settle`), or it could not start. */
export interface NativeRun {
  end?: FetchEnd;
  error?: Error;
  /** Bytes counted through onBytes. */
  received: number;
  /** Set when crisp-fetch could not be started at all (missing, not executable): nothing ran. */
  startError?: Error;
}

/** One request for crisp-fetch: NUL-terminated key=value items (native/crisp-fetch.c); --serve frames it. */
export function fetchInput(job: FetchJob): Buffer {
  const { request } = job;
  const items: string[] = [`url=${request.url}`];
  for (const [name, value] of Object.entries(request.headers)) items.push(`header=${name}: ${value}`);
  if (request.authorization) items.push(`authorization=${request.authorization}`);
  for (const ca of request.tls.caFiles) items.push(`ca=${ca}`);
  for (const c of request.tls.clientCertificates) items.push(`cert=${c.cert}`, `key=${c.key}`);
  if (request.tls.skipVerify) items.push('insecure=1');
  items.push(
    `connect-ms=${request.timeouts.connectMs}`,
    `response-ms=${request.timeouts.responseMs}`,
    `idle-ms=${request.timeouts.idleMs}`,
    `max-redirects=${request.maxRedirects}`,
    `file=${job.file}`,
    `offset=${job.offset}`,
    `size=${job.size}`,
  );
  for (const item of items) if (item.includes('\0')) throw new Error(`blob request for ${job.digest}: a field holds a NUL byte`);
  return Buffer.from(`${items.join('\0')}\0`);
}

const END_TYPES = new Set(['fallback', 'broken', 'overlong', 'aborted', 'io']);

/** crisp-fetch's answer line, or undefined when there is none (it crashed or was killed). */
export function parseFetchOutput(stdout: string): FetchEnd | undefined {
  const m = /^(\w+) (\d+) (.*)\n?$/.exec(stdout);
  if (!m) return undefined;
  const [, type, at, text] = m as unknown as [string, string, string, string];
  if (type === 'done') return /^sha256:[0-9a-f]{64}$/.test(text) ? { type: 'done', digest: text } : undefined;
  if (!END_TYPES.has(type)) return undefined;
  return { type: type as Exclude<FetchEnd['type'], 'done'>, message: text, at: Number(at) };
}

/** One `crisp-fetch --serve` process: one job at a time. */
export class FetchProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private stderr = '';
  /** The running job's wait for its answer line (undefined: the process ended without one). */
  private waiting: ((line: string | undefined) => void) | undefined;
  private ended = false;
  /** Sent a SIGTERM: it takes no further job (a late signal must not abort the next one). */
  private retired = false;
  private readonly spawned: Promise<Error | undefined>;
  private readonly closed: Promise<void>;

  constructor(binary: string) {
    this.child = spawn(binary, ['--serve'], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.setEncoding('utf8');
    this.child.stderr.setEncoding('utf8');
    this.child.stdout.on('data', (text: string) => {
      this.out += text;
      for (let nl = this.out.indexOf('\n'); nl >= 0; nl = this.out.indexOf('\n')) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        const wake = this.waiting;
        this.waiting = undefined;
        wake?.(line);
      }
    });
    this.child.stderr.on('data', (text: string) => (this.stderr = (this.stderr + text).slice(-500)));
    // A write after the process died: its end is reported through 'close'.
    this.child.stdin.on('error', () => undefined);
    this.spawned = new Promise((resolve) => {
      this.child.once('spawn', () => resolve(undefined));
      this.child.once('error', (err) => resolve(err));
    });
    this.closed = new Promise((resolve) => {
      const gone = () => {
        this.ended = true;
        const wake = this.waiting;
        this.waiting = undefined;
        wake?.(undefined);
        resolve();
      };
      this.child.once('close', gone);
      this.child.once('error', gone);
    });
  }

  /** Whether it can take another job. */
  get alive(): boolean {
    return !this.ended && !this.retired;
  }

  /** Run `job`; resolves (never rejects) once the process answered or ended: nothing writes the file afterwards. */
  async run(job: FetchJob, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<NativeRun> {
    let input: Buffer;
    try {
      input = fetchInput(job);
    } catch (err) {
      // A request crisp-fetch cannot be given: the main thread's client gets it (and says what is wrong).
      return { end: { type: 'fallback', message: (err as Error).message, at: job.offset }, received: 0 };
    }
    const startError = await this.spawned;
    if (startError) return { received: 0, startError };
    // Aborted while it started: nothing was sent, the caller reports the abort.
    if (signal?.aborted) return { received: 0 };
    let reported = 0;
    const count = (received: number) => {
      if (received > reported) {
        onBytes(received - reported);
        reported = received;
      }
    };
    let polling = false;
    let over = false;
    const poll = setInterval(() => {
      if (polling) return;
      polling = true;
      stat(job.file)
        .then(
          (st) => {
            if (!over) count(Math.min(st.size, job.size) - job.offset);
          },
          () => undefined, // the next poll, or the answer, counts the bytes
        )
        .finally(() => (polling = false));
    }, POLL_MS);
    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      this.retired = true;
      this.child.kill('SIGTERM');
      killTimer = setTimeout(() => this.child.kill('SIGKILL'), ABORT_GRACE_MS);
    };
    let line: string | undefined;
    try {
      const answered = new Promise<string | undefined>((resolve) => {
        if (this.ended) resolve(undefined);
        else this.waiting = resolve;
      });
      const head = Buffer.alloc(4);
      head.writeUInt32LE(input.length, 0);
      this.child.stdin.write(Buffer.concat([head, input]));
      input.fill(0);
      signal?.addEventListener('abort', onAbort, { once: true });
      if (signal?.aborted) onAbort();
      line = await answered;
    } finally {
      over = true;
      clearInterval(poll);
      clearTimeout(killTimer);
      signal?.removeEventListener('abort', onAbort);
    }
    const end = line === undefined ? undefined : parseFetchOutput(`${line}\n`);
    if (end) {
      count(end.type === 'done' ? job.size - job.offset : end.at - job.offset);
      return { end, received: reported };
    }
    // No answer (killed, crashed) or one that makes no sense: this process is done; what the file holds
    // is what arrived.
    this.kill();
    await this.closed;
    const size = await stat(job.file).then(
      (st) => st.size,
      () => job.offset,
    );
    count(Math.min(size, job.size) - job.offset);
    const { exitCode, signalCode } = this.child;
    const how = line !== undefined ? `unexpected answer "${line.slice(0, 100)}"` : signalCode ? `killed by ${signalCode}` : `exit code ${exitCode}`;
    const said = this.stderr.trim().split('\n').at(-1) ?? '';
    return { error: new Error(`crisp-fetch: ${how}${said ? `: ${said}` : ''}`), received: reported };
  }

  /** Whether the process keeps node's event loop alive: not while it idles between pulls. */
  setRef(ref: boolean): void {
    const handles = [this.child, this.child.stdin, this.child.stdout, this.child.stderr] as unknown as { ref(): void; unref(): void }[];
    for (const h of handles) {
      if (ref) h.ref();
      else h.unref();
    }
  }

  /** End it: EOF on its stdin ends an idle process; resolves once it is gone. */
  async end(): Promise<void> {
    this.child.stdin.end();
    const t = setTimeout(() => this.kill(), ABORT_GRACE_MS);
    await this.closed;
    clearTimeout(t);
  }

  private kill(): void {
    if (!this.ended) this.child.kill('SIGKILL');
  }
}
