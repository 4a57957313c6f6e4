import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ImageIndex, findImage } from '../../backend/images/image-index.js';
import type { ImageInfo } from '../../backend/images/records.js';

const HEX_A = 'a'.repeat(60) + '1234';
const HEX_B = 'a'.repeat(60) + '5678';

function image(hex: string, tags: string[], digests: string[] = []): ImageInfo {
  return {
    id: `sha256:${hex}`,
    repoTags: tags,
    repoDigests: digests,
    size: 1,
    config: {} as ImageInfo['config'],
    configDigest: `sha256:${hex}`,
    manifestDigest: 'sha256:' + 'c'.repeat(64),
    topChainId: '',
    chainIds: [],
    recordNames: [...tags, ...digests],
  };
}

const A = image(HEX_A, ['docker.io/library/busybox:latest'], [`docker.io/library/busybox@sha256:${'d'.repeat(64)}`]);
const B = image(HEX_B, ['registry.test:5000/app:v1']);

/** A load function that counts its calls and can be held open. */
function fakeContainerd(initial: ImageInfo[]) {
  let images = initial;
  let hold: Promise<void> | undefined;
  const state = {
    loads: 0,
    set(next: ImageInfo[]) {
      images = next;
    },
    holdNext(): () => void {
      let release!: () => void;
      hold = new Promise((r) => (release = r));
      return release;
    },
    load: async (): Promise<ImageInfo[]> => {
      state.loads++;
      const snapshot = images;
      const h = hold;
      hold = undefined;
      if (h) await h;
      return snapshot;
    },
  };
  return state;
}

test('findImage: full id with and without sha256:, unique id prefix, tag (normalised), digest', () => {
  const all = [A, B];
  assert.equal(findImage(all, `sha256:${HEX_A}`)?.image, A);
  assert.equal(findImage(all, HEX_B)?.image, B);
  assert.equal(findImage(all, 'busybox')?.by, 'tag');
  assert.equal(findImage(all, 'busybox')?.name, 'docker.io/library/busybox:latest');
  assert.equal(findImage(all, `busybox@sha256:${'d'.repeat(64)}`)?.by, 'digest');
  assert.equal(findImage(all, 'registry.test:5000/app:v1')?.image, B);
  assert.equal(findImage(all, 'aaaaaa'), undefined, 'a prefix both ids share is ambiguous');
  assert.equal(findImage(all, `${'a'.repeat(60)}12`)?.image, A);
  assert.equal(findImage(all, 'nginx'), undefined);
  assert.equal(findImage(all, 'Not A Reference!'), undefined);
});

test('not following: every read asks containerd', async () => {
  const ctd = fakeContainerd([A]);
  const index = new ImageIndex(ctd.load);
  assert.equal((await index.find('busybox'))?.image, A);
  await index.list();
  assert.equal(ctd.loads, 2);
  ctd.set([]);
  assert.equal(await index.find('busybox'), undefined, 'a change is seen at once without events');
});

test('following: reads come from memory until a change notice, then one rebuild', async () => {
  const ctd = fakeContainerd([A]);
  const index = new ImageIndex(ctd.load);
  index.setFollowing(true);
  for (let i = 0; i < 5; i++) assert.equal((await index.find('busybox'))?.image, A);
  assert.equal(ctd.loads, 1);
  ctd.set([A, B]);
  assert.equal(await index.find('registry.test:5000/app:v1'), undefined, 'no notice yet: the copy answers');
  index.invalidate();
  assert.equal((await index.find('registry.test:5000/app:v1'))?.image, B);
  await index.list();
  assert.equal(ctd.loads, 2);
});

test('following: concurrent readers share one rebuild; a rebuild older than a change notice is not kept', async () => {
  const ctd = fakeContainerd([A]);
  const index = new ImageIndex(ctd.load);
  index.setFollowing(true);
  const release = ctd.holdNext();
  const readers = [index.list(), index.list(), index.list()];
  assert.equal(ctd.loads, 1, 'three readers, one load');
  // A change lands while that load is in flight: its answer may predate the change.
  ctd.set([A, B]);
  index.invalidate();
  const after = index.list();
  assert.equal(ctd.loads, 2, 'a reader after the notice starts its own load');
  release();
  for (const r of await Promise.all(readers)) assert.deepEqual(r, [A]);
  assert.deepEqual(await after, [A, B]);
  assert.deepEqual(await index.list(), [A, B]);
  assert.equal(ctd.loads, 2, 'the fresh load became the copy; the stale one did not');
});

test('a broken event stream drops the copy and sends reads to containerd again', async () => {
  const ctd = fakeContainerd([A]);
  const index = new ImageIndex(ctd.load);
  index.setFollowing(true);
  await index.list();
  index.setFollowing(false);
  ctd.set([]);
  assert.deepEqual(await index.list(), []);
  assert.deepEqual(await index.list(), []);
  assert.equal(ctd.loads, 3);
  index.setFollowing(true);
  ctd.set([B]);
  assert.deepEqual(await index.list(), [B], 'a new subscription starts from a rebuild');
});

test('a failed load is not kept and the next read tries again', async () => {
  let fail = true;
  const index = new ImageIndex(async () => {
    if (fail) throw new Error('containerd: unavailable');
    return [A];
  });
  index.setFollowing(true);
  await assert.rejects(index.list(), /unavailable/);
  fail = false;
  assert.deepEqual(await index.list(), [A]);
});

test('find keeps its answers for one copy only: a change notice, a retag or a new copy is seen at once', async () => {
  const ctd = fakeContainerd([A]);
  const index = new ImageIndex(ctd.load);
  index.setFollowing(true);
  assert.equal((await index.find('registry.test:5000/app:v1'))?.image, undefined);
  assert.equal((await index.find('busybox'))?.image, A);
  assert.equal((await index.find('busybox'))?.image, A, 'kept');
  const A2 = image(HEX_A, ['docker.io/library/busybox:latest', 'registry.test:5000/app:v1']);
  ctd.set([A2, B]);
  index.invalidate();
  assert.equal((await index.find('registry.test:5000/app:v1'))?.image, A2, 'the absent answer went with the old copy');
  assert.equal((await index.find('busybox'))?.image, A2);
  index.setFollowing(false);
  ctd.set([]);
  assert.equal(await index.find('busybox'), undefined, 'not following: each read is a new copy');
});
