// Synchronize: the snapshot a connecting plugin gets (including objects crisp has not stored yet and
// without ones already removed), splitting a large state into parts with more=true, refusing a
// plugin that cannot take a split, and the events raised while a plugin synchronizes reaching it
// afterwards, in order.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from '../../nri/transport/mux.js';
import { TtrpcClient, TtrpcServer } from '../../nri/transport/ttrpc.js';
import { TypedTtrpcClient, registerTtrpcService } from '../../nri/transport/typed-ttrpc.js';
import { PluginName, RuntimeName, type PluginMethods, type RuntimeMethods } from '../../gen/nri.pkg.api.v1alpha1.js';
import { splitSyncState } from '../../nri/host/sync.js';
import { FakeAccess, fakeContainer, fakePod, fakeSpec } from '../e2e/fixtures/nri-plugins/fake-runtime.js';
import { startHost, waitFor } from '../e2e/fixtures/nri-plugins/harness.js';

function bigState(access: FakeAccess, pods: number, perPod: number): void {
  for (let i = 0; i < pods; i++) {
    const pod = access.addPod(fakePod(`p${i}`, {}));
    pod.spec.annotations = { blob: 'x'.repeat(2000) };
    for (let j = 0; j < perPod; j++) {
      const c = fakeContainer(pod, `c${j}`);
      c.spec.annotations = { blob: 'y'.repeat(2000) };
      access.addContainer(c, fakeSpec(c, pod));
    }
  }
}

test('splitSyncState packs pods first and never exceeds the part size', () => {
  const pods = Array.from({ length: 10 }, (_, i) => ({ id: `p${i}`, annotations: { a: 'x'.repeat(100) } }));
  const containers = Array.from({ length: 30 }, (_, i) => ({ id: `c${i}`, podSandboxId: 'p0', args: ['y'.repeat(100)] }));
  const parts = splitSyncState(pods, containers, 1000);
  assert.ok(parts.length > 3);
  assert.deepEqual(parts.flatMap((p) => p.pods.map((x) => x.id)), pods.map((p) => p.id));
  assert.deepEqual(parts.flatMap((p) => p.containers.map((x) => x.id)), containers.map((c) => c.id));
  assert.equal(splitSyncState(pods, containers).length, 1);
  assert.throws(() => splitSyncState([{ id: 'huge', annotations: { a: 'z'.repeat(2000) } }], [], 1000), /pod huge needs \d+ bytes/);
});

test('a state over 1 MB is split with more=true and reassembled by the SDK; its updates are applied', async (t) => {
  const access = new FakeAccess();
  bigState(access, 40, 15);
  const { log, connect } = await startHost(t, { syncPartBytes: 256 * 1024, requestTimeoutMs: 10_000 }, { access });
  let got = { pods: 0, containers: 0, blobOk: false };
  const target = access.containers()[7]!;
  await connect({
    name: 'sync',
    index: '10',
    onSynchronize: (pods, containers) => {
      got = { pods: pods.length, containers: containers.length, blobOk: containers.every((c) => c.annotations.blob?.length === 2000) };
      return [{ containerId: target.id, linux: { resources: { cpu: { cpus: '2-3' } } } }];
    },
    onStartContainer: () => undefined,
  });
  assert.deepEqual(got, { pods: 40, containers: 600, blobOk: true });
  const synced = log.find(/NRI plugin synchronized/)[0]!;
  assert.ok((synced.parts as number) >= 5, `split into ${String(synced.parts)} parts`);
  assert.equal(access.updates.length, 1);
  assert.equal(access.updates[0]!.id, target.id);
  assert.equal((access.updates[0]!.resources as { cpu: { cpus: string } }).cpu.cpus, '2-3');
});

test('a plugin that cannot take a split Synchronize is disconnected with the reason', async (t) => {
  const access = new FakeAccess();
  bigState(access, 10, 10);
  const { host, log, socketPath } = await startHost(t, { syncPartBytes: 64 * 1024, requestTimeoutMs: 10_000 }, { access });
  // A pre-v0.7 style plugin: answers every Synchronize part as if it were the whole state.
  const sock = net.connect(socketPath);
  await new Promise<void>((r) => sock.once('connect', r));
  const mux = new Mux(sock, { name: 'old plugin' });
  t.after(() => mux.close());
  const server = new TtrpcServer(mux.open(PLUGIN_SERVICE_CONN));
  const runtime = new TypedTtrpcClient<RuntimeMethods>(new TtrpcClient(mux.open(RUNTIME_SERVICE_CONN)), RuntimeName);
  let parts = 0;
  registerTtrpcService<PluginMethods>(server, PluginName, {
    Configure: async () => ({ events: 0x1 }),
    Synchronize: async () => {
      parts++;
      return { update: [] };
    },
  });
  await runtime.call('RegisterPlugin', { pluginName: 'oldsync', pluginIdx: '40' }, 2000);
  const closed = new Promise<void>((r) => mux.onClose(() => r()));
  await closed;
  assert.equal(parts, 1);
  await waitFor('failure logged', () => log.find(/disconnected/).length > 0);
  assert.match(String(log.find(/disconnected/)[0]!.reason), /plugin does not handle split sync requests/);
  assert.deepEqual(
    host.plugins().map((p) => [`${p.index}-${p.name}`, p.health, p.failures]),
    [['40-oldsync', 'closed', 1]],
  );
});

