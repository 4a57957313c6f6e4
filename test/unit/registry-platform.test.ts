import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import { goArch, hostPlatform, pickPlatform, platformRank } from '../../backend/registry/platform.js';
import { MediaType, type Descriptor, type ImageIndex, type Platform } from '../../backend/registry/oci.js';

const entry = (n: number, platform?: Platform): Descriptor => ({
  mediaType: MediaType.ociManifest,
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: 100 + n,
  ...(platform ? { platform } : {}),
});
const index = (...manifests: Descriptor[]): ImageIndex => ({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests });

test('node arch → GOARCH', () => {
  assert.equal(goArch('x64'), 'amd64');
  assert.equal(goArch('arm64'), 'arm64');
  assert.equal(goArch('arm'), 'arm');
  assert.equal(goArch('ia32'), '386');
  assert.equal(goArch('ppc64', 'LE'), 'ppc64le');
  assert.equal(goArch('ppc64', 'BE'), 'ppc64');
  assert.equal(goArch('s390x'), 's390x');
  assert.equal(goArch('riscv64'), 'riscv64');
  assert.equal(goArch('mipsel'), 'mipsle');
  const host = hostPlatform();
  assert.equal(host.os, 'linux');
  assert.equal(host.architecture, goArch());
});

test('amd64 host picks amd64 over other arches and attestation entries', () => {
  const idx = index(
    entry(1, { os: 'linux', architecture: 'arm64', variant: 'v8' }),
    entry(2, { os: 'unknown', architecture: 'unknown' }),
    entry(3, { os: 'linux', architecture: 'amd64' }),
    entry(4, { os: 'windows', architecture: 'amd64' }),
  );
  assert.equal(pickPlatform(idx, { os: 'linux', architecture: 'amd64' }).digest, entry(3).digest);
});

test('amd64: no variant or v1 matches, v3 does not', () => {
  const want = { os: 'linux', architecture: 'amd64' };
  assert.equal(platformRank(want, { os: 'linux', architecture: 'amd64', variant: 'v1' }), 0);
  assert.equal(platformRank(want, { os: 'linux', architecture: 'amd64', variant: 'v3' }), undefined);
  assert.equal(platformRank(want, { os: 'linux', architecture: 'x86_64' }), 0);
});

test('arm64 accepts "" and v8 equally and prefers them to nothing', () => {
  const want = { os: 'linux', architecture: 'arm64', variant: 'v8' };
  const idx = index(entry(1, { os: 'linux', architecture: 'amd64' }), entry(2, { os: 'linux', architecture: 'arm64' }));
  assert.equal(pickPlatform(idx, want).digest, entry(2).digest);
  assert.equal(platformRank(want, { os: 'linux', architecture: 'arm64', variant: 'v8' }), 0);
  assert.equal(platformRank({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }), 0);
});

test('arm v7 takes v7, then older variants, never newer', () => {
  const want = { os: 'linux', architecture: 'arm', variant: 'v7' };
  const v5 = entry(5, { os: 'linux', architecture: 'arm', variant: 'v5' });
  const v6 = entry(6, { os: 'linux', architecture: 'arm', variant: 'v6' });
  const v7 = entry(7, { os: 'linux', architecture: 'arm', variant: 'v7' });
  const v8 = entry(8, { os: 'linux', architecture: 'arm', variant: 'v8' });
  assert.equal(pickPlatform(index(v5, v8, v7, v6), want).digest, v7.digest);
  assert.equal(pickPlatform(index(v5, v8, v6), want).digest, v6.digest);
  assert.throws(() => pickPlatform(index(v8), want));
  assert.equal(platformRank(want, { os: 'linux', architecture: 'arm' }), 0, 'arm without variant means v7');
});

test('an entry without platform is accepted, after matching ones', () => {
  const want = { os: 'linux', architecture: 'amd64' };
  assert.equal(pickPlatform(index(entry(1), entry(2, { os: 'linux', architecture: 'amd64' })), want).digest, entry(2).digest);
  assert.equal(pickPlatform(index(entry(1)), want).digest, entry(1).digest);
});

test('no match: NOT_FOUND listing what the index offers', () => {
  const idx = index(entry(1, { os: 'linux', architecture: 's390x' }), entry(2, { os: 'unknown', architecture: 'unknown' }));
  assert.throws(
    () => pickPlatform(idx, { os: 'linux', architecture: 'amd64' }, 'image "x"'),
    (err: unknown) => isCrispError(err, 'NOT_FOUND') && /image "x": no manifest for platform linux\/amd64 \(offered: linux\/s390x\)/.test(err.message),
  );
});
