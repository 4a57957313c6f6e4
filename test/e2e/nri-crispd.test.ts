// NRI through crispd: a plugin process (the TypeScript SDK) on crispd's NRI socket sees pods and
// containers in order with their metadata, its adjustments reach a running container, a plugin that
// refuses CreateContainer fails the call without leaking, and `crisp nri plugins` lists it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { CLI } from './lib/crispd.js';
import { SCRIPTED_PLUGIN_JS, type PluginScript } from './fixtures/nri-plugins/scripted-plugin.js';
import { isGrpcError } from '../../common/errors.js';
import { sleep } from '../../common/time.js';

let s: Stack;
let socket: string;
let nriDir: string;
const plugins: ChildProcess[] = [];

async function startPlugin(script: PluginScript, name: string): Promise<string> {
  const record = join(s.d.dir, `${name}.jsonl`);
  const child = spawn(process.execPath, [SCRIPTED_PLUGIN_JS, JSON.stringify({ ...script, name, socketPath: socket, record })], { stdio: 'ignore' });
  plugins.push(child);
  for (let i = 0; i < 100; i++) {
    if (existsSync(record) && readFileSync(record, 'utf8').includes('"Synchronize"')) return record;
    await sleep(50);
  }
  throw new Error(`plugin ${name} did not synchronize`);
}

const events = (record: string) =>
  readFileSync(record, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { ev: string; pod?: string; container?: string });

before(async () => {
  const dir = `/tmp/crisp-e2e-nri-${process.pid}-${Date.now().toString(36)}`;
  nriDir = dir;
  mkdirSync(join(dir, 'plugins'), { recursive: true });
  socket = join(dir, 'nri.sock');
  s = await startStack({ nri_enabled: true, nri_socket: socket, nri_plugin_dir: join(dir, 'plugins'), nri_plugin_config_dir: join(dir, 'conf') });
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
