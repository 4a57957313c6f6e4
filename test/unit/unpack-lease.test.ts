// A pull that finds a layer's snapshot committed already (left by an earlier, failed pull) takes it into
// its own lease before it looks: unreferenced, GC could remove it before the layer above is prepared on it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Unpacker } from '../../backend/images/unpack.js';
import type { ContainerdClient } from '../../backend/containerd/client.js';

function fakeContainerd(calls: string[], statFound: boolean): ContainerdClient {
  const service = (name: string) => ({
    unary: (method: string, req: { id?: string; key?: string; resource?: { id: string; type: string } }) => {
      calls.push(`${name}.${method} ${req.resource ? `${req.id} ${req.resource.type} ${req.resource.id}` : (req.key ?? '')}`);
      if (name === 'snapshots' && method === 'Stat' && !statFound) return Promise.reject(Object.assign(new Error('5 NOT_FOUND: no snapshot'), { code: 5, details: 'no snapshot' }));
      return Promise.resolve({});
    },
  });
  return { leases: service('leases'), snapshots: service('snapshots') } as unknown as ContainerdClient;
}

test('exists: the snapshot joins the pull lease before it is looked at', async () => {
  const calls: string[] = [];
  const unpacker = new Unpacker(fakeContainerd(calls, true), 'overlayfs');
  assert.equal(await unpacker.exists('sha256:chain', {}, 'crisp-pull-1'), true);
  assert.deepEqual(calls, ['leases.AddResource crisp-pull-1 snapshots/overlayfs sha256:chain', 'snapshots.Stat sha256:chain']);
});

test('exists without a lease only looks; a missing snapshot is false', async () => {
  const calls: string[] = [];
  const unpacker = new Unpacker(fakeContainerd(calls, false), 'overlayfs');
  assert.equal(await unpacker.exists('sha256:chain'), false);
  assert.deepEqual(calls, ['snapshots.Stat sha256:chain']);
});
