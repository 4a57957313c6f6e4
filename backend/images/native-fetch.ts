// A blob download through native/crisp-fetch (libcurl), one process per download, started through
// crisp-spawner so crispd never forks for it. The process does what blob-fetch-worker.ts does on a worker
// thread at a little over half the CPU (bench/README.md, "Where the time goes: PullImage"): GET, redirects,
// TLS settings of the registry's own origin, the body written into the ingest's data file from `offset`,
// SHA-256 of the whole blob. The request, Authorization included, goes over its stdin, never its argv;
// its answer is one line on stdout. Progress is the file's size, polled: crisp-fetch writes what
// arrived at least every 200 ms. An abort is a SIGTERM (the process writes what arrived and answers).
import { stat } from 'node:fs/promises';
import { runCommand, type RunResult } from '../../native/spawner.js';
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

/** crisp-fetch's stdin: NUL-terminated key=value items (native/crisp-fetch.c). */
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

/** Run crisp-fetch at `binary` for `job`; resolves (never rejects) once the process has ended: nothing writes the file afterwards. */
export async function runNativeFetch(binary: string, job: FetchJob, signal: AbortSignal | undefined, onBytes: (n: number) => void): Promise<NativeRun> {
  let input: Buffer;
  try {
    input = fetchInput(job);
  } catch (err) {
    // A request crisp-fetch cannot be given: the main thread's client gets it (and says what is wrong).
    return { end: { type: 'fallback', message: (err as Error).message, at: job.offset }, received: 0 };
  }
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
    stat(job.file).then(
      (st) => {
        if (!over) count(Math.min(st.size, job.size) - job.offset);
      },
      () => undefined, // the next poll, or the answer, counts the bytes
    ).finally(() => (polling = false));
  }, POLL_MS);
  let r: RunResult;
  try {
    r = await runCommand(binary, [], { input, killAfterMs: ABORT_GRACE_MS, ...(signal ? { signal } : {}) });
  } finally {
    over = true;
    clearInterval(poll);
  }
  if (r.startError && !/crisp-spawner failed/.test(r.startError.message)) return { received: 0, startError: r.startError };
  const end = r.exitCode === 0 ? parseFetchOutput(r.stdout) : undefined;
  if (end) {
    count(end.type === 'done' ? job.size - job.offset : end.at - job.offset);
    return { end, received: reported };
  }
  // No answer (killed, crashed, the spawner died): what the file holds is what arrived.
  const size = await stat(job.file).then(
    (st) => st.size,
    () => job.offset,
  );
  count(Math.min(size, job.size) - job.offset);
  const how = r.startError ? r.startError.message : r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`;
  const said = r.stderr.trim().split('\n').at(-1) ?? '';
  return { error: new Error(`crisp-fetch: ${how}${said ? `: ${said}` : ''}`), received: reported };
}
