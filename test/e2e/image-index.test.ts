// crisp's in-memory image index against real containerd: images tagged and removed behind crisp's back
// with `ctr` show up in and vanish from ImageStatus/ListImages within a second or two (containerd's
// image events), crisp's own pull and remove are visible at once, and a restarted crispd answers right.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { TestCrispd } from './lib/crispd.js';
import { startRegistry, type TestRegistry } from './fixtures/registry.js';
import { busyboxImage } from './fixtures/images.js';
import { sleep } from '../../common/time.js';

/** How long an outside change may take to reach ImageStatus. */
const EVENT_BUDGET_MS = 2000;

describe('image index', () => {
  const d = new TestCrispd({ config: { log_level: 'info' } });
  let registry: TestRegistry;
  let pulled: string;

  const ctr = (...args: string[]) => {
    const res = spawnSync('ctr', ['--address', join(d.state, 'containerd', 'containerd.sock'), '-n', 'k8s.io', 'images', ...args], { encoding: 'utf8' });
    assert.equal(res.status, 0, `ctr images ${args.join(' ')}: ${res.stderr}`);
  };
  const present = async (ref: string) => (await d.client.image.unary('ImageStatus', { image: { image: ref } })).image !== null;
  /** Milliseconds until ImageStatus(ref) is `want`; fails after the budget. */
  const until = async (ref: string, want: boolean): Promise<number> => {
    const t0 = Date.now();
    while (Date.now() - t0 < EVENT_BUDGET_MS) {
      if ((await present(ref)) === want) return Date.now() - t0;
      await sleep(25);
    }
    assert.fail(`ImageStatus(${ref}) not ${want ? 'present' : 'absent'} within ${EVENT_BUDGET_MS} ms`);
  };

  before(async () => {
    registry = await startRegistry({});
    await registry.push(busyboxImage({ config: { Labels: { purpose: 'image-index' } } }), 'e2e/index', 'v1');
    pulled = `${registry.host}/e2e/index:v1`;
    await d.start();
  });
  after(async () => {
    await d.cleanup();
    await registry?.stop();
  });

  test("crisp's own pull and remove are visible to the very next call", async () => {
    assert.equal(await present(pulled), false);
    await d.client.image.unary('PullImage', { image: { image: pulled } });
    assert.equal(await present(pulled), true);
    await d.client.image.unary('RemoveImage', { image: { image: pulled } });
    assert.equal(await present(pulled), false);
    await d.client.image.unary('PullImage', { image: { image: pulled } });
    assert.equal(await present(pulled), true);
  });

  test('a tag made and removed with ctr shows up and disappears', async () => {
    const outside = `${registry.host}/e2e/outside:tagged`;
    assert.equal(await present(outside), false);
    ctr('tag', pulled, outside);
    await until(outside, true);
    const listed = await d.client.image.unary('ListImages', {});
    const image = listed.images.find((i) => i.repoTags.includes(pulled));
    assert.ok(image, 'the pulled image is listed');
    assert.ok(image.repoTags.includes(outside), `ListImages carries the outside tag: ${image.repoTags.join(', ')}`);
    ctr('rm', outside);
    await until(outside, false);
    assert.equal(await present(pulled), true, 'removing one tag leaves the other');
  });

  test('an image crisp pulled and ctr removed disappears', async () => {
    ctr('rm', pulled);
    await until(pulled, false);
    assert.equal((await d.client.image.unary('ListImages', {})).images.some((i) => i.repoTags.includes(pulled)), false);
  });

  test('after a crispd restart the index starts from containerd and follows its events again', async () => {
    await d.client.image.unary('PullImage', { image: { image: pulled } });
    await d.stop();
    await d.start();
    assert.equal(await present(pulled), true, 'the pulled image survives the restart');
    const outside = `${registry.host}/e2e/outside:after-restart`;
    ctr('tag', pulled, outside);
    await until(outside, true);
    ctr('rm', outside);
    await until(outside, false);
  });
});