test('a plugin connecting while pods and containers come and go misses nothing and sees nothing twice', async (t) => {
  const access = new FakeAccess();
  const stored = access.addPod(fakePod('stored'));
  const { host, connect, waitHealth } = await startHost(t, { requestTimeoutMs: 2000 }, { access });

  // In flight: the RunPodSandbox event happened, crisp has not saved the pod yet.
  const inflight = fakePod('inflight');
  await host.runPodSandbox(inflight);
  // Removed: the event happened, crisp still lists it for a moment.
  const leaving = access.addPod(fakePod('leaving'));
  await host.removePodSandbox(leaving);

  const seen: string[] = [];
  let releaseSync!: () => void;
  const syncGate = new Promise<void>((r) => (releaseSync = r));
  const plugin = await connect(
    {
      name: 'late',
      index: '50',
      onSynchronize: async (pods) => {
        seen.push(`sync ${pods.map((p) => p.name).sort().join(',')}`);
        await syncGate;
      },
      onRunPodSandbox: (pod) => void seen.push(`RunPodSandbox ${pod.name}`),
      onCreateContainer: (_pod, c) => {
        seen.push(`CreateContainer ${c.name}`);
        return { annotations: { late: 'adjusted' } };
      },
      onStartContainer: (_pod, c) => void seen.push(`StartContainer ${c.name}`),
    },
    { ready: false },
  );
  await waitHealth('50-late', 'synchronizing');
  await waitFor('plugin in Synchronize', () => seen.length === 1);

  // A notification during the sync is not held up: it waits in the plugin's backlog.
  const during = access.addPod(fakePod('during'));
  await host.runPodSandbox(during);
  // A CreateContainer during the sync waits (bounded) so the plugin can adjust it.
  const ctr = fakeContainer(during, 'app');
  const creating = host.createContainer(during, ctr, fakeSpec(ctr, during));
  await new Promise((r) => setTimeout(r, 100));
  releaseSync();
  const spec = await creating;
  access.addContainer(ctr, spec);
  await host.startContainer(during, ctr);

  await plugin.ready;
  assert.deepEqual(seen, ['sync inflight,stored', 'RunPodSandbox during', 'CreateContainer app', 'StartContainer app']);
  assert.equal((spec.annotations as Record<string, string>).late, 'adjusted');
  void stored;
});

test('a Synchronize held longer than the request timeout (critest holds it 2 s) keeps the plugin; containers created meanwhile reach it once', async (t) => {
  const access = new FakeAccess();
  const pod = access.addPod(fakePod('pod'));
  const before = fakeContainer(pod, 'before');
  access.addContainer(before, fakeSpec(before, pod));
  const { host, connect, waitHealth } = await startHost(t, { requestTimeoutMs: 500, registrationTimeoutMs: 5000 }, { access });
  const synced: string[] = [];
  const created: string[] = [];
  let releaseSync!: () => void;
  const syncGate = new Promise<void>((r) => (releaseSync = r));
  const plugin = await connect(
    {
      name: 'slow-sync',
      index: '10',
      onSynchronize: async (_pods, containers) => {
        synced.push(...containers.map((c) => c.name));
        await syncGate;
      },
      onCreateContainer: (_pod, c) => {
        created.push(c.name);
        return {};
      },
    },
    { ready: false },
  );
  await waitHealth('10-slow-sync', 'synchronizing');
  const during = [0, 1, 2].map((i) => fakeContainer(pod, `during-${i}`));
  const creating = during.map((c) => host.createContainer(pod, c, fakeSpec(c, pod)));
  // Held for more than the request timeout, less than the registration timeout.
  await new Promise((r) => setTimeout(r, 1200));
  releaseSync();
  for (const [i, p] of creating.entries()) access.addContainer(during[i]!, await p);
  await plugin.ready;
  const after = fakeContainer(pod, 'after');
  await host.createContainer(pod, after, fakeSpec(after, pod));
  assert.deepEqual(synced, ['before']);
  assert.deepEqual(created.sort(), ['after', 'during-0', 'during-1', 'during-2']);
  assert.equal(host.plugins().find((p) => p.name === 'slow-sync')?.health, 'ready');
});
