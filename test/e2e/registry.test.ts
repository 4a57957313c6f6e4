// The registry client against real docker-registry instances (plain, htpasswd, token, TLS) fed with the
// fixture images. Needs /usr/bin/docker-registry, busybox-static, zstd, htpasswd and openssl; not root.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isCrispError } from '../../common/errors.js';
import { RegistryClient, type RegistryClientOptions } from '../../backend/registry/client.js';
import { verifyingStream } from '../../backend/registry/verify.js';
import { MediaType, type Descriptor } from '../../backend/registry/oci.js';
import { hostPlatform } from '../../backend/registry/platform.js';
import type { RegistryAuth } from '../../backend/registry/auth.js';
import { busyboxDockerImage, busyboxImage, busyboxIndexImage, busyboxZstdImage, largeImage, otherPlatform, type TestImage } from './fixtures/images.js';
import { freePort, startRegistry, type TestRegistry } from './fixtures/registry.js';

const USERS = { alice: 'wonderland-pass' };
const ALICE: RegistryAuth = { username: 'alice', password: USERS.alice };

const images = {
  busybox: busyboxImage({ config: { User: 'app', WorkingDir: '/home/app', Entrypoint: ['/bin/sh', '-c'], Cmd: ['id'], Labels: { 'io.crisp.test': 'busybox', purpose: 'e2e' } } }),
  index: busyboxIndexImage(),
  dockerIndex: busyboxIndexImage({ format: 'docker' }),
  zstd: busyboxZstdImage(),
  docker: busyboxDockerImage(),
};

const started: TestRegistry[] = [];
const tempDirs: string[] = [];
const clients: RegistryClient[] = [];
let plain: TestRegistry;
let basic: TestRegistry;
let token: TestRegistry;
let secure: TestRegistry;

function client(opts: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ timeouts: { connectMs: 3000, responseMs: 10_000, idleMs: 10_000 }, ...opts });
  clients.push(c);
  return c;
}

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

before(async () => {
  const launch = async (opts: Parameters<typeof startRegistry>[0]) => {
    const r = await startRegistry(opts);
    started.push(r);
    return r;
  };
  [plain, basic, token, secure] = await Promise.all([
    launch({}),
    launch({ auth: { kind: 'basic', users: USERS } }),
    launch({ auth: { kind: 'token', users: USERS, refreshTokens: { 'refresh-alice': 'alice' } } }),
    launch({ tls: true }),
  ]);
  await Promise.all([
    plain.push(images.busybox, 'test/busybox', 'v1'),
    plain.push(images.index, 'test/multi', 'v1'),
    plain.push(images.dockerIndex, 'test/multi-docker', 'v1'),
    plain.push(images.zstd, 'test/zstd', 'v1'),
    plain.push(images.docker, 'test/docker', 'v1'),
    basic.push(images.busybox, 'private/busybox', 'v1'),
    token.push(images.busybox, 'private/busybox', 'v1'),
    token.push(images.busybox, 'public/busybox', 'v1'),
    secure.push(images.zstd, 'tls/zstd', 'v1'),
  ]);
});

