// The default cgroup parent goes with the last pod below it, only if crisp made it; plain directories
// stand in for the cgroup hierarchies (rmdir of a non-empty one fails as on cgroupfs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { DefaultCgroupParent } from '../../sandbox/cgroup-parent.js';
import { createCgroup, removeCgroup } from '../../sandbox/cgroups.js';

function hierarchies(): { dir: string; mounts: string[] } {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-cgparent-'));
  const mounts = ['cpu', 'memory'].map((h) => join(dir, h));
  for (const m of mounts) mkdirSync(m);
  return { dir, mounts };
}

test('a parent crisp made is removed with its last pod cgroup, not before', async () => {
  const { dir, mounts } = hierarchies();
  try {
    const parent = new DefaultCgroupParent('/crisp', join(dir, 'marker'), () => mounts);
    for (const id of ['a', 'b']) await parent.withParent(() => createCgroup(`/crisp/crisp-${id}`, mounts));
    await removeCgroup('/crisp/crisp-a', mounts);
    assert.equal(await parent.releaseIfUnused(), false, 'pod b is still below it');
    assert.ok(mounts.every((m) => existsSync(join(m, 'crisp'))));
    await removeCgroup('/crisp/crisp-b', mounts);
    assert.equal(await parent.releaseIfUnused(), true);
    assert.ok(mounts.every((m) => !existsSync(join(m, 'crisp'))), 'gone from every hierarchy');
    assert.equal(existsSync(join(dir, 'marker')), false);
    // Made again by the next pod, and removed again after it.
    await parent.withParent(() => createCgroup('/crisp/crisp-c', mounts));
    await removeCgroup('/crisp/crisp-c', mounts);
    assert.equal(await parent.releaseIfUnused(), true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a parent that existed before crisp needed it is left alone', async () => {
  const { dir, mounts } = hierarchies();
  try {
    for (const m of mounts) mkdirSync(join(m, 'crisp'));
    const parent = new DefaultCgroupParent('/crisp', join(dir, 'marker'), () => mounts);
    await parent.withParent(() => createCgroup('/crisp/crisp-a', mounts));
    await removeCgroup('/crisp/crisp-a', mounts);
    assert.equal(await parent.releaseIfUnused(), false);
    assert.ok(mounts.every((m) => existsSync(join(m, 'crisp'))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('only pod cgroups directly below the parent count; "/" is never removed', () => {
  const parent = new DefaultCgroupParent('/crisp', '/nonexistent/marker', () => []);
  assert.equal(parent.holds('/crisp/crisp-1'), true);
  assert.equal(parent.holds('/crisp-other/crisp-1'), false);
  assert.equal(parent.holds('/crisp/x/crisp-1'), false);
  assert.equal(parent.holds('/kubepods/pod1'), false);
  assert.equal(new DefaultCgroupParent('/', '/nonexistent/marker', () => []).holds('/crisp-1'), false);
});
