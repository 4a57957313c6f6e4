// Layer downloads through native/crisp-fetch against a real crispd and a real registry with Basic auth:
// the download runs in a crisp-fetch process, a child of crispd (not on a worker thread); a
// layer the registry redirects to another origin (as registries do to a CDN) is fetched there without
// the Authorization header; a crisp-fetch killed mid-download fails the pull, keeps its bytes, and the
// next pull resumes with a Range request and commits a blob crisp verified; a registry over TLS, trusted
// through hosts.toml's `ca`, is downloaded from by crisp-fetch (each layer fetched once, no failed
// handshake, so no fallback to the main thread's client), by the processes the previous pull left
// idle (they take another registry's TLS settings per request); a kill -9 of crispd takes its
// downloads with it (no crisp-fetch writes into the ingest behind a restarted crispd's back).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { TestCrispd, childrenNamed, isAlive, uniqueId } from './lib/crispd.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { buildImage, type TestImage } from './fixtures/images.js';
import { serverCertificates } from './fixtures/certs.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { defaultHelperPath } from '../../native/helper-paths.js';
import { existsSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const USERS = { puller: 'pull-secret' };

async function waitUntil(what: string, probe: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(20);
  }
}

interface Seen {
  path: string;
  authorization?: string;
  range?: string;
}

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

