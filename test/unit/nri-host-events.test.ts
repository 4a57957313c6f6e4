// NRI host event delivery with in-process SDK plugins over a temp socket: index order, strict event
// order, each plugin seeing the request as the earlier ones changed it, complete metadata, conflict
// detection naming both plugins, validation, the StateChange fallback and update follow-ups.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCrispError } from '../../common/errors.js';
import { fakeContainer, fakePod, fakeSpec } from '../e2e/fixtures/nri-plugins/fake-runtime.js';
import { startHost } from '../e2e/fixtures/nri-plugins/harness.js';

test('events reach plugins in index order, in event order, with complete metadata', async (t) => {
  const { host, access, connect } = await startHost(t);
  const seen: string[] = [];
  const record = (who: string) => ({
    onRunPodSandbox: (pod: { name: string }) => void seen.push(`${who} RunPodSandbox ${pod.name}`),
    onStopPodSandbox: () => void seen.push(`${who} StopPodSandbox`),
    onRemovePodSandbox: () => void seen.push(`${who} RemovePodSandbox`),
    onPostCreateContainer: () => void seen.push(`${who} PostCreateContainer`),
    onStartContainer: () => void seen.push(`${who} StartContainer`),
    onPostStartContainer: () => void seen.push(`${who} PostStartContainer`),
    onPostUpdateContainer: () => void seen.push(`${who} PostUpdateContainer`),
    onStopContainer: () => void seen.push(`${who} StopContainer`),
    onRemoveContainer: () => void seen.push(`${who} RemoveContainer`),
  });
  let podSeen: unknown;
  let containerSeen: unknown;
  // Connected out of index order on purpose.
  await connect({
    name: 'b',
    index: '20',
    ...record('20-b'),
    onCreateContainer: (_pod, c) => {
      seen.push('20-b CreateContainer');
      // b runs after a and must see a's adjustments in the request.
      assert.ok(c.env.includes('FROM_A=1'), `20-b sees 10-a's env: ${c.env.join(' ')}`);
      assert.equal(c.annotations['a-was-here'], 'yes');
      assert.deepEqual(
        c.mounts.find((m) => m.destination === '/data'),
        { destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] },
      );
      return { env: [{ key: 'FROM_B', value: '2' }] };
    },
    onUpdateContainer: (_pod, c, res) => {
      seen.push('20-b UpdateContainer');
      assert.equal(res?.cpu?.shares?.value, 2048, '20-b sees 10-a update of the target');
      return [{ containerId: c.id, linux: { resources: { memory: { limit: { value: 512 << 20 } } } } }];
    },
  });
  await connect({
    name: 'a',
    index: '10',
    ...record('10-a'),
    onCreateContainer: (pod, c) => {
      seen.push('10-a CreateContainer');
      podSeen = pod;
      containerSeen = c;
      return {
        env: [{ key: 'FROM_A', value: '1' }],
        annotations: { 'a-was-here': 'yes' },
        mounts: [{ destination: '/data', type: 'bind', source: '/srv/data', options: ['rbind'] }],
      };
    },
    onUpdateContainer: (_pod, c) => {
      seen.push('10-a UpdateContainer');
      return [{ containerId: c.id, linux: { resources: { cpu: { shares: { value: 2048 } } } } }];
    },
  });
  await connect({ name: 'c', index: '05', ...record('05-c'), events: ['RunPodSandbox', 'StartContainer', 'RemovePodSandbox'] });

  const pod = access.addPod(fakePod('web'));
  const ctr = fakeContainer(pod, 'app');
  await host.runPodSandbox(pod);
  const spec = await host.createContainer(pod, ctr, fakeSpec(ctr, pod));
  access.addContainer(ctr, spec);
  await host.postCreateContainer(pod, ctr);
  await host.startContainer(pod, ctr);
  ctr.state = 'running';
  ctr.pid = 4242;
  await host.postStartContainer(pod, ctr);
  const res = await host.updateContainer(pod, ctr, { cpu: { shares: 512, quota: 50000 } });
  await host.postUpdateContainer(pod, ctr);
  ctr.state = 'exited';
  await host.stopContainer(pod, ctr);
  await host.removeContainer(pod, ctr);
  await host.stopPodSandbox(pod);
  await host.removePodSandbox(pod);

  assert.deepEqual(seen, [
    '05-c RunPodSandbox web',
    '10-a RunPodSandbox web',
    '20-b RunPodSandbox web',
    '10-a CreateContainer',
    '20-b CreateContainer',
    '10-a PostCreateContainer',
    '20-b PostCreateContainer',
    '05-c StartContainer',
    '10-a StartContainer',
    '20-b StartContainer',
    '10-a PostStartContainer',
    '20-b PostStartContainer',
    '10-a UpdateContainer',
    '20-b UpdateContainer',
    '10-a PostUpdateContainer',
    '20-b PostUpdateContainer',
    '10-a StopContainer',
    '20-b StopContainer',
    '10-a RemoveContainer',
    '20-b RemoveContainer',
    '10-a StopPodSandbox',
    '20-b StopPodSandbox',
    '05-c RemovePodSandbox',
    '10-a RemovePodSandbox',
    '20-b RemovePodSandbox',
  ]);

  // The merged adjustment is in the spec crisp gets back.
  const process = spec.process as { env: string[] };
  assert.deepEqual(process.env, ['PATH=/bin', 'FROM_A=1', 'FROM_B=2']);
  assert.equal((spec.annotations as Record<string, string>)['a-was-here'], 'yes');
  // Both updates of the target apply to what was asked for.
  assert.deepEqual(res, { cpu: { shares: 2048, quota: 50000 }, memory: { limit: 512 << 20 } });

  // Complete metadata, from the records and the spec.
  assert.deepEqual(podSeen, {
    id: pod.id,
    name: 'web',
    uid: 'uid-web',
    namespace: 'nri-test',
    labels: { app: 'web' },
    annotations: { 'pod-note': 'note-web' },
    runtimeHandler: '',
    linux: {
      podOverhead: null,
      podResources: null,
      cgroupParent: '/kubepods/pod-web',
      cgroupsPath: '/kubepods/pod-web',
      namespaces: [
        { type: 'network', path: pod.pins.net },
        { type: 'ipc', path: pod.pins.ipc },
        { type: 'uts', path: pod.pins.uts },
      ],
      resources: null,
    },
    pid: 0,
    ips: ['10.88.0.7'],
  });
  const c = containerSeen as Record<string, unknown> & { linux: Record<string, unknown> };
  assert.equal(c.id, ctr.id);
  assert.equal(c.podSandboxId, pod.id);
  assert.equal(c.name, 'app');
  assert.equal(c.state, 1); // CREATED
  assert.deepEqual(c.args, ['/bin/sh', '-c', 'sleep 1000']);
  assert.deepEqual(c.env, ['PATH=/bin']);
  assert.deepEqual(c.labels, { container: 'app' });
  assert.equal((c.annotations as Record<string, string>)['io.kubernetes.cri.container-name'], 'app');
  assert.deepEqual(c.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }]);
  assert.equal(c.linux.cgroupsPath, ctr.cgroupsPath);
  assert.deepEqual(c.linux.oomScoreAdj, { value: 100 });
  assert.deepEqual(c.linux.namespaces, [
    { type: 'network', path: pod.pins.net },
    { type: 'mount', path: '' },
    { type: 'pid', path: '' },
  ]);
  assert.equal((c.linux.resources as { memory: { limit: { value: number } } }).memory.limit.value, 256 << 20);
  assert.deepEqual(c.image, { name: ctr.imageRef, digest: 'sha256:' + 'd'.repeat(64), configDigest: ctr.imageId });
});

