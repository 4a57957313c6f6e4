// Registry client edge cases against small in-process fake registries (no docker-registry needed).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { isCrispError } from '../../common/errors.js';
import { RegistryClient, credentialsForEndpoint } from '../../backend/registry/client.js';
import { parseImageReference } from '../../backend/registry/reference.js';
import { defaultServer } from '../../backend/registry/hosts.js';
import { isContentMismatch } from '../../backend/registry/verify.js';
import { MediaType } from '../../backend/registry/oci.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

interface Fake {
  host: string;
  seen: Seen[];
  close(): Promise<void>;
}

const fakes: Fake[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(fakes.map((f) => f.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function fake(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<Fake> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    handler(req, res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const f: Fake = {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  fakes.push(f);
  return f;
}

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const configBytes = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } }));
const manifestBytes = Buffer.from(
  JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: { mediaType: MediaType.ociConfig, digest: sha(configBytes), size: configBytes.length }, layers: [] }),
);
const blob = Buffer.from('0123456789abcdefghijklmnopqrstuvwxyz'.repeat(1000));
const blobDesc = { mediaType: MediaType.ociLayerGzip, digest: sha(blob), size: blob.length };

const plainClient = (extra: ConstructorParameters<typeof RegistryClient>[0] = {}) =>
  new RegistryClient({ hosts: { plainHttpHosts: ['127.0.0.1:*'] }, timeouts: { connectMs: 1000, responseMs: 2000, idleMs: 2000 }, ...extra });

test('HEAD not allowed: resolve falls back to GET; a missing Content-Type is sniffed', async () => {
  const f = await fake((req, res) => {
    if (req.method === 'HEAD') return res.writeHead(405).end();
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(manifestBytes);
  });
  const c = plainClient();
  try {
    const r = await c.resolve(`${f.host}/a/b:t`);
    assert.equal(r.descriptor.digest, sha(manifestBytes));
    assert.equal(r.descriptor.mediaType, MediaType.ociManifest);
    assert.deepEqual(f.seen.map((s) => `${s.method} ${s.url}`), ['HEAD /v2/a/b/manifests/t', 'GET /v2/a/b/manifests/t']);
    assert.match(String(f.seen[0]!.headers.accept), /application\/vnd\.oci\.image\.index\.v1\+json/);
    assert.match(String(f.seen[0]!.headers.accept), /application\/vnd\.docker\.distribution\.manifest\.list\.v2\+json/);
  } finally {
    c.close();
  }
});

test('a manifest whose bytes do not match the advertised digest is rejected', async () => {
  const other = `sha256:${'9'.repeat(64)}`;
  const f = await fake((req, res) => {
    res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': other, 'content-length': manifestBytes.length });
    res.end(req.method === 'HEAD' ? undefined : manifestBytes);
  });
  const c = plainClient();
  try {
    await assert.rejects(c.resolve(`${f.host}/a/b:t`), (err: unknown) => isContentMismatch(err) && /digest mismatch/.test(err.message));
  } finally {
    c.close();
  }
});

test('a mirror answering 500 is skipped; mirror requests carry ?ns=', async () => {
  const mirror = await fake((_req, res) => res.writeHead(500).end());
  const server = await fake((req, res) => {
    res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': sha(manifestBytes), 'content-length': manifestBytes.length });
    res.end(req.method === 'HEAD' ? undefined : manifestBytes);
  });
  const config = mkdtempSync(join(tmpdir(), 'crisp-unit-client-'));
  dirs.push(config);
  mkdirSync(join(config, 'reg.example'));
  writeFileSync(join(config, 'reg.example', 'hosts.toml'), `server = "http://${server.host}"\n[host."http://${mirror.host}"]\n`);
  const c = plainClient({ hosts: { configPath: config } });
  try {
    const r = await c.resolve('reg.example/a/b:t');
    assert.equal(r.endpoint, server.host);
    assert.equal(mirror.seen[0]!.url, '/v2/a/b/manifests/t?ns=reg.example');
    assert.equal(server.seen[0]!.url, '/v2/a/b/manifests/t', 'the server itself gets no ns');
  } finally {
    c.close();
  }
});

test('redirected blob downloads do not carry the registry credentials', async () => {
  const cdn = await fake((_req, res) => res.writeHead(200, { 'content-length': blob.length }).end(blob));
  const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
  const reg = await fake((req, res) => {
    if (req.headers.authorization !== basic) return res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
    res.writeHead(307, { location: `http://${cdn.host}/storage/blob?sig=1` }).end();
  });
  const c = plainClient();
  try {
    const b = await c.fetchBlob(`${reg.host}/a/b:t`, blobDesc, { auth: { username: 'u', password: 'p' } });
    const chunks: Buffer[] = [];
    for await (const chunk of b.stream) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(blob));
    assert.equal(cdn.seen[0]!.url, '/storage/blob?sig=1');
    assert.equal(cdn.seen[0]!.headers.authorization, undefined);
  } finally {
    c.close();
  }
});