after(async () => {
  for (const c of clients) c.close();
  await Promise.allSettled(started.map((r) => r.stop()));
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

async function collect(stream: NodeJS.ReadableStream, desc: Descriptor, opts: Parameters<typeof verifyingStream>[2] = {}): Promise<Buffer> {
  const out: Buffer[] = [];
  await pipeline(
    stream,
    verifyingStream(desc.digest, desc.size, opts),
    new Writable({
      write(c: Buffer, _e, cb) {
        out.push(c);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

function blobData(image: TestImage, digest: string): Buffer {
  const b = image.blobs.find((x) => x.digest === digest);
  assert.ok(b?.data, `fixture has blob ${digest}`);
  return b.data;
}

test('resolve by tag: HEAD then GET, digest, media type, bytes', async () => {
  const c = client();
  const ref = `${plain.host}/test/busybox:v1`;
  const r = await c.resolve(ref);
  assert.equal(r.descriptor.digest, images.busybox.top.digest);
  assert.equal(r.descriptor.mediaType, MediaType.ociManifest);
  assert.equal(r.descriptor.size, images.busybox.top.size);
  assert.ok(r.bytes.equals(images.busybox.top.bytes));
  assert.equal(r.endpoint, plain.host);
  const head = await c.resolveDescriptor(ref);
  assert.deepEqual(head.descriptor, r.descriptor);
});

test('resolve by digest and by tag@digest (the digest wins)', async () => {
  const c = client();
  const d = images.busybox.top.digest;
  const byDigest = await c.resolve(`${plain.host}/test/busybox@${d}`);
  assert.equal(byDigest.descriptor.digest, d);
  const both = await c.resolve(`${plain.host}/test/busybox:no-such-tag@${d}`);
  assert.equal(both.descriptor.digest, d);
  assert.equal(both.reference.tag, 'no-such-tag');
  await assert.rejects(c.resolve(`${plain.host}/test/busybox@sha256:${'0'.repeat(64)}`), (err: unknown) => isCrispError(err, 'NOT_FOUND'));
});

test('resolveImage: manifest, config (user, env, entrypoint, labels), blobs verified by digest', async () => {
  const c = client();
  const ref = `${plain.host}/test/busybox:v1`;
  const img = await c.resolveImage(ref);
  assert.equal(img.index, undefined);
  assert.equal(img.manifest.layers.length, 3);
  assert.equal(img.config.config?.User, 'app');
  assert.deepEqual(img.config.config?.Entrypoint, ['/bin/sh', '-c']);
  assert.equal(img.config.config?.WorkingDir, '/home/app');
  assert.equal(img.config.config?.Labels?.purpose, 'e2e');
  assert.deepEqual(img.config.rootfs.diff_ids, images.busybox.layers.map((l) => l.diffId));
  for (const layer of img.manifest.layers) {
    const blob = await c.fetchBlob(ref, layer);
    const got = await collect(blob.stream, layer);
    assert.ok(got.equals(blobData(images.busybox, layer.digest)));
  }
});

test('zstd layers and docker schema2 images keep their media types', async () => {
  const c = client();
  const z = await c.resolveImage(`${plain.host}/test/zstd:v1`);
  assert.deepEqual(z.manifest.layers.map((l) => l.mediaType), [MediaType.ociLayerZstd, MediaType.ociLayerZstd, MediaType.ociLayerZstd]);
  const zl = z.manifest.layers[0]!;
  assert.ok((await collect((await c.fetchBlob(`${plain.host}/test/zstd:v1`, zl)).stream, zl)).equals(blobData(images.zstd, zl.digest)));
  const d = await c.resolveImage(`${plain.host}/test/docker:v1`);
  assert.equal(d.target.mediaType, MediaType.dockerManifest);
  assert.equal(d.configDescriptor.mediaType, MediaType.dockerConfig);
  assert.ok(d.manifest.layers.every((l) => l.mediaType === MediaType.dockerLayerGzip));
});

test('index: this host\'s platform is picked; another platform on request', async () => {
  const c = client();
  for (const [repo, image, indexType] of [
    ['test/multi', images.index, MediaType.ociIndex],
    ['test/multi-docker', images.dockerIndex, MediaType.dockerManifestList],
  ] as const) {
    const ref = `${plain.host}/${repo}:v1`;
    const mine = await c.resolveImage(ref);
    assert.equal(mine.target.mediaType, indexType);
    assert.equal(mine.target.digest, image.top.digest);
    assert.equal(mine.index?.manifests.length, 2);
    assert.equal(mine.manifestDescriptor.digest, image.children[0]!.digest);
    assert.equal(mine.config.architecture, hostPlatform().architecture);
    const other = await c.resolveImage(ref, { platform: otherPlatform() });
    assert.equal(other.manifestDescriptor.digest, image.children[1]!.digest);
    assert.equal(other.config.architecture, otherPlatform().architecture);
    await assert.rejects(c.resolveImage(ref, { platform: { os: 'linux', architecture: 's390x' } }), (err: unknown) =>
      isCrispError(err, 'NOT_FOUND') && /no manifest for platform linux\/s390x/.test(err.message),
    );
  }
});

test('NOT_FOUND for a missing tag or repository names the reference', async () => {
  const c = client();
  for (const ref of [`${plain.host}/test/busybox:missing`, `${plain.host}/no/such-repo:v1`]) {
    await assert.rejects(c.resolve(ref), (err: unknown) => {
      assert.ok(isCrispError(err, 'NOT_FOUND'), String(err));
      assert.ok(err.message.includes(`"${ref}"`), err.message);
      return true;
    });
  }
});

test('UNAVAILABLE names the host when nothing listens', async () => {
  const port = await freePort();
  const c = client();
  await assert.rejects(c.resolve(`127.0.0.1:${port}/x/y:z`), (err: unknown) => {
    assert.ok(isCrispError(err, 'UNAVAILABLE'), String(err));
    assert.match(err.message, new RegExp(`registry 127\\.0\\.0\\.1:${port} unreachable`));
    return true;
  });
});

test('ranged fetch resumes a blob mid-way', async () => {
  const c = client();
  const ref = `${plain.host}/test/busybox:v1`;
  const layer = images.busybox.manifest.layers[0]!;
  const data = blobData(images.busybox, layer.digest);
  const offset = 12_345;
  const blob = await c.fetchBlob(ref, layer, { offset });
  assert.equal(blob.offset, offset);
  const hash = createHash('sha256').update(data.subarray(0, offset));
  const rest = await collect(blob.stream, layer, { hash, offset });
  assert.ok(rest.equals(data.subarray(offset)));
  const end = await c.fetchBlob(ref, layer, { offset: layer.size });
  assert.equal((await collect(end.stream, layer, { hash: createHash('sha256').update(data), offset: layer.size })).length, 0);
  await assert.rejects(c.fetchBlob(ref, layer, { offset: layer.size + 1 }), /outside/);
});

test('a corrupted download fails digest verification', async () => {
  const c = client();
  const ref = `${plain.host}/test/busybox:v1`;
  const layer = images.busybox.manifest.layers[1]!;
  const lying: Descriptor = { ...layer, digest: `sha256:${'1'.repeat(64)}` };
  // The registry does not have this digest: it is NOT_FOUND before any byte flows.
  await assert.rejects(c.fetchBlob(ref, lying), (err: unknown) => isCrispError(err, 'NOT_FOUND'));
  // Right bytes checked against a wrong digest: verifyingStream catches it.
  const blob = await c.fetchBlob(ref, layer);
  await assert.rejects(collect(blob.stream, { ...layer, digest: `sha256:${'2'.repeat(64)}` }), /digest mismatch/);
});

test('Basic auth: user/password and base64 auth succeed; wrong or missing credentials fail clearly', async () => {
  const c = client();
  const ref = `${basic.host}/private/busybox:v1`;
  const ok = await c.resolveImage(ref, { auth: ALICE });
  assert.equal(ok.target.digest, images.busybox.top.digest);
  const layer = ok.manifest.layers[2]!;
  await collect((await c.fetchBlob(ref, layer, { auth: ALICE })).stream, layer);
  const viaAuth = await client().resolve(ref, { auth: { auth: Buffer.from(`alice:${USERS.alice}`).toString('base64') } });
  assert.equal(viaAuth.descriptor.digest, images.busybox.top.digest);
  await assert.rejects(client().resolve(ref, { auth: { username: 'alice', password: 'not-the-password' } }), (err: unknown) => {
    assert.ok(isCrispError(err, 'UNAUTHENTICATED'), String(err));
    assert.match(err.message, new RegExp(`authentication failed for ${basic.host.replace(/\./g, '\\.')}`));
    assert.ok(!err.message.includes('not-the-password'));
    return true;
  });
  await assert.rejects(client().resolve(ref), /authentication failed for .*username and password/);
  // server_address scopes the credentials to one registry.
  const scoped = await client().resolve(ref, { auth: { ...ALICE, serverAddress: basic.host } });
  assert.equal(scoped.descriptor.digest, images.busybox.top.digest);
  await assert.rejects(client().resolve(ref, { auth: { ...ALICE, serverAddress: 'elsewhere.example' } }), /authentication failed/);
});

test('token flow: credentials get a token (cached), anonymous gets public repos only, bad credentials fail', async () => {
  const ts = token.tokenServer!;
  const c = client();
  const ref = `${token.host}/private/busybox:v1`;
  const before = ts.stats.issued;
  const img = await c.resolveImage(ref, { auth: ALICE });
  assert.equal(img.target.digest, images.busybox.top.digest);
  for (const l of img.manifest.layers) await collect((await c.fetchBlob(ref, l, { auth: ALICE })).stream, l);
  assert.equal(ts.stats.issued - before, 1, 'one token serves the whole pull');

  const anon = await client().resolveImage(`${token.host}/public/busybox:v1`);
  assert.equal(anon.target.digest, images.busybox.top.digest);

  await assert.rejects(client().resolve(ref), (err: unknown) => isCrispError(err, 'UNAUTHENTICATED') && err.message.startsWith(`authentication failed for ${token.host}`));
  const rejectedBefore = ts.stats.rejected;
  await assert.rejects(client().resolve(ref, { auth: { username: 'alice', password: 'wrong-secret' } }), (err: unknown) => {
    assert.ok(isCrispError(err, 'UNAUTHENTICATED'), String(err));
    assert.ok(err.message.startsWith(`authentication failed for ${token.host}`), err.message);
    assert.ok(!err.message.includes('wrong-secret'));
    return true;
  });
  assert.equal(ts.stats.rejected, rejectedBefore + 1);
});

test('token flow: identity token (OAuth2 refresh) and registry token', async () => {
  const ref = `${token.host}/private/busybox:v1`;
  const viaRefresh = await client().resolve(ref, { auth: { identityToken: 'refresh-alice' } });
  assert.equal(viaRefresh.descriptor.digest, images.busybox.top.digest);
  await assert.rejects(client().resolve(ref, { auth: { identityToken: 'stolen' } }), /authentication failed/);
  const minted = token.tokenServer!.mint('alice', [{ type: 'repository', name: 'private/busybox', actions: ['pull'] }]);
  const viaRegistryToken = await client().resolve(ref, { auth: { registryToken: minted } });
  assert.equal(viaRegistryToken.descriptor.digest, images.busybox.top.digest);
});

test('mirrors: a dead mirror and a mirror without the image are skipped; the server is never asked', async () => {
  const dead = await freePort();
  const config = tempDir('crisp-e2e-hosts-');
  const ns = 'registry.crisp.invalid';
  mkdirSync(join(config, ns));
  writeFileSync(
    join(config, ns, 'hosts.toml'),
    [
      `server = "https://${ns}"`,
      `[host."http://127.0.0.1:${dead}"]`,
      '  capabilities = ["pull", "resolve"]',
      `[host."https://${secure.host}"]`,
      '  capabilities = ["pull", "resolve"]',
      `  ca = "${secure.caFile}"`,
      `[host."http://${plain.host}"]`,
      '  capabilities = ["pull", "resolve"]',
      '',
    ].join('\n'),
  );
  const logs: string[] = [];
  const c = client({ hosts: { configPath: config }, logger: { debug: (f, m) => logs.push(`${m} ${JSON.stringify(f)}`), warn: () => {} } });
  const ref = `${ns}/test/busybox:v1`;
  const img = await c.resolveImage(ref);
  assert.equal(img.target.digest, images.busybox.top.digest);
  const layer = img.manifest.layers[0]!;
  const blob = await c.fetchBlob(ref, layer);
  assert.equal(blob.endpoint, plain.host);
  await collect(blob.stream, layer);
  assert.ok(logs.some((l) => l.includes(`127.0.0.1:${dead}`)), 'the dead mirror was tried');
  assert.ok(logs.some((l) => l.includes(secure.host) && /not found/.test(l)), 'the TLS mirror (trusted through ca) answered 404');

  // Nobody has it: the server's answer decides (here it does not resolve), mirrors' failures are listed.
  await assert.rejects(c.resolve(`${ns}/test/absent:v1`), (err: unknown) => {
    assert.ok(isCrispError(err), String(err));
    assert.match(err.message, /also tried/);
    return true;
  });
});

test('TLS: hosts.toml ca verifies the registry; skip_verify=false without ca fails naming the host', async () => {
  const config = tempDir('crisp-e2e-tls-');
  const dir = join(config, secure.host.replace(':', '_') + '_');
  mkdirSync(dir);
  writeFileSync(join(dir, 'hosts.toml'), `server = "https://${secure.host}"\nca = "${secure.caFile}"\n`);
  const ref = `${secure.host}/tls/zstd:v1`;
  const img = await client({ hosts: { configPath: config } }).resolveImage(ref);
  assert.equal(img.target.digest, images.zstd.top.digest);

  // No config: a localhost registry is tried over TLS without verification (containerd's default).
  const dflt = await client().resolve(ref);
  assert.equal(dflt.descriptor.digest, images.zstd.top.digest);

  writeFileSync(join(dir, 'hosts.toml'), `server = "https://${secure.host}"\nskip_verify = false\n`);
  await assert.rejects(client({ hosts: { configPath: config } }).resolve(ref), (err: unknown) => {
    assert.ok(isCrispError(err, 'UNAVAILABLE'), String(err));
    assert.ok(err.message.includes(secure.host), err.message);
    return true;
  });
});

test('plainHttpHosts override talks HTTP directly', async () => {
  const c = client({ hosts: { plainHttpHosts: ['127.0.0.1:*'] } });
  const r = await c.resolve(`${plain.host}/test/busybox:v1`);
  assert.equal(r.descriptor.digest, images.busybox.top.digest);
});

test('large image generator: multi-layer incompressible image pushes and pulls intact', async () => {
  for (const compression of ['gzip', 'zstd'] as const) {
    const big = await largeImage({ sizeMB: 6, layers: 3, fileMB: 1, compression, withBusybox: false });
    try {
      assert.equal(big.manifest.layers.length, 3);
      const total = big.blobs.filter((b) => b.path).reduce((n, b) => n + b.size, 0);
      assert.ok(total > 6 * 1024 * 1024, `incompressible: ${total} bytes for 6 MiB of payload`);
      const repo = `bench/large-${compression}`;
      await plain.push(big, repo, 'v1');
      const c = client();
      const ref = `${plain.host}/${repo}:v1`;
      const img = await c.resolveImage(ref);
      assert.deepEqual(img.config.rootfs.diff_ids, big.layers.map((l) => l.diffId));
      for (const l of img.manifest.layers) await collect((await c.fetchBlob(ref, l)).stream, l);
    } finally {
      await big.cleanup();
    }
  }
});

test('cancellation through AbortSignal', async () => {
  const c = client();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(c.resolve(`${plain.host}/test/busybox:v1`, { signal: ac.signal }), (err: unknown) => isCrispError(err, 'CANCELLED'));
});
