// The start path's immutable-data caches: an image's /etc/passwd and /etc/group read once per image
// id, and the OOM-kill counter of a container cgroup read from memory.events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImageUserFilesCache } from '../../sandbox/containers/image-user-files.js';
import { oomKills } from '../../sandbox/containers/oom-kills.js';

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-start-caches-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function layer(root: string, name: string, files: Record<string, string>): string {
  const dir = join(root, name);
  for (const [p, text] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), text);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

test('ImageUserFilesCache: files are read from the layers once per image id, top-most layer first', async (t) => {
  const root = scratch(t);
  const lower = layer(root, 'lower', { 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n', 'etc/group': 'root:x:0:\n' });
  const upper = layer(root, 'upper', { 'etc/passwd': 'app:x:1000:1000::/home/app:/bin/sh\n' });
  const cache = new ImageUserFilesCache();
  const first = await cache.get('sha256:a', [upper, lower]);
  assert.deepEqual(first, { passwd: 'app:x:1000:1000::/home/app:/bin/sh\n', group: 'root:x:0:\n' });
  // The layers are not read again: a changed file on disk does not show for the same image id.
  writeFileSync(join(upper, 'etc/passwd'), 'changed:x:1:1::/:/bin/sh\n');
  assert.deepEqual(await cache.get('sha256:a', [upper, lower]), first);
  // Another image reads its own layers; one without the files gets none.
  assert.deepEqual(await cache.get('sha256:b', [layer(root, 'empty', {})]), {});
  assert.equal(cache.size, 2);
});

test('ImageUserFilesCache: bounded, the least recently used image goes first', async (t) => {
  const root = scratch(t);
  const dir = layer(root, 'l', { 'etc/passwd': 'root:x:0:0::/root:/bin/sh\n' });
  const cache = new ImageUserFilesCache(2);
  await cache.get('a', [dir]);
  await cache.get('b', [dir]);
  await cache.get('a', [dir]); // a is now the most recent
  await cache.get('c', [dir]);
  assert.equal(cache.size, 2);
  // b was evicted: reading it again sees the current file.
  writeFileSync(join(dir, 'etc/passwd'), 'x:x:5:5::/:/bin/sh\n');
  assert.deepEqual(await cache.get('b', [dir]), { passwd: 'x:x:5:5::/:/bin/sh\n' });
  assert.deepEqual(await cache.get('c', [dir]), { passwd: 'root:x:0:0::/root:/bin/sh\n' }, 'c was kept');
});

test('oomKills: the oom_kill count of memory.events (v2) or memory.oom_control (v1); undefined when unreadable or without a memory controller', async (t) => {
  const root = scratch(t);
  mkdirSync(join(root, 'pods/ctr'), { recursive: true });
  writeFileSync(join(root, 'pods/ctr/memory.events'), 'low 0\nhigh 0\nmax 3\noom 2\noom_kill 1\noom_group_kill 0\n');
  assert.equal(await oomKills('/pods/ctr', { v2: root }), 1);
  writeFileSync(join(root, 'pods/ctr/memory.events'), 'low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n');
  assert.equal(await oomKills('/pods/ctr', { v2: root }), 0);
  assert.equal(await oomKills('/pods/gone', { v2: root }), undefined, 'cgroup removed already');
  assert.equal(await oomKills('/pods/ctr', null), undefined, 'no memory controller');
  assert.equal(await oomKills('', { v2: root }), undefined, 'no cgroups path');
  // cgroup v1: the memory controller's oom_control.
  writeFileSync(join(root, 'pods/ctr/memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
  assert.equal(await oomKills('/pods/ctr', { v1: root }), 2);
  writeFileSync(join(root, 'pods/ctr/memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\n');
  assert.equal(await oomKills('/pods/ctr', { v1: root }), undefined, 'a kernel before 4.13 has no count');
});