test('blobRequest: the first pull endpoint that has answered, with the Authorization it would send; a silent mirror is skipped', async () => {
  const basic = `Basic ${Buffer.from('u:p').toString('base64')}`;
  const server = await fake((req, res) => {
    if (req.headers.authorization !== basic) return res.writeHead(401, { 'www-authenticate': 'Basic realm="r"' }).end();
    res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': sha(manifestBytes), 'content-length': manifestBytes.length });
    res.end(req.method === 'HEAD' ? undefined : manifestBytes);
  });
  const config = mkdtempSync(join(tmpdir(), 'crisp-unit-client-'));
  dirs.push(config);
  mkdirSync(join(config, 'reg.example'));
  // Port 1 on loopback: nothing listens, the mirror never answers.
  writeFileSync(join(config, 'reg.example', 'hosts.toml'), `server = "http://${server.host}"\n[host."http://127.0.0.1:1"]\n  header = { X-Extra = "x" }\n`);
  const c = plainClient({ hosts: { configPath: config } });
  const auth = { username: 'u', password: 'p' };
  try {
    assert.equal(await c.blobRequest('reg.example/a/b:t', blobDesc, { auth }), undefined, 'no endpoint has answered yet');
    await c.resolve('reg.example/a/b:t', { auth });
    const r = await c.blobRequest('reg.example/a/b:t', blobDesc, { auth, offset: 10 });
    assert.ok(r);
    assert.equal(r.url, `http://${server.host}/v2/a/b/blobs/${blobDesc.digest}`);
    assert.equal(r.endpoint, server.host);
    assert.equal(r.authorization, basic);
    assert.equal(r.headers.range, 'bytes=10-');
    assert.equal(r.headers['x-extra'], undefined, 'the mirror\'s headers are not the server\'s');
    assert.equal(await c.blobRequest('reg.example/a/b:t', blobDesc, { auth, offset: blobDesc.size }), undefined, 'nothing left to fetch');
  } finally {
    c.close();
  }
});

test('a server that ignores Range still yields bytes from the offset', async () => {
  const f = await fake((_req, res) => res.writeHead(200, { 'content-length': blob.length }).end(blob));
  const c = plainClient();
  try {
    const b = await c.fetchBlob(`${f.host}/a/b:t`, blobDesc, { offset: 1000 });
    assert.equal(f.seen[0]!.headers.range, 'bytes=1000-');
    const chunks: Buffer[] = [];
    for await (const chunk of b.stream) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(blob.subarray(1000)));
  } finally {
    c.close();
  }
});

test('timeouts: no response, and a body that stalls', async () => {
  const silent = await fake(() => {
    /* never answers */
  });
  const stall = await fake((_req, res) => {
    res.writeHead(200, { 'content-length': blob.length });
    res.write(blob.subarray(0, 100)); // then nothing
  });
  const c = plainClient({ timeouts: { connectMs: 1000, responseMs: 300, idleMs: 300 } });
  try {
    await assert.rejects(c.resolve(`${silent.host}/a/b:t`), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && /no response within 300 ms/.test(err.message));
    const b = await c.fetchBlob(`${stall.host}/a/b:t`, blobDesc);
    await assert.rejects(
      (async () => {
        for await (const _ of b.stream) {
          /* drain */
        }
      })(),
    );
  } finally {
    c.close();
  }
});

test('403 is PERMISSION_DENIED naming the host; 5xx is UNAVAILABLE', async () => {
  const denied = await fake((_req, res) => res.writeHead(403, { 'content-type': 'application/json' }).end('{"errors":[{"code":"DENIED","message":"no"}]}'));
  const broken = await fake((_req, res) => res.writeHead(503).end());
  const c = plainClient();
  try {
    await assert.rejects(c.resolve(`${denied.host}/a/b:t`), (err: unknown) => isCrispError(err, 'PERMISSION_DENIED') && err.message.startsWith(`authentication failed for ${denied.host}`));
    await assert.rejects(c.resolve(`${broken.host}/a/b:t`), (err: unknown) => isCrispError(err, 'UNAVAILABLE') && err.message.includes(broken.host) && /503/.test(err.message));
  } finally {
    c.close();
  }
});

test('server_address keeps credentials away from other endpoints (mirrors)', () => {
  const creds = { kind: 'basic' as const, username: 'u', password: 'p' };
  const hub = parseImageReference('me/app');
  const server = defaultServer('docker.io');
  const mirror = { ...defaultServer('mirror.example'), mirror: true };
  assert.equal(credentialsForEndpoint({ ref: hub, creds }, mirror), creds, 'no server_address: sent everywhere');
  assert.equal(credentialsForEndpoint({ ref: hub, creds, serverAddress: 'https://index.docker.io/v1/' }, server), creds);
  assert.equal(credentialsForEndpoint({ ref: hub, creds, serverAddress: 'docker.io' }, server), creds);
  assert.equal(credentialsForEndpoint({ ref: hub, creds, serverAddress: 'https://index.docker.io/v1/' }, mirror), undefined);
  assert.equal(credentialsForEndpoint({ ref: hub, creds, serverAddress: 'mirror.example' }, mirror), creds);
  const local = parseImageReference('127.0.0.1:5000/a');
  assert.equal(credentialsForEndpoint({ ref: local, creds, serverAddress: '127.0.0.1:5000' }, defaultServer('127.0.0.1:5000')), creds);
  assert.equal(credentialsForEndpoint({ ref: local, creds, serverAddress: 'other.example' }, defaultServer('127.0.0.1:5000')), undefined);
});
