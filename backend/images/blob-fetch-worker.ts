// Blob downloads on their own thread (a worker of blob-fetcher.ts's pool), one job at a time: GET the
// prepared request, follow redirects, and write the body into the ingest's data file from `offset`. The
// HTTP parsing, the body buffers' garbage and the file writes then cost this thread, not crispd's main one.
//
// It decides nothing about errors it does not understand: before the first byte is written, any answer
// other than the blob itself (401, 403, 404, a 5xx, a refused connection) is reported as `fallback`, and
// the main thread redoes the request on its own path, which knows the auth challenges, the mirrors and the
// error classes. After that, a break is `broken` (the bytes written so far stay for the resume), too many
// bytes is `overlong` (the caller discards the ingest). The Authorization header is never put in a message.
//
// From the parent: {type:'job', job} starts a download (only when none runs); {type:'abort'} stops the
// running one (what arrived is written, then `aborted`). To the parent, per job: {type:'bytes', n} (bytes
// received since the last one), then exactly one of {type:'done'} or
// {type:'fallback'|'broken'|'overlong'|'aborted'|'io', message, at}; nothing of that job comes after it.
import { parentPort } from 'node:worker_threads';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import https from 'node:https';
import { closeSync, openSync, readFileSync, readSync, writevSync } from 'node:fs';
import { createHash, type Hash } from 'node:crypto';
import { rootCertificates } from 'node:tls';
import type { FetchEnd, FetchJob, FetchMessage } from './blob-fetcher.js';

const BATCH = 1024 * 1024;
/** Progress goes up at least this often while bytes arrive, and at least every BATCH bytes. */
const REPORT_MS = 200;

const port = parentPort!;

/** The running job: its abort, called on the parent's request. */
let abortCurrent: (() => void) | undefined;

port.on('message', (m: { type: 'job'; job: FetchJob } | { type: 'abort' }) => {
  if (m.type === 'abort') abortCurrent?.();
  else run(m.job);
});