describe('crisp-fetch downloads layers for crispd', { skip: existsSync(defaultHelperPath('crisp-fetch')) ? false : 'crisp-fetch not built (make -C native)' }, () => {
  const d = new TestCrispd();
  let registry: TestRegistry;
  let tlsImage: TestImage;
  let image: TestImage;
  let second: TestImage;
  const repo = `e2e/native-fetch-${uniqueId()}`;
  const sockets = new Set<Socket>();

  // The other origin (a "CDN"): serves the layers by digest, honours Range, and holds the first request
  // for `stallDigest` after STALL_AT bytes until the connection goes.
  const STALL_AT = 1024 * 1024;
  let stallDigest = '';
  let stalled = false;
  const cdnSeen: Seen[] = [];
  const cdn = http.createServer((req: IncomingMessage, res: ServerResponse) => {
    const digest = (req.url ?? '').replace(/^\/cdn\//, '');
    cdnSeen.push({ path: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}), ...(req.headers.range ? { range: req.headers.range } : {}) });
    const blob = [image, second].flatMap((i) => i.blobs).find((b) => b.digest === digest)?.data;
    if (!blob) return void res.writeHead(404).end();
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    if (start > 0) res.writeHead(206, { 'content-range': `bytes ${start}-${blob.length - 1}/${blob.length}`, 'content-length': blob.length - start });
    else res.writeHead(200, { 'content-length': blob.length });
    if (digest === stallDigest && !stalled) {
      stalled = true;
      res.write(blob.subarray(start, start + STALL_AT));
      return;
    }
    res.end(blob.subarray(start));
  });
  cdn.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  let cdnHost = '';

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const [host, port] = registry.host.split(':') as [string, string];
    const up = http.request({ host, port: Number(port), method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  // The registry behind TLS (a certificate from a throwaway CA that hosts.toml names): counts the blob
  // GETs and the handshakes that failed.
  const tlsSeen: string[] = [];
  let tlsErrors = 0;
  let tlsFront: https.Server;
  let tlsHost = '';

  // The registry's front: forwards everything, but answers layer GETs with a redirect to the CDN.
  const frontSeen: Seen[] = [];
  const front = http.createServer((req, res) => {
    const m = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/.exec(req.url ?? '');
    const layer = m && [image, second].some((i) => i.manifest.layers.some((l) => l.digest === m[1]));
    if (layer && req.method === 'GET') {
      frontSeen.push({ path: req.url ?? '', ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}) });
      if (!req.headers.authorization) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="e2e"' }).end();
      return void res.writeHead(307, { location: `http://${cdnHost}/cdn/${m[1]}` }).end();
    }
    forward(req, res);
  });
  let frontHost = '';

  before(async () => {
    registry = await startRegistry({ auth: { kind: 'basic', users: USERS } });
    cdnHost = await listen(cdn);
    frontHost = await listen(front);
    const build = () =>
      buildImage(
        [0, 1].map((i) => [
          { type: 'dir' as const, path: `data${i}` },
          { type: 'file' as const, path: `data${i}/blob.bin`, data: randomBytes(4 * 1024 * 1024) },
        ]),
      );
    image = build();
    second = build();
    await registry.push(image, repo, 'v1');
    await registry.push(second, repo, 'v2');
    tlsImage = build();
    await registry.push(tlsImage, repo, 'v3');
    const certs = serverCertificates(d.dir);
    tlsFront = https.createServer({ key: readFileSync(certs.keyFile), cert: readFileSync(certs.certFile) }, (req, res) => {
      if (req.method === 'GET' && /\/blobs\//.test(req.url ?? '')) tlsSeen.push(req.url ?? '');
      forward(req, res);
    });
    tlsFront.on('tlsClientError', () => tlsErrors++);
    tlsFront.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    tlsHost = await listen(tlsFront);
    const certsD = join(d.dir, 'certs.d');
    mkdirSync(join(certsD, tlsHost), { recursive: true });
    writeFileSync(join(certsD, tlsHost, 'hosts.toml'), `server = "https://${tlsHost}"\nca = "${certs.caFile}"\n`);
    d.writeConfig({ image_config_path: certsD });
    stallDigest = image.manifest.layers[1]!.digest;
    await d.start();
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await d.cleanup();
    await new Promise<void>((resolve) => cdn.close(() => resolve()));
    await new Promise<void>((resolve) => front.close(() => resolve()));
    await new Promise<void>((resolve) => (tlsFront ? tlsFront.close(() => resolve()) : resolve()));
    await registry?.stop();
  });

  const pull = (ref: string) =>
    d.client.image.unary('PullImage', { image: { image: ref }, auth: { username: 'puller', password: USERS.puller } }).then((r) => r.imageRef);

  test('a crisp-fetch process of crispd downloads; a redirect to another origin gets no Authorization; a killed download resumes', async () => {
    const ref = `${frontHost}/${repo}:v1`;
    const pulling = pull(ref);
    pulling.catch(() => undefined);

    // The stalled layer's download is a crisp-fetch process, a child of crispd, with the layer's ingest data
    // file open; once what arrived is in it (it writes at least every 200 ms), it is killed.
    await waitUntil('the stalled layer is being served', () => stalled);
    const crispd = d.child!.pid!;
    /** The size of the ingest data file `pid` has open, if any. */
    const dataFileSize = (pid: number) => {
      try {
        for (const fd of readdirSync(`/proc/${pid}/fd`)) if (/\/ingest\/.+\/data$/.test(readlinkSync(`/proc/${pid}/fd/${fd}`))) return statSync(`/proc/${pid}/fd/${fd}`).size;
      } catch {
        // gone, or between files: not the one
      }
      return undefined;
    };
    let stalledFetch = 0;
    await waitUntil('the stalled download, in a crisp-fetch of crispd, has written what arrived', () => {
      stalledFetch = childrenNamed(crispd, 'crisp-fetch').find((pid) => dataFileSize(pid) === STALL_AT) ?? 0;
      return stalledFetch > 0;
    });
    const fetches = [stalledFetch];
    process.kill(fetches[0]!, 'SIGKILL');
    await waitUntil('the killed crisp-fetch is gone', () => !isAlive(fetches[0]!));
    await assert.rejects(pulling, (err: unknown) => {
      assert.ok(isGrpcError(err, grpc.status.UNAVAILABLE), `UNAVAILABLE, got ${String(err)}`);
      assert.match(err.details, /killed by SIGKILL/);
      return true;
    });

    assert.equal(await pull(ref), image.manifest.config.digest, 'the next pull completes');
    const hits = cdnSeen.filter((s) => s.path === `/cdn/${stallDigest}`);
    assert.equal(hits.length, 2, 'the killed request and the resumed one');
    assert.equal(hits[0]!.range, undefined);
    assert.equal(hits[1]!.range, `bytes=${STALL_AT}-`, 'the resume starts after the bytes the killed download wrote');
    assert.match(d.logs, /blob download resumed/);
    assert.match(d.logs, new RegExp(`"digest":"${stallDigest}","size":\\d+,"verifiedBy":"crisp","msg":"blob committed"`));

    // Authorization went to the registry's origin, never to the CDN.
    assert.ok(frontSeen.some((s) => s.authorization?.startsWith('Basic ')), 'the registry got the credentials');
    assert.ok(cdnSeen.length >= 3);
    assert.deepEqual(cdnSeen.filter((s) => s.authorization), [], 'the other origin never got them');
  });

  test("TLS: a registry trusted through hosts.toml's ca is downloaded from by crisp-fetch, by the processes the last pull left", async () => {
    const ref = `${tlsHost}/${repo}:v3`;
    // The previous test's last pull ended moments ago: its crisp-fetch processes wait for the next pull.
    const crispd = d.child!.pid!;
    const kept = childrenNamed(crispd, 'crisp-fetch');
    assert.ok(kept.length > 0, 'crisp-fetch processes idle after a pull');
    assert.equal(await pull(ref), tlsImage.manifest.config.digest);
    const now = childrenNamed(crispd, 'crisp-fetch');
    assert.deepEqual(kept.filter((pid) => !now.includes(pid)), [], 'the kept processes did this pull (none was ended and replaced)');
    // Taken before any is started: at most image_max_concurrent_downloads (3) run for a pull.
    const started = now.filter((pid) => !kept.includes(pid));
    assert.ok(started.length <= Math.max(0, 3 - kept.length), `${started.length} started beside ${kept.length} kept`);
    for (const layer of tlsImage.manifest.layers) {
      assert.equal(tlsSeen.filter((p) => p.endsWith(layer.digest)).length, 1, `layer ${layer.digest} fetched once`);
    }
    assert.equal(tlsErrors, 0, 'no handshake failed (a crisp-fetch without the CA would fail one, then the main thread would fetch)');
  });

  test('a kill -9 of crispd ends the crisp-fetch processes of its pulls', async () => {
    stallDigest = second.manifest.layers[0]!.digest;
    stalled = false;
    const pulling = pull(`${frontHost}/${repo}:v2`);
    pulling.catch(() => undefined);
    await waitUntil('the stalled layer is being served', () => stalled);
    const crispd = d.child!.pid!;
    let fetches: number[] = [];
    await waitUntil('a crisp-fetch runs', () => (fetches = childrenNamed(crispd, 'crisp-fetch')).length > 0);
    await d.kill9();
    await waitUntil('its crisp-fetch processes are gone', () => fetches.every((pid) => !isAlive(pid)));
  });
});
