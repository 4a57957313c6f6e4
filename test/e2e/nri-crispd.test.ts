// NRI through crispd: a plugin process (the TypeScript SDK) on crispd's NRI socket sees pods and
// containers in order with their metadata, its adjustments reach a running container, a plugin that
// refuses CreateContainer fails the call without leaking, `crisp nri plugins` lists it,
// UpdatePodSandboxResources goes through UpdatePodSandbox / PostUpdatePodSandbox, and
// UpdateContainerResources through UpdateContainer / PostUpdateContainer with the resources merged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { CLI } from './lib/crispd.js';
import { type PluginScript } from './fixtures/nri-plugins/scripted-plugin.js';
import { recordedEvents, startScriptedPlugin } from './fixtures/nri-plugins/scripted-launch.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { status } from '@grpc/grpc-js';
import { nriTestDir } from './lib/nri-dir.js';

let s: Stack;
let socket: string;
let nriDir: string;
const plugins: ChildProcess[] = [];

const startPlugin = (script: PluginScript, name: string) => startScriptedPlugin(script, name, { socket, recordDir: s.d.dir, children: plugins });
const events = recordedEvents;

before(async () => {
  const dir = `/tmp/crisp-e2e-nri-${process.pid}-${Date.now().toString(36)}`;
  nriDir = dir;
  const nri = nriTestDir(dir);
  mkdirSync(join(dir, 'cdi'), { recursive: true });
  writeFileSync(
    join(dir, 'cdi', 'nri-test.json'),
    JSON.stringify({ cdiVersion: '0.6.0', kind: 'crisp.test/nri', devices: [{ name: 'null1', containerEdits: { env: ['FROM_NRI_CDI=1'], deviceNodes: [{ path: '/dev/nri-null', hostPath: '/dev/null' }] } }] }),
  );
  socket = nri.socket;
  s = await startStack({
    ...nri.config,
    cdi_spec_dirs: [join(dir, 'cdi')],
  });
});
after(async () => {
  for (const p of plugins) if (p.exitCode === null) p.kill('SIGKILL');
  const rules = (await s?.teardown()) ?? [];
  rmSync(nriDir, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

test('a plugin sees events in order and its adjustment reaches the running container', async () => {
  const record = await startPlugin(
    { index: '10', adjust: { env: [{ key: 'NRI_INJECTED', value: 'by-plugin' }], annotations: { 'nri.e2e/touched': 'yes' } } },
    'injector',
  );
  const pod = await s.runPod('nri-pod');
  const id = await s.runContainer(pod, 'nri-ctr', ['sleep', '30']);
  const env = (await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd: ['env'], timeout: 10 })).stdout.toString();
  assert.match(env, /^NRI_INJECTED=by-plugin$/m);
  const info = JSON.parse((await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true })).info.info!) as {
    runtimeSpec: { annotations: Record<string, string> };
  };
  assert.equal(info.runtimeSpec.annotations['nri.e2e/touched'], 'yes');
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
  await sleep(300);
  const seen = events(record)
    .filter((e) => e.pod === 'nri-pod')
    .map((e) => e.ev);
  const order = ['RunPodSandbox', 'CreateContainer', 'PostCreateContainer', 'StartContainer', 'PostStartContainer', 'StopContainer', 'StopPodSandbox', 'RemoveContainer', 'RemovePodSandbox'];
  assert.deepEqual(seen.filter((e) => order.includes(e)), order);
  const ls = spawnSync(process.execPath, [CLI, '-e', s.d.endpoint, 'nri', 'plugins'], { encoding: 'utf8' });
  assert.equal(ls.status, 0, ls.stderr);
  assert.match(ls.stdout, /10\s+injector/);
});

