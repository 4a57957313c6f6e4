// The SDK's opt-in reconnect: a plugin whose runtime goes away keeps dialing with backoff, registers
// with the next runtime on the same socket and gets its Synchronize; without the option, or after
// stop(), it closes for good.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NriHost } from '../../nri/host/index.js';
import type { PodSandbox } from '../../nri/plugin/index.js';
import { FakeAccess, fakePod, testLogger } from '../e2e/fixtures/nri-plugins/fake-runtime.js';
import { startHost, waitFor } from '../e2e/fixtures/nri-plugins/harness.js';

test('with reconnect, a plugin registers again with a restarted runtime and resynchronizes', async (t) => {
  const first = await startHost(t);
  first.access.addPod(fakePod('before'));
  const syncs: string[][] = [];
  const events: string[] = [];
  let closed = 0;
  const plugin = await first.connect({
    name: 'sticky',
    index: '10',
    reconnect: { initialMs: 20, maxMs: 200 },
    onSynchronize: (pods: PodSandbox[]) => void syncs.push(pods.map((p) => p.name)),
    onRunPodSandbox: (pod) => void events.push(`run ${pod.name}`),
    onDisconnect: () => void events.push('disconnected'),
    onReconnect: () => void events.push('reconnected'),
    onClose: () => void closed++,
  });
  assert.deepEqual(syncs, [['before']]);
  await first.host.stop();
  await waitFor('disconnect noticed', () => events.includes('disconnected'));
  // The socket is gone for a while: the plugin keeps trying (several refused dials) meanwhile.
  await new Promise((r) => setTimeout(r, 150));

  const access = new FakeAccess();
  access.addPod(fakePod('after-1'));
  access.addPod(fakePod('after-2'));
  const second = new NriHost({ access, logger: testLogger().logger, runtimeVersion: '0.0.0-test', socketPath: first.socketPath, pluginDir: first.pluginDir, pluginConfigDir: first.configDir });
  t.after(() => second.stop());
  await second.start();
  await waitFor('resynchronized', () => syncs.length === 2, 5000);
  assert.deepEqual(syncs[1]!.sort(), ['after-1', 'after-2']);
  await waitFor('ready on the new runtime', () => second.plugins().some((p) => p.name === 'sticky' && p.health === 'ready'));
  assert.ok(events.includes('reconnected'));
  // Events of the new runtime reach it.
  await second.runPodSandbox(access.addPod(fakePod('later')));
  assert.ok(events.includes('run later'));
  assert.equal(closed, 0, 'a reconnecting plugin is not closed by a lost connection');

  plugin.stop();
  assert.ok((await plugin.closed) instanceof Error);
  assert.equal(closed, 1);
  await waitFor('gone from the runtime', () => !second.plugins().some((p) => p.name === 'sticky'));
});

test('without reconnect a lost runtime closes the plugin once; stop() during retries ends them', async (t) => {
  const h = await startHost(t);
  let closes = 0;
  await h.connect({ name: 'oneshot', index: '20', onClose: () => void closes++ });
  const retrying = await h.connect({ name: 'retrier', index: '30', reconnect: { initialMs: 10, maxMs: 20 } });
  await h.host.stop();
  await waitFor('closed', () => closes === 1);
  // The socket stays gone: retrier keeps failing to dial until stopped.
  await new Promise((r) => setTimeout(r, 100));
  retrying.stop();
  const reason = await retrying.closed;
  assert.match(reason.message, /stopped|closed/);
  assert.equal(closes, 1);
});
