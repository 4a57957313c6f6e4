// The CNI status cache: one read per age window, shared by concurrent callers, and a change in the
// conf dir makes the next call read again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CniStatusCache } from '../../cni/status-cache.js';
import type { CniStatus } from '../../cni/network.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('reads once per window, shares a read, and re-reads after a conf dir change', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-cni-cache-'));
  let reads = 0;
  let ready = true;
  let clock = 0;
  const cache = new CniStatusCache(
    async () => {
      reads++;
      await sleep(20);
      return { ready } as CniStatus;
    },
    dir,
    5000,
    () => clock,
  );
  try {
    const [a, b] = await Promise.all([cache.get(), cache.get()]);
    assert.equal(reads, 1, 'concurrent callers share one read');
    assert.ok(a.ready && b.ready);
    await cache.get();
    assert.equal(reads, 1, 'fresh answers are served from the cache');
    clock = 6000;
    await cache.get();
    assert.equal(reads, 2, 'an old answer is read again');
    writeFileSync(join(dir, '10-net.conflist'), '{}');
    ready = false;
    for (let i = 0; i < 50 && (await cache.get()).ready; i++) await sleep(20);
    assert.equal((await cache.get()).ready, false, 'a change in the conf dir is seen at once');
    unlinkSync(join(dir, '10-net.conflist'));
  } finally {
    cache.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('past half its age the answer is served and refreshed behind it; never served past the age limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-cni-cache-'));
  let reads = 0;
  let ready = true;
  let clock = 0;
  let release: () => void = () => undefined;
  const cache = new CniStatusCache(
    async () => {
      reads++;
      if (reads > 1) await new Promise<void>((r) => (release = r));
      return { ready } as CniStatus;
    },
    dir,
    5000,
    () => clock,
  );
  try {
    assert.equal((await cache.get()).ready, true);
    clock = 3000;
    ready = false;
    assert.equal((await cache.get()).ready, true, 'served at once while a refresh runs');
    assert.equal(reads, 2, 'the refresh started');
    assert.equal((await cache.get()).ready, true, 'one refresh at a time');
    assert.equal(reads, 2);
    release();
    await sleep(10);
    assert.equal((await cache.get()).ready, false, 'the refreshed answer is served next');
    assert.equal(reads, 2);
    clock = 9000;
    const late = cache.get();
    assert.equal(reads, 3, 'past the age limit the caller waits for a new read');
    release();
    assert.equal((await late).ready, false);
  } finally {
    cache.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
