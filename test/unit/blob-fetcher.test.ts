// Blob downloads off the main thread (backend/images/blob-fetcher.ts), through native/crisp-fetch
// (native-fetch.ts) and through worker threads (blob-fetch-worker.ts), the same cases for both, against a
// local HTTP server: the body lands in the file at the offset; a range answer resumes; an answer that is
// not the blob is left to the main thread (fallback, nothing written); too many bytes is a content
// mismatch; a broken body, an abort, a killed crisp-fetch and a worker that dies keep the bytes written
// so far; the Authorization header never follows a redirect to another origin; the blob's SHA-256 comes
// back; TLS settings (CA files, client certificates, skip-verify) apply to the registry's origin only;
// workers are reused and end with the pool; a crisp-fetch that cannot start hands over to the workers.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import https from 'node:https';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobFetcher, type FetchJob, type FetchPool } from '../../backend/images/blob-fetcher.js';
import { fetchInput, parseFetchOutput } from '../../backend/images/native-fetch.js';
import { defaultHelperPath } from '../../native/helper-paths.js';
import { selfSignedEc, serverCertificates } from '../e2e/fixtures/certs.js';
import { ContentMismatchError } from '../../backend/registry/verify.js';
import { DEFAULT_TIMEOUTS } from '../../backend/registry/transport.js';
import { isCrispError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';

const BLOB = randomBytes(3 * 1024 * 1024 + 123);
const DIGEST = `sha256:${'ab'.repeat(32)}`;
const REAL_DIGEST = `sha256:${createHash('sha256').update(BLOB).digest('hex')}`;
const NATIVE = defaultHelperPath('crisp-fetch');
const nativeBuilt = existsSync(NATIVE);
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
function job(host: string, path: string, offset = 0, authorization?: string, scheme = 'http'): FetchJob {
  const f = join(dir, `data-${file++}`);
  writeFileSync(f, BLOB.subarray(0, offset));
  return {
    request: {
      url: `${scheme}://${host}${path}`,
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

/**
 * Runs `use` on a pool of `size` workers and closes the pool afterwards, also when `use` fails; returns the
 * pool. The processes the pool leaves idle in `fetcher` are ended too, so every test starts without any.
 */
async function withPool(fetcher: BlobFetcher, size: number, use: (pool: FetchPool) => Promise<void>): Promise<FetchPool> {
  const pool = fetcher.pool(size);
  try {
    await use(pool);
  } finally {
    await pool.close();
    await fetcher.close();
  }
  return pool;
}

/** The crisp-fetch processes this test process runs. */
function nativePids(): number[] {
  const exe = realpathSync(NATIVE);
  const pids: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (readlinkSync(`/proc/${name}/exe`) !== exe) continue;
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${name}/status`, 'utf8'))?.[1]);
      if (ppid === process.pid) pids.push(Number(name));
    } catch {
      // gone while we looked: not one to kill
    }
  }
  return pids;
}

describe('BlobFetcher', () => {
  const main = server();
  const other = server();
  let host: string;
  let otherHost: string;

  before(async () => {
    otherHost = await other.listen();
    host = await main.listen();
  });
  after(async () => {
    await main.close();
    await other.close();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const mode of ['native', 'worker'] as const) {
    const skip = mode === 'native' && !nativeBuilt ? 'crisp-fetch not built (make -C native)' : false;
    const fetcher = mode === 'native' ? new BlobFetcher() : new BlobFetcher({ native: false });
    // Each test ends the processes its pools left idle in the shared fetcher.
    const t = (name: string, fn: () => Promise<void>) =>
      test(`${mode}: ${name}`, { skip }, async () => {
        try {
          await fn();
        } finally {
          await fetcher.close();
        }
      });

    t('the body lands in the file; the bytes are counted; jobs reuse the pool', async () => {
      const used = await withPool(fetcher, 2, async (pool) => {
        assert.equal(pool.usesNative, mode === 'native');
        for (let i = 0; i < 3; i++) {
          const j = job(host, '/blob');
          let counted = 0;
          assert.equal(await pool.fetch(j, undefined, (n) => (counted += n)), true);
          assert.equal(counted, BLOB.length);
          assert.ok(readFileSync(j.file).equals(BLOB));
        }
        assert.equal(pool.workers, mode === 'worker' ? 1 : 0, 'sequential jobs reuse one worker');
        assert.equal(pool.nativeProcesses, mode === 'native' ? 1 : 0, 'or one crisp-fetch process');
      });
      assert.equal(used.workers, 0);
      assert.equal(used.nativeProcesses, 0);
    });

    t('the SHA-256 of the whole blob: verified when it is the digest, also after a resume', async () => {
      await withPool(fetcher, 1, async (pool) => {
        assert.equal(await pool.fetch({ ...job(host, '/blob'), digest: REAL_DIGEST }, undefined, () => undefined), 'verified');
        assert.equal(await pool.fetch({ ...job(host, '/blob', 777_777), digest: REAL_DIGEST }, undefined, () => undefined), 'verified');
      });
    });

    t('resume: a Range request from the offset, written after the bytes already there', async () => {
      await withPool(fetcher, 1, async (pool) => {
        const j = job(host, '/blob', 1000);
        let counted = 0;
        assert.equal(await pool.fetch(j, undefined, (n) => (counted += n)), true);
        assert.equal(counted, BLOB.length - 1000);
        assert.equal(main.seen.at(-1)?.range, 'bytes=1000-');
        assert.ok(readFileSync(j.file).equals(BLOB));
      });
    });

    t('an answer that is not the blob (404, a range the server ignored, no server) is left to the caller: false, nothing written', async () => {
      await withPool(fetcher, 1, async (pool) => {
        const j = job(host, '/missing');
        assert.equal(await pool.fetch(j, undefined, () => undefined), false);
        assert.equal(statSync(j.file).size, 0);
        const ignored = job(host, '/long', 1000);
        assert.equal(await pool.fetch(ignored, undefined, () => undefined), false);
        assert.equal(statSync(ignored.file).size, 1000);
        const dead = job('127.0.0.1:1', '/blob');
        assert.equal(await pool.fetch(dead, undefined, () => undefined), false);
      });
    });

    t('more bytes than the blob holds: ContentMismatchError', async () => {
      await withPool(fetcher, 1, async (pool) => {
        await assert.rejects(pool.fetch(job(host, '/long'), undefined, () => undefined), (err: unknown) => err instanceof ContentMismatchError && /more data than the expected/.test(err.message));
      });
    });

    t('a body that breaks off: UNAVAILABLE, the bytes that arrived are in the file for the resume', async () => {
      await withPool(fetcher, 1, async (pool) => {
        const j = job(host, '/cut');
        await assert.rejects(pool.fetch(j, undefined, () => undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /broke off/.test(err.message));
        const kept = readFileSync(j.file);
        assert.equal(kept.length, 1024 * 1024);
        assert.ok(kept.equals(BLOB.subarray(0, kept.length)));
      });
    });

    t('abort stops the download, keeps what arrived and rejects with the reason; the pool goes on', async () => {
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
        assert.equal(pool.workers, mode === 'worker' ? 1 : 0);
        assert.equal(pool.nativeProcesses, mode === 'native' ? 1 : 0, 'an aborted crisp-fetch answers and is replaced');
      });
    });

    t('a redirect to another origin drops the Authorization header; same origin keeps it; too many redirects fall back', async () => {
      const redirecting = server((req, res) => {
        if (req.url === '/away') res.writeHead(307, { location: `http://${otherHost}/blob` }).end();
        else if (req.url === '/here') res.writeHead(307, { location: '/blob' }).end();
        else if (req.url === '/loop') res.writeHead(302, { location: '/loop' }).end();
        else return false;
        return true;
      });
      const rhost = await redirecting.listen();
      const pool = fetcher.pool(1);
      try {
        assert.equal(await pool.fetch(job(rhost, '/away', 0, 'Bearer secret'), undefined, () => undefined), true);
        assert.equal(redirecting.seen.at(-1)?.authorization, 'Bearer secret', 'the registry itself gets it');
        assert.equal(other.seen.at(-1)?.authorization, undefined);
        assert.equal(await pool.fetch(job(rhost, '/here', 0, 'Bearer secret'), undefined, () => undefined), true);
        assert.equal(redirecting.seen.at(-1)?.authorization, 'Bearer secret');
        const before = redirecting.seen.length;
        assert.equal(await pool.fetch(job(rhost, '/loop'), undefined, () => undefined), false);
        assert.equal(redirecting.seen.length - before, 4, 'the request and maxRedirects (3) redirects');
      } finally {
        await pool.close();
        await redirecting.close();
      }
    });

    t("TLS: the registry's CA files (on top of the system roots), client certificates, skip-verify; another origin gets none of them", async () => {
      const certs = serverCertificates(dir);
      const client = selfSignedEc(dir, `client-${mode}`, 'crisp test client');
      let clientSeen: string | undefined;
      const tls = https.createServer({ key: readFileSync(certs.keyFile), cert: readFileSync(certs.certFile), ca: readFileSync(client.certFile), requestCert: true, rejectUnauthorized: false }, (req, res) => {
        const peer = (req.socket as import('node:tls').TLSSocket).getPeerCertificate();
        clientSeen = peer?.subject?.CN === undefined ? undefined : String(peer.subject.CN);
        if (req.url === '/away') res.writeHead(307, { location: `https://localhost:${(tls.address() as AddressInfo).port}/blob` }).end();
        else res.writeHead(200, { 'content-length': BLOB.length }).end(BLOB);
      });
      await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
      const thost = `127.0.0.1:${(tls.address() as AddressInfo).port}`;
      const withTls = (j: FetchJob, settings: Partial<FetchJob['request']['tls']>): FetchJob => ({ ...j, request: { ...j.request, tls: { ...j.request.tls, ...settings } } });
      const pool = fetcher.pool(1);
      try {
        assert.equal(await pool.fetch(job(thost, '/blob', 0, undefined, 'https'), undefined, () => undefined), false, 'an unknown CA: left to the caller');
        clientSeen = undefined;
        assert.equal(await pool.fetch(withTls(job(thost, '/blob', 0, undefined, 'https'), { caFiles: [certs.caFile] }), undefined, () => undefined), true);
        assert.equal(clientSeen, undefined, 'no client certificate configured, none sent');
        const j = withTls(job(thost, '/blob', 0, undefined, 'https'), { caFiles: [certs.caFile], clientCertificates: [{ cert: client.certFile, key: client.keyFile }] });
        assert.equal(await pool.fetch(j, undefined, () => undefined), true);
        assert.equal(clientSeen, 'crisp test client');
        assert.equal(await pool.fetch(withTls(job(thost, '/blob', 0, undefined, 'https'), { skipVerify: true }), undefined, () => undefined), true);
        // Same server, another origin (localhost instead of 127.0.0.1): the registry's CA does not apply there.
        assert.equal(await pool.fetch(withTls(job(thost, '/away', 0, undefined, 'https'), { caFiles: [certs.caFile] }), undefined, () => undefined), false);
      } finally {
        await pool.close();
        tls.closeAllConnections();
        await new Promise<void>((resolve) => tls.close(() => resolve()));
      }
    });
  }

  test('native: concurrent jobs get a crisp-fetch each, at most the pool size; they idle for the next pool, then end', { skip: nativeBuilt ? false : 'crisp-fetch not built' }, async () => {
    const fetcher = new BlobFetcher();
    const pool = fetcher.pool(2);
    let most = 0;
    try {
      const jobs = Array.from({ length: 5 }, () => job(host, '/blob'));
      const results = await Promise.all(jobs.map((j) => pool.fetch(j, undefined, () => (most = Math.max(most, nativePids().length)))));
      assert.deepEqual(results, [true, true, true, true, true]);
      for (const j of jobs) assert.ok(readFileSync(j.file).equals(BLOB));
      assert.equal(pool.nativeProcesses, 2);
      assert.ok(most <= 2, `at most 2 crisp-fetch at once (saw ${most})`);
    } finally {
      await pool.close();
    }
    const kept = nativePids();
    assert.equal(kept.length, 2, 'the closed pool left its 2 processes idle');
    assert.equal(fetcher.idleProcesses, 2);
    // The next pull's pool takes them instead of starting others.
    await withPool(fetcher, 2, async (next) => {
      const jobs = Array.from({ length: 2 }, () => job(host, '/blob'));
      assert.deepEqual(await Promise.all(jobs.map((j) => next.fetch(j, undefined, () => undefined))), [true, true]);
      assert.equal(fetcher.idleProcesses, 0, 'taken');
      assert.deepEqual(nativePids().sort(), kept.sort(), 'the same processes did the jobs');
    });
    assert.deepEqual(nativePids(), [], "the fetcher's close ends the idle processes");
  });

  test('native: an idle crisp-fetch ends after its idle time; at most 4 idle at once', { skip: nativeBuilt ? false : 'crisp-fetch not built' }, async () => {
    const fetcher = new BlobFetcher({ processIdleMs: 300 });
    try {
      await Promise.all(
        Array.from({ length: 2 }, () => {
          const pool = fetcher.pool(3);
          return Promise.all(Array.from({ length: 3 }, () => pool.fetch(job(host, '/blob'), undefined, () => undefined))).finally(() => pool.close());
        }),
      );
      assert.equal(fetcher.idleProcesses, 4, 'two pools of 3 left 4 of their 6 processes idle');
      assert.equal(nativePids().length, 4);
      for (let i = 0; i < 50 && nativePids().length > 0; i++) await sleep(50);
      assert.deepEqual(nativePids(), [], 'ended once idle for 300 ms');
      assert.equal(fetcher.idleProcesses, 0);
    } finally {
      await fetcher.close();
    }
  });

  test('native: a crisp-fetch killed mid-download: UNAVAILABLE, its bytes kept; the resume completes the blob', { skip: nativeBuilt ? false : 'crisp-fetch not built' }, async () => {
    await withPool(new BlobFetcher(), 1, async (pool) => {
      const j = job(host, '/slow');
      let counted = 0;
      let killed = false;
      const p = pool.fetch(j, undefined, (n) => {
        counted += n;
        if (killed) return;
        killed = true;
        const pids = nativePids();
        assert.equal(pids.length, 1, 'one crisp-fetch runs');
        process.kill(pids[0]!, 'SIGKILL');
      });
      await assert.rejects(p, (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /killed by SIGKILL/.test(err.message));
      const kept = statSync(j.file).size;
      assert.equal(kept, 256 * 1024);
      assert.equal(counted, kept);
      const resumed = { ...job(host, '/blob', kept), file: j.file, digest: REAL_DIGEST };
      assert.equal(await pool.fetch(resumed, undefined, () => undefined), 'verified', 'a new process takes the next job');
      assert.equal(main.seen.at(-1)?.range, `bytes=${kept}-`);
      assert.ok(readFileSync(j.file).equals(BLOB));
    });
  });

  test('native: a request that cannot be put on its stdin (a NUL byte) is left to the caller', { skip: nativeBuilt ? false : 'crisp-fetch not built' }, async () => {
    await withPool(new BlobFetcher(), 1, async (pool) => {
      const j = job(host, '/blob');
      j.request.headers = { 'x-odd': 'a\0b' };
      assert.equal(await pool.fetch(j, undefined, () => undefined), false);
      assert.equal(statSync(j.file).size, 0);
    });
  });

  test('native: a crisp-fetch that cannot start hands the pool over to the workers', async () => {
    const missing = join(dir, 'no-such-crisp-fetch');
    const pretend = new BlobFetcher({ native: missing });
    assert.equal(pretend.native, undefined, 'a missing binary is not used');
    writeFileSync(missing, '#!/nonexistent/interpreter\n', { mode: 0o755 });
    const broken = new BlobFetcher({ native: missing });
    assert.equal(broken.native, missing);
    await withPool(broken, 1, async (pool) => {
      const j = job(host, '/blob');
      assert.equal(await pool.fetch(j, undefined, () => undefined), true);
      assert.ok(readFileSync(j.file).equals(BLOB));
      assert.equal(pool.usesNative, false);
      assert.equal(pool.workers, 1);
    });
  });

  test("crisp-fetch's input holds the request (Authorization only there, never in argv); its answer line parses", () => {
    const j = job('r.example:5000', '/v2/a/blobs/x', 10, 'Bearer t0ken');
    j.request.tls = { caFiles: ['/ca.pem'], clientCertificates: [{ cert: '/c.pem', key: '' }], skipVerify: true };
    const items = fetchInput(j).toString().split('\0');
    assert.equal(items.pop(), '', 'every item ends with NUL');
    assert.deepEqual(items, [
      'url=http://r.example:5000/v2/a/blobs/x',
      'header=range: bytes=10-',
      'authorization=Bearer t0ken',
      'ca=/ca.pem',
      'cert=/c.pem',
      'key=',
      'insecure=1',
      `connect-ms=${DEFAULT_TIMEOUTS.connectMs}`,
      `response-ms=${DEFAULT_TIMEOUTS.responseMs}`,
      `idle-ms=${DEFAULT_TIMEOUTS.idleMs}`,
      'max-redirects=3',
      `file=${j.file}`,
      'offset=10',
      `size=${BLOB.length}`,
    ]);
    assert.throws(() => fetchInput({ ...j, file: 'a\0b' }), /NUL/);
    assert.deepEqual(parseFetchOutput(`done 5 ${REAL_DIGEST}\n`), { type: 'done', digest: REAL_DIGEST });
    assert.deepEqual(parseFetchOutput('broken 1048576 Recv failure: Connection reset by peer\n'), { type: 'broken', at: 1048576, message: 'Recv failure: Connection reset by peer' });
    assert.equal(parseFetchOutput(''), undefined);
    assert.equal(parseFetchOutput('done 5 md5:abc\n'), undefined);
    assert.equal(parseFetchOutput('exploded 5 x\n'), undefined);
  });

  test('worker: a worker that cannot start leaves the job to the caller', async () => {
    await withPool(new BlobFetcher({ native: false, worker: new URL('../lib/no-such-worker.js', import.meta.url) }), 1, async (broken) => {
      assert.equal(await broken.fetch(job(host, '/blob'), undefined, () => undefined), false);
    });
  });

  test('worker: a worker that dies mid-download: UNAVAILABLE naming it, its bytes kept; the next job gets a new worker', async () => {
    await withPool(new BlobFetcher({ native: false, worker: new URL('../lib/dying-fetch-worker.js', import.meta.url) }), 1, async (dying) => {
      const j = job(host, '/blob', 100);
      await assert.rejects(dying.fetch(j, undefined, () => undefined), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /download worker ended/.test(err.message));
      assert.equal(statSync(j.file).size, 100 + Math.floor((BLOB.length - 100) / 2));
      await assert.rejects(dying.fetch(job(host, '/blob'), undefined, () => undefined), /download worker ended/);
    });
  });
});
