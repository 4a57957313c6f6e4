import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TerminalSizes, type TerminalSize } from '../../sandbox/containers/stream-io.js';

/** A resize target whose calls stay in flight until released, recording the order they were made in. */
function slowTarget() {
  const calls: string[] = [];
  const pending: (() => void)[] = [];
  const apply = (s: TerminalSize) => {
    calls.push(`${s.width}x${s.height}`);
    return new Promise<void>((resolve) => pending.push(resolve));
  };
  const releaseAll = async () => {
    while (pending.length > 0) {
      pending.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { calls, pending, apply, releaseAll };
}

test('follow: one resize in flight; sizes arriving meanwhile collapse to the newest, applied last', async () => {
  const sizes = new TerminalSizes();
  const t = slowTarget();
  sizes.follow(t.apply);
  sizes.push({ width: 80, height: 24 });
  sizes.push({ width: 100, height: 30 });
  sizes.push({ width: 200, height: 50 });
  assert.deepEqual(t.calls, ['80x24'], 'the later sizes wait for the call in flight');
  await t.releaseAll();
  assert.deepEqual(t.calls, ['80x24', '200x50'], 'the stale 100x30 is never sent after the newer size');
});

test('follow: the size the process started with and repeats of the last size are not re-sent', async () => {
  const sizes = new TerminalSizes();
  sizes.push({ width: 100, height: 30 });
  const t = slowTarget();
  sizes.follow(t.apply, { width: 100, height: 30 });
  assert.deepEqual(t.calls, [], 'the start size is already in effect');
  sizes.push({ width: 200, height: 50 });
  await t.releaseAll();
  sizes.push({ width: 200, height: 50 });
  await t.releaseAll();
  assert.deepEqual(t.calls, ['200x50']);
});

test('follow: the latest size known at subscription is applied; unsubscribing stops later ones', async () => {
  const sizes = new TerminalSizes();
  sizes.push({ width: 90, height: 20 });
  const t = slowTarget();
  const off = sizes.follow(t.apply);
  await t.releaseAll();
  off();
  sizes.push({ width: 120, height: 40 });
  await t.releaseAll();
  assert.deepEqual(t.calls, ['90x20']);
});
