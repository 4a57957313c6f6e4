// UpdatePodSandbox / PostUpdatePodSandbox through the NRI host with in-process SDK plugins: the
// request carries the new resources while the pod still shows the old ones, a plugin error fails the
// update (later plugins are not asked), old plugins get only the notification, through StateChange.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import { Event, type LinuxResources, type PodSandbox } from '../../nri/plugin/index.js';
import { criResourcesToNri } from '../../nri/host/messages.js';
import { fakePod, fakeResources } from '../e2e/fixtures/nri-plugins/fake-runtime.js';
import { startHost } from '../e2e/fixtures/nri-plugins/harness.js';

const resources = fakeResources;

test('criResourcesToNri leaves out what CRI leaves unset (zero or empty)', () => {
  assert.deepEqual(criResourcesToNri(resources({})), {});
  assert.deepEqual(
    criResourcesToNri(resources({ cpuShares: 512, cpuQuota: -1, cpusetCpus: '0-1', memoryLimitInBytes: 1 << 20, hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }], unified: { 'memory.high': '1000000' } })),
    {
      cpu: { shares: { value: 512 }, quota: { value: -1 }, cpus: '0-1' },
      memory: { limit: { value: 1 << 20 } },
      hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }],
      unified: { 'memory.high': '1000000' },
    },
  );
});

test('UpdatePodSandbox carries the new resources, PostUpdatePodSandbox the updated pod, in index order', async (t) => {
  const { host, access, connect } = await startHost(t);
  const pod = access.addPod(fakePod('resize', { spec: { ...fakePod('resize').spec, resources: resources({ cpuShares: 256 }) } }));
  const seen: string[] = [];
  let request: { pod: PodSandbox; overhead: LinuxResources | null; resources: LinuxResources | null } | undefined;
  let after: PodSandbox | undefined;
  for (const [name, index] of [['second', '20'], ['first', '10']] as const) {
    await connect({
      name,
      index,
      onUpdatePodSandbox: (p, overhead, res) => {
        seen.push(`${index}-${name} UpdatePodSandbox`);
        request ??= { pod: p, overhead, resources: res };
      },
      onPostUpdatePodSandbox: (p) => {
        seen.push(`${index}-${name} PostUpdatePodSandbox`);
        after ??= p;
      },
    });
  }
  const update = { overhead: resources({ memoryLimitInBytes: 32 << 20 }), resources: resources({ cpuShares: 512, cpuPeriod: 100_000, cpuQuota: 50_000 }) };
  await host.updatePodSandbox(pod, update);
  // What the pod controller does between the two events.
  pod.spec.overhead = update.overhead;
  pod.spec.resources = update.resources;
  await host.postUpdatePodSandbox(pod);
  assert.deepEqual(seen, ['10-first UpdatePodSandbox', '20-second UpdatePodSandbox', '10-first PostUpdatePodSandbox', '20-second PostUpdatePodSandbox']);
  assert.equal(request!.pod.id, pod.id);
  assert.equal(request!.pod.linux!.podResources!.cpu!.shares!.value, 256, 'the pod still shows its old resources');
  assert.equal(request!.pod.linux!.podOverhead, null);
  assert.equal(request!.resources!.cpu!.shares!.value, 512);
  assert.equal(request!.resources!.cpu!.quota!.value, 50_000);
  assert.equal(request!.overhead!.memory!.limit!.value, 32 << 20);
  assert.equal(after!.linux!.podResources!.cpu!.shares!.value, 512);
  assert.equal(after!.linux!.podOverhead!.memory!.limit!.value, 32 << 20);
});

test('a plugin failing UpdatePodSandbox fails the update naming it; later plugins are not asked', async (t) => {
  const { host, access, connect } = await startHost(t);
  const pod = access.addPod(fakePod('refused'));
  let laterAsked = false;
  await connect({
    name: 'guard',
    index: '10',
    onUpdatePodSandbox: () => {
      throw new Error('too big for this node');
    },
  });
  await connect({ name: 'later', index: '20', onUpdatePodSandbox: () => void (laterAsked = true) });
  await assert.rejects(host.updatePodSandbox(pod, { resources: resources({ cpuShares: 4096 }) }), (err: unknown) => {
    assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
    assert.match(err.message, /NRI UpdatePodSandbox for pod nri-test\/refused/);
    assert.match(err.message, /10-guard failed UpdatePodSandbox: too big for this node/);
    return true;
  });
  assert.equal(laterAsked, false);
});

test('an old plugin gets PostUpdatePodSandbox through StateChange', async (t) => {
  const { host, access, connect } = await startHost(t);
  const pod = access.addPod(fakePod('legacy-resize'));
  const got: string[] = [];
  await connect({
    name: 'old',
    index: '30',
    legacy: true,
    events: ['PostUpdatePodSandbox'],
    onStateChange: (event, p) => void got.push(`${Event[event]} ${p?.name}`),
  });
  await host.updatePodSandbox(pod, { resources: resources({ cpuShares: 2 }) });
  await host.postUpdatePodSandbox(pod);
  assert.deepEqual(got, ['POST_UPDATE_POD_SANDBOX legacy-resize']);
});