function run(job: FetchJob): void {
  let finished = false;
  let current: ClientRequest | undefined;
  let aborted = false;
  abortCurrent = () => {
    aborted = true;
    // The body handler writes what arrived and reports; before the body there is nothing to keep.
    current?.destroy(new Error('aborted'));
  };
  const finish = (msg: FetchEnd): void => {
    if (finished) return;
    finished = true;
    abortCurrent = undefined;
    current?.destroy();
    port.postMessage(msg);
  };

  function agentOptions(url: URL, sameOrigin: boolean): https.AgentOptions {
    const o: https.AgentOptions = { keepAlive: false };
    if (url.protocol !== 'https:' || !sameOrigin) return o;
    const tls = job.request.tls;
    if (tls.skipVerify) o.rejectUnauthorized = false;
    // Node replaces the default roots when `ca` is set; keep them, as the main-thread transport does.
    if (tls.caFiles.length > 0) o.ca = [...rootCertificates, ...tls.caFiles.map((f) => readFileSync(f, 'utf8'))];
    if (tls.clientCertificates.length > 0) {
      o.cert = tls.clientCertificates.map((c) => readFileSync(c.cert, 'utf8'));
      o.key = tls.clientCertificates.map((c) => readFileSync(c.key || c.cert, 'utf8'));
    }
    return o;
  }

  /** Send one request; resolves with the response, or undefined when it failed before one came. */
  function send(url: URL, sameOrigin: boolean): Promise<IncomingMessage | undefined> {
    const { request } = job;
    if (aborted) {
      finish({ type: 'aborted', message: 'aborted', at: job.offset });
      return Promise.resolve(undefined);
    }
    const headers = { ...request.headers, ...(sameOrigin && request.authorization ? { authorization: request.authorization } : {}) };
    const mod = url.protocol === 'https:' ? https : http;
    return new Promise((resolve) => {
      let settled = false;
      const done = (res: IncomingMessage | undefined, why?: string) => {
        if (settled) return;
        settled = true;
        clearTimeout(responseTimer);
        if (!res) finish({ type: aborted ? 'aborted' : 'fallback', message: why ?? 'no answer', at: job.offset });
        resolve(res);
      };
      const req = mod.request(url, { method: 'GET', headers, agent: new mod.Agent(agentOptions(url, sameOrigin)) });
      current = req;
      const responseTimer = setTimeout(() => {
        req.destroy();
        done(undefined, `no response within ${request.timeouts.responseMs} ms`);
      }, request.timeouts.responseMs);
      req.on('socket', (socket) => {
        if (!socket.connecting) return;
        const t = setTimeout(() => req.destroy(new Error(`connect timed out after ${request.timeouts.connectMs} ms`)), request.timeouts.connectMs);
        socket.once(url.protocol === 'https:' ? 'secureConnect' : 'connect', () => clearTimeout(t));
        socket.once('close', () => clearTimeout(t));
      });
      req.setTimeout(request.timeouts.idleMs, () => req.destroy(new Error(`connection idle for ${request.timeouts.idleMs} ms`)));
      req.on('error', (err) => done(undefined, err.message));
      req.on('response', (res) => done(res));
      req.end();
    });
  }

  async function main(): Promise<void> {
    const { request, offset, size } = job;
    const first = new URL(request.url);
    let url = first;
    let res = await send(url, true);
    for (let hops = 0; res && res.statusCode! >= 300 && res.statusCode! < 400 && res.statusCode !== 304; hops++) {
      const location = res.headers.location;
      res.destroy();
      if (!location || hops >= request.maxRedirects) return finish({ type: 'fallback', message: `redirect ${res.statusCode}`, at: offset });
      url = new URL(location, url);
      res = await send(url, url.origin === first.origin);
    }
    if (!res) return;
    const status = res.statusCode ?? 0;
    let rangeOk = status === 200 && offset === 0;
    if (status === 206) rangeOk = Number(/^bytes (\d+)-/.exec(String(res.headers['content-range'] ?? ''))?.[1] ?? NaN) === offset;
    if (!rangeOk) {
      res.destroy();
      return finish({ type: 'fallback', message: `answer ${status}`, at: offset });
    }
    body(res, offset, size);
  }

  /** Write the body at `at`, in batches, checked against the blob's size. */
  function body(res: IncomingMessage, at: number, size: number): void {
    let fd: number;
    try {
      fd = openSync(job.file, 'r+');
    } catch (err) {
      res.destroy();
      return finish({ type: 'io', message: (err as Error).message, at });
    }
    // The blob's SHA-256 on the way (bytes a resumed download already has are read back first): the
    // content store then commits a verified file without containerd reading it again.
    const hash = createHash('sha256');
    try {
      hashPrefix(fd, at, hash);
    } catch (err) {
      res.destroy();
      closeSync(fd);
      return finish({ type: 'io', message: (err as Error).message, at });
    }
    let batch: Buffer[] = [];
    let batchBytes = 0;
    let unreported = 0;
    // The first bytes are reported at once (a stall right after them still shows progress), then at most every REPORT_MS.
    let lastReport = 0;
    const flush = () => {
      let written = 0;
      while (written < batchBytes) {
        const n = writevSync(fd, written === 0 ? batch : [Buffer.concat(batch).subarray(written)], at + written);
        if (n <= 0) throw new Error(`short write to ${job.file}`);
        written += n;
      }
      at += batchBytes;
      batch = [];
      batchBytes = 0;
    };
    const report = () => {
      if (unreported === 0) return;
      port.postMessage({ type: 'bytes', n: unreported } satisfies FetchMessage);
      unreported = 0;
      lastReport = Date.now();
    };
    const end = (msg: FetchEnd) => {
      if (finished) return;
      try {
        // Keep every byte that arrived (a broken download resumes after them), unless they are bad.
        if (msg.type !== 'overlong' && batchBytes > 0) flush();
      } catch (err) {
        if (msg.type === 'done') msg = { type: 'io', message: (err as Error).message, at };
      }
      report();
      try {
        closeSync(fd);
      } catch {
        // Nothing was lost: every write above was synchronous and checked.
      }
      finish(msg.type === 'done' ? msg : { ...msg, at });
    };
    res.on('data', (chunk: Buffer) => {
      if (finished) return;
      if (at + batchBytes + chunk.length > size) {
        res.destroy();
        return end({ type: 'overlong', message: `more data than the expected ${size} bytes`, at });
      }
      batch.push(chunk);
      hash.update(chunk);
      batchBytes += chunk.length;
      unreported += chunk.length;
      if (batchBytes >= BATCH) {
        try {
          flush();
        } catch (err) {
          res.destroy();
          return end({ type: 'io', message: (err as Error).message, at });
        }
      }
      if (unreported >= BATCH || Date.now() - lastReport >= REPORT_MS) report();
    });
    res.on('end', () => {
      if (at + batchBytes < size) end({ type: 'broken', message: `download ended at byte ${at + batchBytes} of ${size}`, at });
      else end({ type: 'done', digest: `sha256:${hash.digest('hex')}` });
    });
    const broke = (err?: Error) => end({ type: aborted ? 'aborted' : 'broken', message: err?.message ?? 'connection closed', at });
    res.on('error', broke);
    res.on('close', () => broke());
    current?.on('error', broke);
  }

  main().catch((err: unknown) => finish({ type: 'broken', message: err instanceof Error ? err.message : String(err), at: job.offset }));
}

/** Feed the first `length` bytes of the file into `hash` (one reused buffer). */
function hashPrefix(fd: number, length: number, hash: Hash): void {
  const buf = Buffer.allocUnsafe(BATCH);
  for (let at = 0; at < length; ) {
    const n = readSync(fd, buf, 0, Math.min(BATCH, length - at), at);
    if (n <= 0) throw new Error(`the ingest file ends at byte ${at}, before the ${length} bytes the download resumes after`);
    hash.update(buf.subarray(0, n));
    at += n;
  }
}

