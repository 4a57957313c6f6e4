// End-to-end self-test of the NRI transport over a real unix socket: a fake plugin and a fake
// runtime, each with a mux, a ttrpc server and a ttrpc client, exchanging real NRI messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { Mux, PLUGIN_SERVICE_CONN, RUNTIME_SERVICE_CONN } from '../../nri/transport/mux.js';
import { TtrpcClient, TtrpcServer, isTtrpcError } from '../../nri/transport/ttrpc.js';
import { TypedTtrpcClient, registerTtrpcService } from '../../nri/transport/typed-ttrpc.js';
import {
  Event,
  PluginName,
  RuntimeName,
  type Container,
  type PluginMethods,
  type PodSandbox,
  type RegisterPluginRequest,
  type RuntimeMethods,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import type { Input } from '../../common/proto-registry.js';

const eventBit = (e: Event) => 1 << (e - 1);

/**
 * Checks the bytes one side sent against what a Go peer can read (fact sheet §3a): every mux frame
 * that starts a ttrpc message is at most 4096 bytes, and no frame carries bytes of two messages.
 * Returns how many ttrpc messages were seen per conn id.
 */
function checkGoPeerFraming(trunkBytes: Buffer): Map<number, number> {
  const remaining = new Map<number, number>();
  const messages = new Map<number, number>();
  for (let off = 0; off < trunkBytes.length; ) {
    const connId = trunkBytes.readUInt32BE(off);
    const len = trunkBytes.readUInt32BE(off + 4);
    const payload = trunkBytes.subarray(off + 8, off + 8 + len);
    off += 8 + len;
    let left = remaining.get(connId) ?? 0;
    if (left === 0) {
      assert.ok(len <= 4096, `conn ${connId}: frame starting a message is ${len} bytes`);
      left = 10 + payload.readUInt32BE(0);
      messages.set(connId, (messages.get(connId) ?? 0) + 1);
    }
    assert.ok(len <= left, `conn ${connId}: frame of ${len} bytes runs past the message end (${left} left)`);
    remaining.set(connId, left - len);
  }
  for (const [connId, left] of remaining) assert.equal(left, 0, `conn ${connId}: truncated message`);
  return messages;
}

test('NRI self-test: register, configure, synchronize, create, fallback, unsolicited update, hang-up', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-nri-'));
  const sockPath = join(dir, 'nri.sock');
  t.after(() => rmSync(dir, { recursive: true, force: true }));

  // ---- runtime side ----
  let registered!: (req: RegisterPluginRequest) => void;
  const registration = new Promise<RegisterPluginRequest>((r) => (registered = r));
  let unsolicited: string[] = [];
  const fromPlugin: Buffer[] = [];
  const fromRuntime: Buffer[] = [];
  const runtimeReady = new Promise<{ mux: Mux; plugin: TypedTtrpcClient<PluginMethods> }>((resolve) => {
    const server = net.createServer((sock) => {
      // A failed assertion must not leave the connection open: the test file would never exit.
      t.after(() => sock.destroy());
      sock.on('data', (b: Buffer) => fromPlugin.push(b));
      const mux = new Mux(sock, { name: 'runtime<-plugin' });
      const rtServer = new TtrpcServer(mux.open(RUNTIME_SERVICE_CONN), { name: 'runtime Runtime server' });
      registerTtrpcService<RuntimeMethods>(rtServer, RuntimeName, {
        RegisterPlugin: async (req) => {
          if (!/^[0-9]{2}$/.test(req.pluginIdx)) throw new Error(`invalid plugin index "${req.pluginIdx}"`);
          registered(req);
          return {};
        },
        UpdateContainers: async (req) => {
          unsolicited = req.update.map((u) => u.containerId);
          return { failed: [] };
        },
      });
      const plugin = new TypedTtrpcClient<PluginMethods>(
        new TtrpcClient(mux.open(PLUGIN_SERVICE_CONN), { name: 'runtime Plugin client' }),
        PluginName,
      );
      resolve({ mux, plugin });
    });
    server.listen(sockPath);
    t.after(() => server.close());
  });

  // ---- plugin side ----
  const sock = net.connect(sockPath);
  t.after(() => sock.destroy());
  await new Promise<void>((r, j) => sock.once('connect', r).once('error', j));
  sock.on('data', (b: Buffer) => fromRuntime.push(b));
  const pmux = new Mux(sock, { name: 'plugin->runtime' });
  const pluginServer = new TtrpcServer(pmux.open(PLUGIN_SERVICE_CONN), { name: 'plugin Plugin server' });
  const runtimeApi = new TypedTtrpcClient<RuntimeMethods>(
    new TtrpcClient(pmux.open(RUNTIME_SERVICE_CONN), { name: 'plugin Runtime client' }),
    RuntimeName,
  );
  let configuredWith = '';
  let synced = { pods: 0, containers: 0 };
  const stateChanges: number[] = [];
  registerTtrpcService<PluginMethods>(pluginServer, PluginName, {
    Configure: async (req) => {
      configuredWith = `${req.runtimeName} ${req.runtimeVersion} ${req.NRIVersion} ${req.requestTimeout}`;
      return { events: eventBit(Event.CREATE_CONTAINER) | eventBit(Event.RUN_POD_SANDBOX) };
    },
    Synchronize: async (req) => {
      synced = { pods: req.pods.length, containers: req.containers.length };
      return { update: [{ containerId: req.containers[0]!.id, linux: { resources: { cpu: { shares: { value: 512 } } } } }] };
    },
    CreateContainer: async (req) => ({
      adjust: {
        annotations: { 'seen-by': 'plugin', '-removed': '' },
        env: [{ key: 'FROM_PLUGIN', value: req.container!.name }],
        linux: { oomScoreAdj: { value: 0 }, resources: { memory: { limit: { value: 1 << 30 } } } },
      },
    }),
    // No RunPodSandbox handler, like a v0.6 plugin: the runtime must fall back to StateChange.
    StateChange: async (req) => {
      stateChanges.push(req.event);
      return {};
    },
    StopContainer: () => new Promise(() => {}),
  });

  // 1. Registration: plugin -> runtime on conn 2.
  const { mux: rmux, plugin } = await runtimeReady;
  await runtimeApi.call('RegisterPlugin', { pluginName: 'selftest', pluginIdx: '42', NRIVersion: 'v0.12.2' }, 5000);
  assert.deepEqual(await registration, { pluginName: 'selftest', pluginIdx: '42', NRIVersion: 'v0.12.2' });
  await assert.rejects(runtimeApi.call('RegisterPlugin', { pluginName: 'bad', pluginIdx: '7' }, 5000), {
    failure: 'status',
    code: 2,
    details: 'invalid plugin index "7"',
  });

  // 2. Configure: runtime -> plugin on conn 1.
  const conf = await plugin.call(
    'Configure',
    { config: '', runtimeName: 'crisp', runtimeVersion: '0.1.0', registrationTimeout: 5000, requestTimeout: 2000, NRIVersion: 'v0.12.2' },
    2000,
  );
  assert.equal(conf.events, 0x9);
  assert.equal(configuredWith, 'crisp 0.1.0 v0.12.2 2000');

  // 3. Synchronize with enough state (over 1 MB) to cross many socket reads and the 4096-byte first frame.
  const pods: Input<PodSandbox>[] = Array.from({ length: 500 }, (_, i) => ({
    id: `pod-${i}`,
    name: `pod-${i}`,
    namespace: 'default',
    uid: `uid-${i}`,
    labels: { app: 'x'.repeat(200) },
    linux: { cgroupParent: `/kubepods/pod-${i}` },
  }));
  const containers: Input<Container>[] = Array.from({ length: 2000 }, (_, i) => ({
    id: `ctr-${i}`,
    podSandboxId: `pod-${i % 500}`,
    name: `c${i}`,
    state: 3,
    args: ['/bin/sh', '-c', 'y'.repeat(500)],
    env: ['A=1', 'B=2'],
    createdAt: 1_700_000_000_123_456, // ns timestamps above 2^53 lose precision as numbers
  }));
  const sync = await plugin.call('Synchronize', { pods, containers }, 2000);
  assert.deepEqual(synced, { pods: 500, containers: 2000 });
  assert.equal(sync.update[0]?.containerId, 'ctr-0');
  assert.equal(sync.update[0]?.linux?.resources?.cpu?.shares?.value, 512);

  // 4. CreateContainer: presence of an OptionalInt with value 0 survives the trip.
  const created = await plugin.call('CreateContainer', { pod: pods[0], container: containers[0] }, 2000);
  assert.deepEqual(created.adjust?.annotations, { 'seen-by': 'plugin', '-removed': '' });
  assert.deepEqual(created.adjust?.env, [{ key: 'FROM_PLUGIN', value: 'c0' }]);
  assert.deepEqual(created.adjust?.linux?.oomScoreAdj, { value: 0 });
  assert.equal(created.adjust?.linux?.resources?.memory?.limit?.value, 1 << 30);
  assert.equal(created.adjust?.linux?.cgroupsPath, '');
  assert.equal(created.adjust?.linux?.ioPriority, null);

  // 5. Dedicated RPC unimplemented -> StateChange fallback.
  await assert.rejects(plugin.call('RunPodSandbox', { pod: pods[1] }, 2000), (e: unknown) => {
    assert.ok(isTtrpcError(e, 'status'));
    assert.equal(e.code, 12);
    assert.equal(e.details, 'method RunPodSandbox');
    return true;
  });
  await plugin.call('StateChange', { event: Event.RUN_POD_SANDBOX, pod: pods[1] }, 2000);
  assert.deepEqual(stateChanges, [Event.RUN_POD_SANDBOX]);

  // 6. Unsolicited update from the plugin while a runtime call is in flight on the other conn.
  const hanging = plugin.call('StopContainer', { pod: pods[0], container: containers[0] }, 0);
  const upd = await runtimeApi.call('UpdateContainers', { update: [{ containerId: 'ctr-7' }] }, 2000);
  assert.deepEqual(upd.failed, []);
  assert.deepEqual(unsolicited, ['ctr-7']);

  // 7. The plugin hangs up: the runtime's pending call fails as a closed connection.
  const runtimeClosed = new Promise<Error | undefined>((r) => rmux.onClose(r));
  pmux.close();
  await assert.rejects(hanging, (e: unknown) => {
    assert.ok(isTtrpcError(e, 'closed'));
    assert.match(e.message, /runtime Plugin client: \/nri\.pkg\.api\.v1alpha1\.Plugin\/StopContainer: connection closed: runtime<-plugin:/);
    return true;
  });
  assert.match((await runtimeClosed)?.message ?? '', /runtime<-plugin: (peer closed the connection|connection closed)/);
  assert.equal(rmux.droppedFrames, 0);

  // Everything both sides wrote is readable by a Go peer.
  const runtimeSent = checkGoPeerFraming(Buffer.concat(fromRuntime));
  const pluginSent = checkGoPeerFraming(Buffer.concat(fromPlugin));
  assert.equal(runtimeSent.get(PLUGIN_SERVICE_CONN), 6, 'requests on conn 1');
  assert.equal(runtimeSent.get(RUNTIME_SERVICE_CONN), 3, 'responses on conn 2');
  assert.equal(pluginSent.get(RUNTIME_SERVICE_CONN), 3, 'requests on conn 2');
  assert.equal(pluginSent.get(PLUGIN_SERVICE_CONN), 5, 'responses on conn 1 (StopContainer never answered)');
  assert.ok(Buffer.concat(fromRuntime).length > 1_000_000);
});
