// The pull progress side channel: file naming, the coalescing atomic writer, the reader, the rate meter,
// and the progress line `crisp pull` draws from it.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PullProgressFile, RateMeter, pullProgressPath, readPullProgress, type PullProgress } from '../../backend/images/progress.js';
import { renderPullProgress } from '../../cli/image-commands.js';

const dir = mkdtempSync(join(tmpdir(), 'crisp-progress-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function progress(done: number, total = 24_000_000, bytesPerSecond = 2_000_000): PullProgress {
  return {
    reference: 'docker.io/library/busybox:latest',
    done,
    total,
    layers: [{ digest: `sha256:${'a'.repeat(64)}`, done, total }],
    bytesPerSecond,
    startedAt: 1000,
    updatedAt: 2000 + done,
  };
}

describe('pull progress file', () => {
  test('is named by the sha256 of the normalised reference', () => {
    const ref = 'docker.io/library/busybox:latest';
    const want = createHash('sha256').update(ref).digest('hex');
    assert.equal(pullProgressPath('/run/crisp/pulls', ref), `/run/crisp/pulls/${want}.json`);
    assert.notEqual(pullProgressPath('/x', ref), pullProgressPath('/x', 'docker.io/library/busybox:1'));
  });

  test('writes atomically into a directory it creates, keeps only the newest snapshot, and is removed on close', async () => {
    const path = pullProgressPath(join(dir, 'pulls'), 'r1');
    const errors: unknown[] = [];
    const file = new PullProgressFile(path, (e) => errors.push(e));
    for (let i = 1; i <= 20; i++) file.write(progress(i * 1000));
    await file.flush();
    const got = JSON.parse(readFileSync(path, 'utf8')) as PullProgress;
    assert.equal(got.done, 20_000, 'the last snapshot wins');
    assert.deepEqual(await readPullProgress(path), got);
    assert.equal(statSync(path).mode & 0o777, 0o644);
    assert.deepEqual(readdirSync(join(dir, 'pulls')), [path.split('/').pop()], 'no temp files left');

    await file.close();
    assert.equal(existsSync(path), false);
    file.write(progress(99));
    await file.flush();
    assert.equal(existsSync(path), false, 'writes after close are ignored');
    assert.deepEqual(errors, []);
  });

  test('close while a write is in flight still leaves no file', async () => {
    const path = pullProgressPath(join(dir, 'pulls'), 'r2');
    const file = new PullProgressFile(path);
    file.write(progress(1));
    file.write(progress(2));
    await file.close();
    assert.equal(existsSync(path), false);
  });

  test('write errors go to the callback, not to the caller', async () => {
    writeFileSync(join(dir, 'not-a-dir'), '');
    const errors: unknown[] = [];
    const file = new PullProgressFile(join(dir, 'not-a-dir', 'x.json'), (e) => errors.push(e));
    file.write(progress(1));
    await file.flush();
    assert.equal(errors.length, 1);
    await file.close();
  });

  test('reading: absent or malformed files are no progress', async () => {
    assert.equal(await readPullProgress(join(dir, 'absent.json')), undefined);
    writeFileSync(join(dir, 'garbage.json'), '{"reference": 1');
    assert.equal(await readPullProgress(join(dir, 'garbage.json')), undefined);
    writeFileSync(join(dir, 'other.json'), '{"hello": "world"}');
    assert.equal(await readPullProgress(join(dir, 'other.json')), undefined);
  });
});

describe('rate meter', () => {
  test('measures over its window, not since the start', () => {
    const m = new RateMeter(5000);
    assert.equal(m.rate(), 0);
    m.add(0, 0);
    m.add(1000, 10_000_000);
    assert.equal(m.rate(), 10_000_000);
    // A long quiet stretch: the window forgets the fast start.
    for (let t = 2000; t <= 12_000; t += 1000) m.add(t, 10_000_000 + (t - 1000) * 1000);
    assert.equal(m.rate(), 1_000_000);
    m.add(13_000, 11_000_000);
    m.add(20_000, 11_000_000);
    assert.equal(m.rate(), 0, 'nothing moved in the last window');
  });
});

describe('crisp pull progress line', () => {
  const image = 'docker.io/library/busybox:latest';

  test('without progress: elapsed time only', () => {
    assert.equal(renderPullProgress(image, undefined, 1500), `pulling ${image} … 1.5s`);
    assert.equal(renderPullProgress(image, progress(0, 0), 200), `pulling ${image} … 0.2s`, 'resolving: total unknown');
  });

  test('a bar, percent, MB done/total and MB/s', () => {
    const line = renderPullProgress(image, progress(12_000_000), 6000, 200);
    assert.equal(line, `[############............]  50% 12.0/24.0 MB 2.0 MB/s 6.0s ${image}`);
    assert.match(renderPullProgress(image, progress(24_000_000), 1000, 200), /^\[#{24}\] 100% 24\.0\/24\.0 MB/);
    assert.match(renderPullProgress(image, progress(0), 1000, 200), /^\[\.{24}\] {3}0% 0\.0\/24\.0 MB/);
  });

  test('clamps odd numbers and fits the terminal', () => {
    assert.match(renderPullProgress(image, progress(30_000_000), 1000, 200), /100%/);
    const narrow = renderPullProgress(image, progress(1_000_000), 1000, 40);
    assert.ok(narrow.length <= 39, narrow);
    assert.ok(narrow.endsWith('…'));
  });
});