test('two plugins setting the same field fail CreateContainer naming both', async (t) => {
  const { host, access, connect } = await startHost(t);
  await connect({ name: 'ulimit-a', index: '10', onCreateContainer: () => ({ rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }] }) });
  await connect({ name: 'ulimit-b', index: '20', onCreateContainer: () => ({ rlimits: [{ type: 'RLIMIT_NOFILE', hard: 8192, soft: 8192 }] }) });
  const pod = access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'c');
  await assert.rejects(host.createContainer(pod, ctr, fakeSpec(ctr, pod)), (err: unknown) => {
    assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
    assert.match(err.message, /plugins "20-ulimit-b" and "10-ulimit-a" both tried to set Rlimits RLIMIT_NOFILE/);
    return true;
  });
});

test('validators see the merged adjustment and owners, and can reject', async (t) => {
  const { host, access, connect } = await startHost(t);
  let seenOwners: unknown;
  let seenPlugins: unknown;
  await connect({ name: 'mem', index: '10', onCreateContainer: () => ({ linux: { resources: { memory: { limit: { value: 1 << 30 } } } } }) });
  await connect({
    name: 'guard',
    index: '90',
    onValidateContainerAdjustment: (req) => {
      seenOwners = req.owners?.owners[req.container!.id]?.simple;
      seenPlugins = req.plugins;
      const limit = req.adjust?.linux?.resources?.memory?.limit?.value ?? 0;
      return limit > 512 << 20 ? { reject: true, reason: `memory limit ${limit} too high` } : {};
    },
  });
  const pod = access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'c');
  await assert.rejects(host.createContainer(pod, ctr, fakeSpec(ctr, pod)), /validator "90-guard" rejected container adjustment, reason: memory limit 1073741824 too high/);
  assert.deepEqual(seenOwners, { '8': '10-mem' });
  assert.deepEqual(seenPlugins, [
    { name: 'mem', index: '10' },
    { name: 'guard', index: '90' },
  ]);
});

