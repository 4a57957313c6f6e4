import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cacheFileName, findCacheEntries, parseCacheEntry, readCacheEntry, removeCacheEntry, writeCacheEntry, type CacheEntry } from '../../cni/cache.js';
import { writeFileAtomic } from '../../common/atomic-file.js';

function entry(over: Partial<CacheEntry> = {}): CacheEntry {
  return {
    containerId: 'abc',
    ifName: 'eth0',
    networkName: 'net1',
    netnsPath: '/run/crisp/pods/abc/net',
    confFile: '/etc/cni/net.d/10-net1.conflist',
    cniArgs: 'IgnoreUnknown=1;K8S_POD_INFRA_CONTAINER_ID=abc',
    capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
    config: { cniVersion: '1.0.0', name: 'net1', plugins: [{ type: 'bridge', bridge: 'cni0' }, { type: 'portmap', capabilities: { portMappings: true } }] },
    ...over,
  };
}

test('cache entries round-trip, private, without temp files left behind', async () => {
  const dir = join(mkdtempSync(join(tmpdir(), 'crisp-unit-cni-cache-')), 'results');
  try {
    assert.equal(await readCacheEntry(dir, 'net1', 'abc', 'eth0'), undefined);
    const e = entry();
    const path = await writeCacheEntry(dir, e);
    assert.equal(path, join(dir, 'net1-abc-eth0.json'));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.deepEqual(await readCacheEntry(dir, 'net1', 'abc', 'eth0'), e);

    const withResult = entry({ result: { cniVersion: '1.0.0', ips: [{ address: '10.0.0.2/24' }] } });
    await writeCacheEntry(dir, withResult);
    assert.deepEqual(await readCacheEntry(dir, 'net1', 'abc', 'eth0'), withResult);
    assert.deepEqual(readdirSync(dir), ['net1-abc-eth0.json']);
    assert.equal(JSON.parse(readFileSync(path, 'utf8')).kind, 'crisp.cni.cache/v1');

    await removeCacheEntry(dir, e);
    await removeCacheEntry(dir, e);
    assert.deepEqual(readdirSync(dir), []);
  } finally {
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});

test('lookup by container and interface across networks; names with dashes are confirmed by content', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-cni-cache-'));
  try {
    await writeCacheEntry(dir, entry({ networkName: 'old-net', config: { cniVersion: '0.4.0', name: 'old-net', plugins: [{ type: 'bridge' }] } }));
    await writeCacheEntry(dir, entry({ networkName: 'net1' }));
    // Same file-name suffix, other container ("b-abc" on network "x"): must not be returned for "abc".
    await writeCacheEntry(dir, entry({ networkName: 'x', containerId: 'b-abc' }));
    await writeCacheEntry(dir, entry({ ifName: 'net2' }));
    writeFileSync(join(dir, 'junk-abc-eth0.json'), '{ torn');
    writeFileSync(join(dir, '.net1-abc-eth0.json.tmp-1-deadbeef'), '{ in flight');

    const found = await findCacheEntries(dir, 'abc', 'eth0');
    assert.deepEqual(found.entries.map((e) => e.networkName), ['net1', 'old-net']);
    assert.deepEqual(found.broken.map((b) => b.path), [join(dir, 'junk-abc-eth0.json')]);
    assert.match(found.broken[0]!.reason, /junk-abc-eth0\.json: invalid JSON/);
    assert.deepEqual((await findCacheEntries(dir, 'b-abc', 'eth0')).entries.map((e) => e.networkName), ['x']);
    assert.deepEqual((await findCacheEntries(join(dir, 'nope'), 'abc', 'eth0')).entries, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a cache file with a bad config is refused with the path and field', () => {
  const body = { kind: 'crisp.cni.cache/v1', ...entry(), config: { cniVersion: '1.0.0', name: 'n', plugins: [{}] } };
  assert.throws(() => parseCacheEntry('/c/n-abc-eth0.json', JSON.stringify(body)), /\/c\/n-abc-eth0\.json \(config\): field "plugins\[0\]\.type" is missing/);
  assert.throws(() => parseCacheEntry('/c/x.json', '{"kind":"other"}'), /\/c\/x\.json: not a crisp\.cni\.cache\/v1 file/);
  assert.throws(() => parseCacheEntry('/c/x.json', JSON.stringify({ ...body, config: entry().config, cniArgs: 5 })), /\/c\/x\.json: field "cniArgs" must be a string/);
  assert.equal(cacheFileName('n', 'c', 'eth0'), 'n-c-eth0.json');
});

test('atomic write replaces the file by rename (a reader holding the old inode sees the old data)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-cni-cache-'));
  try {
    const f = join(dir, 'f.json');
    await writeFileAtomic(f, 'one');
    const ino1 = statSync(f).ino;
    await writeFileAtomic(f, 'two', 0o640);
    assert.notEqual(statSync(f).ino, ino1);
    assert.equal(readFileSync(f, 'utf8'), 'two');
    assert.equal(statSync(f).mode & 0o777, 0o640);
    assert.deepEqual(readdirSync(dir), ['f.json']);
    await assert.rejects(writeFileAtomic(join(dir, 'missing', 'f'), 'x'), /ENOENT/);
    assert.deepEqual(readdirSync(dir), ['f.json']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