test('two plugins setting the same field fail CreateContainer naming both; nothing leaks; a retry works once one is gone', async () => {
  await startPlugin({ index: '30', adjust: { env: [{ key: 'NRI_INJECTED', value: 'by-rival' }] } }, 'rival');
  const rival = plugins[plugins.length - 1]!;
  const pod = await s.runPod('nri-conflict');
  await assert.rejects(
    s.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config: s.containerConfig('contested', ['sleep', '30']) }),
    (err: unknown) => isGrpcError(err) && /injector/.test(err.details) && /rival/.test(err.details),
  );
  const list = await s.d.client.runtime.unary('ListContainers', { filter: { podSandboxId: pod } });
  assert.deepEqual(list.containers, [], 'the failed create left no container');
  rival.kill('SIGKILL');
  await sleep(500);
  const id = await s.runContainer(pod, 'contested', ['sleep', '30']);
  assert.equal((await s.d.client.runtime.unary('ContainerStatus', { containerId: id })).status?.state, 1);
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('a plugin that crashes mid-call is disconnected and crisp carries on', async () => {
  const crasher = await startPlugin({ index: '40', crashOn: 'CreateContainer' }, 'crasher');
  const pod = await s.runPod('nri-crash');
  const id = await s.runContainer(pod, 'survivor', ['sleep', '30']);
  assert.equal((await s.d.client.runtime.unary('ContainerStatus', { containerId: id })).status?.state, 1);
  assert.ok(events(crasher).some((e) => e.ev === 'crash'));
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('UpdatePodSandboxResources: plugins see UpdatePodSandbox and PostUpdatePodSandbox with the new resources; a refusing plugin fails the call', async () => {
  const rt = s.d.client.runtime;
  const record = await startPlugin({ index: '50', events: ['UpdatePodSandbox', 'PostUpdatePodSandbox'] }, 'resizer');
  const pod = await s.runPod('nri-resize', { linux: { resources: { cpuShares: 256, memoryLimitInBytes: 128 << 20 } } });
  const overhead = { cpuShares: 64, memoryLimitInBytes: 32 << 20 };
  const resources = { cpuShares: 512, cpuPeriod: 100_000, cpuQuota: 50_000, memoryLimitInBytes: 256 << 20 };
  await rt.unary('UpdatePodSandboxResources', { podSandboxId: pod, overhead, resources });

  type Res = { cpu?: { shares?: { value: number }; quota?: { value: number } }; memory?: { limit?: { value: number } } } | null;
  const seen = () =>
    events(record).filter((e) => e.pod === 'nri-resize') as unknown as { ev: string; overhead: Res; resources: Res; before?: Res }[];
  assert.deepEqual(seen().map((e) => e.ev), ['UpdatePodSandbox', 'PostUpdatePodSandbox']);
  const [update, post] = seen();
  assert.equal(update!.resources!.cpu!.shares!.value, 512);
  assert.equal(update!.resources!.cpu!.quota!.value, 50_000);
  assert.equal(update!.overhead!.memory!.limit!.value, 32 << 20);
  assert.equal(update!.before!.cpu!.shares!.value, 256, 'UpdatePodSandbox shows the pod with its old resources');
  assert.equal(post!.resources!.cpu!.shares!.value, 512, 'PostUpdatePodSandbox shows the new ones');
  assert.equal(post!.overhead!.memory!.limit!.value, 32 << 20);
  const verbose = async () =>
    JSON.parse((await rt.unary('PodSandboxStatus', { podSandboxId: pod, verbose: true })).info.info!) as {
      overhead: { cpuShares: number; memoryLimitInBytes: number } | null;
      resources: { cpuShares: number; cpuQuota: number } | null;
    };
  assert.equal((await verbose()).resources!.cpuShares, 512);
  assert.equal((await verbose()).overhead!.memoryLimitInBytes, 32 << 20);

  // A plugin that refuses fails the call; the pod keeps its resources and nobody hears of a post-update.
  await startPlugin({ index: '60', failOn: 'UpdatePodSandbox', events: ['UpdatePodSandbox'] }, 'refuser');
  const refuser = plugins[plugins.length - 1]!;
  await assert.rejects(
    rt.unary('UpdatePodSandboxResources', { podSandboxId: pod, resources: { cpuShares: 4096 } }),
    (err: unknown) => isGrpcError(err, status.FAILED_PRECONDITION) && /60-refuser failed UpdatePodSandbox: scripted plugin refuses UpdatePodSandbox/.test(err.details),
  );
  assert.equal((await verbose()).resources!.cpuShares, 512);
  assert.deepEqual(seen().map((e) => e.ev), ['UpdatePodSandbox', 'PostUpdatePodSandbox', 'UpdatePodSandbox']);
  refuser.kill('SIGKILL');
  await sleep(300);

  // Request errors name the field or the object.
  await assert.rejects(rt.unary('UpdatePodSandboxResources', { podSandboxId: '', resources }), (err: unknown) => isGrpcError(err, status.INVALID_ARGUMENT) && /pod_sandbox_id/.test(err.details));
  await assert.rejects(rt.unary('UpdatePodSandboxResources', { podSandboxId: 'f'.repeat(64), resources }), (err: unknown) => isGrpcError(err, status.NOT_FOUND));
  await assert.rejects(
    rt.unary('UpdatePodSandboxResources', { podSandboxId: pod, resources: { cpuShares: -1 } }),
    (err: unknown) => isGrpcError(err, status.INVALID_ARGUMENT) && /resources\.cpu_shares/.test(err.details),
  );
  await rt.unary('StopPodSandbox', { podSandboxId: pod });
  await assert.rejects(rt.unary('UpdatePodSandboxResources', { podSandboxId: pod, resources }), (err: unknown) => isGrpcError(err, status.FAILED_PRECONDITION) && /not ready/.test(err.details));
  await rt.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('UpdateContainerResources: plugins see the container as it is and what is asked for; afterwards the two merged', async () => {
  // Found with upstream containerd/nri plugins (logger): after `crictl update --cpu-share 300`, plugins saw
  // only the update's fields as the container's resources, in UpdateContainer, PostUpdateContainer and
  // every later Synchronize; the spec and the cgroup kept the memory limit and the CPU quota.
  const record = await startPlugin({ index: '45', events: ['UpdateContainer', 'PostUpdateContainer'] }, 'resources-watch');
  const watcher = plugins[plugins.length - 1]!;
  const pod = await s.runPod('nri-update');
  const id = await s.runContainer(pod, 'upd', ['sleep', '60'], { linux: { resources: { cpuPeriod: 100_000, cpuQuota: 50_000, memoryLimitInBytes: 64 << 20 } } });
  await s.d.client.runtime.unary('UpdateContainerResources', { containerId: id, linux: { cpuShares: 300 } });
  type Res = { cpu?: { shares?: { value: unknown }; quota?: { value: unknown } }; memory?: { limit?: { value: unknown } } } | null;
  const view = (r: Res) => ({ shares: Number(r?.cpu?.shares?.value ?? 0), quota: Number(r?.cpu?.quota?.value ?? 0), memory: Number(r?.memory?.limit?.value ?? 0) });
  const seen = events(record).filter((e) => e.container === 'upd') as unknown as { ev: string; had?: Res; asked?: Res; resources?: Res }[];
  assert.deepEqual(seen.map((e) => e.ev), ['UpdateContainer', 'PostUpdateContainer']);
  assert.deepEqual(view(seen[0]!.had!), { shares: 0, quota: 50_000, memory: 64 << 20 }, 'UpdateContainer: the container as it is');
  assert.deepEqual(view(seen[0]!.asked!), { shares: 300, quota: 0, memory: 0 }, 'UpdateContainer: what is asked for');
  const merged = { shares: 300, quota: 50_000, memory: 64 << 20 };
  assert.deepEqual(view(seen[1]!.resources!), merged, 'PostUpdateContainer: the container afterwards');
  const late = await startPlugin({ index: '46', events: ['RunPodSandbox'] }, 'resources-late');
  const sync = events(late).find((e) => e.ev === 'Synchronize') as unknown as { containerResources: Record<string, Res> };
  assert.deepEqual(view(sync.containerResources[id]!), merged, 'Synchronize of a plugin that connects afterwards');
  for (const p of [watcher, plugins[plugins.length - 1]!]) p.kill('SIGKILL');
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('CDI devices an NRI plugin asks for are resolved from the CDI specs; an unknown one fails the create', async () => {
  await startPlugin({ index: '70', adjust: { CDIDevices: [{ name: 'crisp.test/nri=null1' }] } }, 'cdi-injector');
  const injector = plugins[plugins.length - 1]!;
  const pod = await s.runPod('nri-cdi');
  const id = await s.runContainer(pod, 'cdi', ['sleep', '30']);
  const out = (await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd: ['sh', '-c', 'env; ls -l /dev/nri-null'], timeout: 10 })).stdout.toString();
  assert.match(out, /^FROM_NRI_CDI=1$/m);
  assert.match(out, /^c.* \/dev\/nri-null$/m);
  injector.kill('SIGKILL');
  await sleep(300);
  await startPlugin({ index: '71', adjust: { CDIDevices: [{ name: 'crisp.test/nri=absent' }] } }, 'cdi-bad');
  const bad = plugins[plugins.length - 1]!;
  await assert.rejects(s.runContainer(pod, 'cdi-bad', ['true']), (err: unknown) => isGrpcError(err, status.INVALID_ARGUMENT) && /NRI adjustment CDI_devices: CDI device "crisp\.test\/nri=absent"/.test(err.details));
  bad.kill('SIGKILL');
  await sleep(300);
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
});
