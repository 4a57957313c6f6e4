// The NRI host's runtime view forgets what it keeps beyond crisp's store (removed ids, records seen in
// events, cached specs) a minute after the last touch, also when no plugin ever connects: before, only a
// plugin's Synchronize pruned it, so a node without NRI plugins kept three ids per pod cycle forever.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RuntimeView } from '../../nri/host/runtime-view.js';
import { createLogger } from '../../common/logger.js';
import { FakeAccess, fakeContainer, fakePod, fakeSpec } from '../e2e/fixtures/nri-plugins/fake-runtime.js';

const MINUTE = 60_000;

function setup() {
  let now = 1_000_000;
  const access = new FakeAccess();
  const view = new RuntimeView(access, createLogger('silent'), () => now);
  return { access, view, advance: (ms: number) => (now += ms) };
}

/** One pod's life as the host sees it: run, a container created and removed, the pod removed. */
function podCycle(view: RuntimeView, name: string) {
  const pod = fakePod(name);
  const ctr = fakeContainer(pod, 'app');
  view.notePod(pod);
  view.noteContainer(ctr, fakeSpec(ctr, pod));
  view.forgetContainer(ctr.id);
  view.forgetPod(pod.id);
  return { pod, ctr };
}

test('removed pods and containers are forgotten a minute later without any Synchronize', () => {
  const { view, advance } = setup();
  for (let i = 0; i < 500; i++) {
    podCycle(view, `p${i}`);
    advance(1_000);
  }
  // 500 s of cycles, one per second: only the last minute's ids (2 per cycle) are held.
  assert.ok(view.held() <= 2 * 61, `held ${view.held()} entries`);
  advance(MINUTE + 1);
  podCycle(view, 'last');
  assert.equal(view.held(), 2);
});

test('a removed object crisp still lists stays hidden for the minute, then shows again', async () => {
  const { access, view, advance } = setup();
  const pod = access.addPod(fakePod('slow-delete'));
  view.forgetPod(pod.id);
  assert.deepEqual((await view.snapshot()).pods, []);
  advance(MINUTE - 1);
  assert.deepEqual((await view.snapshot()).pods, []);
  advance(2);
  assert.deepEqual((await view.snapshot()).pods.map((p) => p.id), [pod.id]);
});

test('a record seen in an event but never stored is listed for the minute, then dropped with its spec', async () => {
  const { access, view, advance } = setup();
  const pod = access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'half-created');
  view.noteContainer(ctr, fakeSpec(ctr, pod));
  assert.deepEqual((await view.snapshot()).containers.map((c) => c.rec.id), [ctr.id]);
  advance(MINUTE + 1);
  view.notePod(pod);
  // Only the pod's fresh entry is left: the container, and the spec cached with it, are gone.
  assert.equal(view.held(), 1);
  assert.deepEqual((await view.snapshot()).containers, []);
});

test('touching an entry again keeps it, and does not keep older ones alive behind it', () => {
  const { view, advance } = setup();
  const pod = fakePod('long-lived');
  view.notePod(pod);
  podCycle(view, 'short');
  for (let i = 0; i < 5; i++) {
    advance(30_000);
    view.notePod(pod);
  }
  // The long-lived pod was touched every 30 s; the short-lived pod's and container's ids expired.
  assert.equal(view.held(), 1);
});
