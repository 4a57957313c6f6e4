// Blob downloads on worker threads (backend/images/blob-fetcher.ts + blob-fetch-worker.ts) against a
// local HTTP server: the body lands in the file at the offset; a range answer resumes; an answer that is
// not the blob is left to the main thread (fallback, nothing written); too many bytes is a content
// mismatch; a broken body, an abort and a worker that dies keep the bytes written so far; the
// Authorization header never follows a redirect to another origin; workers are reused and end with the pool.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobFetcher, type FetchJob, type FetchPool } from '../../backend/images/blob-fetcher.js';
import { ContentMismatchError } from '../../backend/registry/verify.js';
import { DEFAULT_TIMEOUTS } from '../../backend/registry/transport.js';
import { isCrispError } from '../../common/errors.js';

const BLOB = randomBytes(3 * 1024 * 1024 + 123);
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const dir = mkdtempSync(join(tmpdir(), 'crisp-blob-fetcher-'));

interface Seen {
  path: string;
  range?: string;
  authorization?: string;
}

/** Serves /blob (ranges honoured), /long (too many bytes), /cut (half, then the connection drops), /slow, /missing (404), /redirect (to `other`). */
function server(handle?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean) {
  const seen: Seen[] = [];
  const s = http.createServer((req, res) => {
    seen.push({ path: req.url ?? '', ...(req.headers.range ? { range: req.headers.range } : {}), ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
    if (handle?.(req, res)) return;
    const url = req.url ?? '';
    if (url.startsWith('/blob')) {
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      if (start > 0) res.writeHead(206, { 'content-range': `bytes ${start}-${BLOB.length - 1}/${BLOB.length}`, 'content-length': BLOB.length - start });
      else res.writeHead(200, { 'content-length': BLOB.length });
      res.end(BLOB.subarray(start));
    } else if (url === '/long') {
      res.writeHead(200);
      res.end(Buffer.concat([BLOB, Buffer.from('extra')]));
    } else if (url === '/cut') {
      res.writeHead(200, { 'content-length': BLOB.length });
      res.write(BLOB.subarray(0, 1024 * 1024), () => setTimeout(() => res.destroy(), 100));
    } else if (url === '/slow') {
      res.writeHead(200, { 'content-length': BLOB.length });
      res.write(BLOB.subarray(0, 256 * 1024));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return {
    seen,
    listen: () => new Promise<string>((resolve) => s.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(s.address() as AddressInfo).port}`))),
    close: () => {
      s.closeAllConnections();
      return new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}

let file = 0;
function job(host: string, path: string, offset = 0, authorization?: string): FetchJob {
  const f = join(dir, `data-${file++}`);
  writeFileSync(f, BLOB.subarray(0, offset));
  return {
    request: {
      url: `http://${host}${path}`,
      headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
      ...(authorization ? { authorization } : {}),
      tls: { caFiles: [], clientCertificates: [], skipVerify: false },
      timeouts: DEFAULT_TIMEOUTS,
      maxRedirects: 3,
      endpoint: host,
    },
    file: f,
    offset,
    size: BLOB.length,
    digest: DIGEST,
  };
}

/** Runs `use` on a pool of `size` workers and closes the pool afterwards, also when `use` fails; returns the pool. */
async function withPool(fetcher: BlobFetcher, size: number, use: (pool: FetchPool) => Promise<void>): Promise<FetchPool> {
  const pool = fetcher.pool(size);
  try {
    await use(pool);
  } finally {
    await pool.close();
  }
  return pool;
}

describe('BlobFetcher', () => {
  const main = server();
  const other = server();
  let host: string;
  let otherHost: string;
  const fetcher = new BlobFetcher();

  before(async () => {
    otherHost = await other.listen();
    host = await main.listen();
  });
  after(async () => {
    await main.close();
    await other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the body lands in the file; the bytes are counted; one worker serves several jobs', async () => {
    const used = await withPool(fetcher, 2, async (pool) => {
      for (let i = 0; i < 3; i++) {
        const j = job(host, '/blob');
        let counted = 0;
        assert.equal(await pool.fetch(j, undefined, (n) => (counted += n)), true);
        assert.equal(counted, BLOB.length);
        assert.ok(readFileSync(j.file).equals(BLOB));
      }
      assert.equal(pool.workers, 1, 'sequential jobs reuse one worker');
    });
    assert.equal(used.workers, 0);
  });

  test('resume: a Range request from the offset, written after the bytes already there', async () => {
    await withPool(fetcher, 1, async (pool) => {
      const j = job(host, '/blob', 1000);
      let counted = 0;
      assert.equal(await pool.fetch(j, undefined, (n) => (counted += n)), true);
      assert.equal(counted, BLOB.length - 1000);
      assert.equal(main.seen.at(-1)?.range, 'bytes=1000-');
      assert.ok(readFileSync(j.file).equals(BLOB));
    });
  });

  test('an answer that is not the blob (404, no server) is left to the caller: false, nothing written', async () => {
    await withPool(fetcher, 1, async (pool) => {
      const j = job(host, '/missing');
      assert.equal(await pool.fetch(j, undefined, () => undefined), false);
      assert.equal(statSync(j.file).size, 0);
      const dead = job('127.0.0.1:1', '/blob');
      assert.equal(await pool.fetch(dead, undefined, () => undefined), false);
    });
  });

  test('more bytes than the blob holds: ContentMismatchError', async () => {
    await withPool(fetcher, 1, async (pool) => {
      await assert.rejects(pool.fetch(job(host, '/long'), undefined, () => undefined), (err: unknown) => err instanceof ContentMismatchError && /more data than the expected/.test(err.message));
    });
  });

  test('a body that breaks off: UNAVAILABLE, the bytes that arrived are in the file for the resume', async () => {
    await withPool(fetcher, 1, async (pool) => {
      const j = job(host, '/cut');
      await assert.rejects(pool.fetch(j, undefined, () => undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /broke off/.test(err.message));
      const kept = readFileSync(j.file);
      assert.equal(kept.length, 1024 * 1024);
      assert.ok(kept.equals(BLOB.subarray(0, kept.length)));
    });
  });

  test('abort stops the download, keeps what arrived and rejects with the reason; the worker is reused', async () => {
    await withPool(fetcher, 1, async (pool) => {
      const j = job(host, '/slow');
      const abort = new AbortController();
      let counted = 0;
      const p = pool.fetch(j, abort.signal, (n) => {
        counted += n;
        abort.abort(new Error('pull cancelled'));
      });
      await assert.rejects(p, /pull cancelled/);
      assert.ok(counted > 0);
      assert.ok(readFileSync(j.file).equals(BLOB.subarray(0, counted)), 'the received bytes are in the file');
      assert.equal(await pool.fetch(job(host, '/blob'), undefined, () => undefined), true);
      assert.equal(pool.workers, 1);
    });
  });

  test('a redirect to another origin drops the Authorization header; same origin keeps it', async () => {
    const redirecting = server((req, res) => {
      if (req.url === '/away') res.writeHead(307, { location: `http://${otherHost}/blob` }).end();
      else if (req.url === '/here') res.writeHead(307, { location: '/blob' }).end();
      else return false;
      return true;
    });
    const rhost = await redirecting.listen();
    const pool = fetcher.pool(1);
    try {
      assert.equal(await pool.fetch(job(rhost, '/away', 0, 'Bearer secret'), undefined, () => undefined), true);
      assert.equal(other.seen.at(-1)?.authorization, undefined);
      assert.equal(await pool.fetch(job(rhost, '/here', 0, 'Bearer secret'), undefined, () => undefined), true);
      assert.equal(redirecting.seen.at(-1)?.authorization, 'Bearer secret');
    } finally {
      await pool.close();
      await redirecting.close();
    }
  });

  test('a worker that cannot start leaves the job to the caller', async () => {
    await withPool(new BlobFetcher(new URL('../lib/no-such-worker.js', import.meta.url)), 1, async (broken) => {
      assert.equal(await broken.fetch(job(host, '/blob'), undefined, () => undefined), false);
    });
  });

  test('a worker that dies mid-download: UNAVAILABLE naming it, its bytes kept; the next job gets a new worker', async () => {
    await withPool(new BlobFetcher(new URL('../lib/dying-fetch-worker.js', import.meta.url)), 1, async (dying) => {
      const j = job(host, '/blob', 100);
      await assert.rejects(dying.fetch(j, undefined, () => undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /download worker ended/.test(err.message));
      assert.equal(statSync(j.file).size, 100 + Math.floor((BLOB.length - 100) / 2));
      await assert.rejects(dying.fetch(job(host, '/blob'), undefined, () => undefined), /download worker ended/);
    });
  });
});
