// cri/runtime/status.ts: the non-verbose answer's encoding is reused only while the conditions and
// handlers it was made from hold the same values; any change shows in the next answer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { codecFor } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import type { StatusResponse } from '../../gen/runtime.v1.js';
import type { Condition, HandlerFeatures, NodeStatus } from '../../sandbox/node-status.js';
import { statusHandler } from '../../cri/runtime/status.js';

const codec = codecFor<StatusResponse>('runtime.v1.StatusResponse');

function fakeNode() {
  const state = {
    runtime: { ready: true, reason: '', message: '' } as Condition,
    network: { ready: false, reason: 'NetworkPluginNotReady', message: 'no CNI config' } as Condition,
    handlers: [{ name: '', recursiveReadOnlyMounts: true, userNamespaces: false }] as HandlerFeatures[],
  };
  // Fresh objects on every read, as crispd's network condition and handler list are.
  const node = {
    runtimeCondition: async () => ({ ...state.runtime }),
    networkCondition: async () => ({ ...state.network }),
    handlers: () => state.handlers.map((h) => ({ ...h })),
    info: async () => ({ cgroupDriver: 'systemd' }),
  } as unknown as NodeStatus;
  return { state, node, status: statusHandler(node) };
}

async function decoded(status: ReturnType<typeof statusHandler>, verbose = false): Promise<StatusResponse> {
  const res = await status({ verbose });
  return res instanceof Encoded ? codec.decode(res.bytes) : codec.normalize(res);
}

test('Status reuses its encoding while nothing changed, and answers a change at once', async () => {
  const { state, status } = fakeNode();
  const first = await status({ verbose: false });
  assert.equal(await status({ verbose: false }), first, 'same values: the same encoded answer');
  let res = await decoded(status);
  assert.deepEqual(
    res.status!.conditions.map((c) => [c.type, c.status, c.reason]),
    [
      ['RuntimeReady', true, ''],
      ['NetworkReady', false, 'NetworkPluginNotReady'],
    ],
  );
  state.network = { ready: true, reason: '', message: '' };
  res = await decoded(status);
  assert.equal(res.status!.conditions[1]!.status, true);
  state.runtime = { ready: false, reason: 'ContainerdUnavailable', message: 'connection refused' };
  res = await decoded(status);
  assert.deepEqual([res.status!.conditions[0]!.status, res.status!.conditions[0]!.message], [false, 'connection refused']);
  state.handlers = [...state.handlers, { name: 'runc', recursiveReadOnlyMounts: true, userNamespaces: true }];
  res = await decoded(status);
  assert.deepEqual(
    res.runtimeHandlers.map((h) => [h.name, h.features!.userNamespaces]),
    [
      ['', false],
      ['runc', true],
    ],
  );
  assert.equal(res.features!.supplementalGroupsPolicy, true);
});

test('verbose Status carries the config and is never the cached answer', async () => {
  const { status } = fakeNode();
  await status({ verbose: false });
  const res = await decoded(status, true);
  assert.deepEqual(JSON.parse(res.info.config!), { cgroupDriver: 'systemd' });
  assert.deepEqual((await decoded(status)).info, {});
});