test('a plugin without per-event RPCs gets events through StateChange', async (t) => {
  const { host, access, log, connect } = await startHost(t);
  const got: string[] = [];
  await connect({
    name: 'old',
    index: '30',
    legacy: true,
    onRunPodSandbox: (pod) => void got.push(`run ${pod.name}`),
    onStartContainer: (_p, c) => void got.push(`start ${c.name}`),
    onRemovePodSandbox: (pod) => void got.push(`remove ${pod.name}`),
  });
  const pod = access.addPod(fakePod('legacy'));
  const ctr = access.addContainer(fakeContainer(pod, 'x'));
  await host.runPodSandbox(pod);
  await host.startContainer(pod, ctr);
  await host.removePodSandbox(pod);
  assert.deepEqual(got, ['run legacy', 'start x', 'remove legacy']);
  // One UNIMPLEMENTED is enough: the plugin is switched over once.
  assert.equal(log.find(/predates per-event RPCs/).length, 1);
});

test('a plugin error fails the operation; StopContainer updates and evictions are applied', async (t) => {
  const { host, access, connect } = await startHost(t);
  const pod = access.addPod(fakePod('p'));
  const other = access.addContainer(fakeContainer(pod, 'other'));
  const ctr = access.addContainer(fakeContainer(pod, 'c'));
  const p = await connect({
    name: 'picky',
    index: '50',
    onStartContainer: (_pod, c) => {
      if (c.name === 'c') throw new Error('not today');
    },
    onStopContainer: () => [{ containerId: other.id, linux: { resources: { cpu: { cpus: '0-3' } } } }],
  });
  await assert.rejects(host.startContainer(pod, ctr), (err: unknown) => {
    assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
    assert.match(err.message, /NRI plugin 50-picky failed StartContainer: not today/);
    return true;
  });
  await host.stopContainer(pod, ctr);
  assert.equal(access.updates.length, 1);
  assert.equal(access.updates[0]!.id, other.id);
  assert.deepEqual(access.updates[0]!.resources, { devices: [{ allow: false, access: 'rwm' }], cpu: { shares: 1024, cpus: '0-3' }, memory: { limit: 256 << 20 } });

  // Unsolicited: an update for an unknown container comes back as failed, the eviction goes through.
  const failed = await p.updateContainers(
    [
      { containerId: 'nope', linux: { resources: { cpu: { shares: { value: 2 } } } } },
      { containerId: ctr.id, linux: { resources: { pids: { limit: 99 } } } },
    ],
    [{ containerId: other.id, reason: 'make room' }],
  );
  assert.deepEqual(failed.map((u) => u.containerId), ['nope']);
  assert.equal(access.updates.at(-1)!.id, ctr.id);
  assert.deepEqual((access.updates.at(-1)!.resources as { pids: unknown }).pids, { limit: 99 });
  assert.deepEqual(access.evictions, [{ id: other.id, reason: 'make room' }]);
});

test('UpdateContainer shows plugins the container as it is and what is asked for; later events and Synchronize see both merged', async (t) => {
  // Found with upstream containerd/nri plugins (logger): after `crictl update --cpu-share`, plugins saw
  // only the update's fields as the container's resources (memory limit and quota gone), though the
  // spec and the cgroup kept them.
  const { host, access, connect } = await startHost(t);
  const pod = access.addPod(fakePod('upd'));
  const ctr = access.addContainer(fakeContainer(pod, 'c')); // its spec: cpu shares 1024, memory limit 256 MiB
  type Res = { cpu?: { shares?: { value: unknown }; quota?: { value: unknown } }; memory?: { limit?: { value: unknown } } } | null | undefined;
  const view = (r: Res) => ({ shares: Number(r?.cpu?.shares?.value ?? 0), quota: Number(r?.cpu?.quota?.value ?? 0), memory: Number(r?.memory?.limit?.value ?? 0) });
  let had: Res;
  let asked: Res;
  let after: Res;
  await connect({
    name: 'watch',
    index: '10',
    onUpdateContainer: (_pod, c, res) => {
      had = c.linux?.resources as Res;
      asked = res as Res;
      return [];
    },
    onPostUpdateContainer: (_pod, c) => void (after = c.linux?.resources as Res),
  });
  await host.updateContainer(pod, ctr, { cpu: { quota: 50_000 } });
  await host.postUpdateContainer(pod, ctr);
  assert.deepEqual(view(had), { shares: 1024, quota: 0, memory: 256 << 20 }, 'the container as it was');
  assert.deepEqual(view(asked), { shares: 0, quota: 50_000, memory: 0 }, 'what the update asks for');
  assert.deepEqual(view(after), { shares: 1024, quota: 50_000, memory: 256 << 20 }, 'the container after the update');
  let synced: Res;
  await connect({ name: 'late', index: '20', onSynchronize: (_pods, ctrs) => void (synced = ctrs.find((c) => c.id === ctr.id)?.linux?.resources as Res) });
  assert.deepEqual(view(synced), { shares: 1024, quota: 50_000, memory: 256 << 20 }, 'Synchronize of a plugin that connects afterwards');
});
