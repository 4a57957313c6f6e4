// The embedded containerd's restart wait: doubling for deaths in a row, back to the shortest after a
// healthy stretch (before, every death in crispd's lifetime counted, so the 7th waited 30 s).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RestartBackoff } from '../../backend/containerd/restart-backoff.js';

test('deaths in a row double the wait up to the cap', () => {
  const b = new RestartBackoff();
  const waits = Array.from({ length: 9 }, (_, i) => b.next(1000 + i * 1000));
  assert.deepEqual(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test('a death after a healthy stretch starts over at the shortest wait', () => {
  const b = new RestartBackoff();
  let now = 0;
  for (let i = 0; i < 6; i++) b.next((now += 1000));
  assert.equal(b.next((now += 61_000)), 500);
  assert.equal(b.next((now += 1000)), 1000, 'and doubles again if it keeps dying');
});
