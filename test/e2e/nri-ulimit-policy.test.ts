// examples/nri-ulimit-policy as a process on a real crispd's NRI socket: pod annotations become the
// container's rlimits (read back from /proc/1/limits inside it) and environment; a container of the
// same pod without its own annotation gets only the pod-wide ones; an annotation the plugin refuses
// fails CreateContainer naming it, leaving no container behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { spawn, type ChildProcess } from 'node:child_process';
import { status } from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { isGrpcError } from '../../common/errors.js';
import { nriTestDir } from './lib/nri-dir.js';

const MAIN = fileURLToPath(new URL('../../examples/nri-ulimit-policy/main.js', import.meta.url));

let s: Stack;
let dir: string;
let plugin: ChildProcess;
let pluginLog = '';

/** The soft and hard "Max open files" etc. of the container's first process, by /proc/1/limits row name. */
function limits(procLimits: string): Map<string, [string, string]> {
  const out = new Map<string, [string, string]>();
  for (const line of procLimits.split('\n').slice(1)) {
    const m = /^(.+?)\s{2,}(\S+)\s+(\S+)/.exec(line);
    if (m) out.set(m[1]!, [m[2]!, m[3]!]);
  }
  return out;
}

before(async () => {
  dir = `/tmp/crisp-e2e-nri-ulimit-${process.pid}-${Date.now().toString(36)}`;
  const { socket, config } = nriTestDir(dir);
  s = await startStack(config);
  plugin = spawn(process.execPath, [MAIN, '--socket', socket, '--max', 'nofile=65536', '--index', '40'], { stdio: ['ignore', 'ignore', 'pipe'] });
  plugin.stderr!.on('data', (d: Buffer) => (pluginLog += d.toString()));
  const deadline = Date.now() + 15_000;
  while (!pluginLog.includes('"registered"')) {
    if (plugin.exitCode !== null) throw new Error(`plugin exited ${plugin.exitCode}: ${pluginLog}`);
    if (Date.now() > deadline) throw new Error(`plugin did not register: ${pluginLog}`);
    await new Promise((r) => setTimeout(r, 50));
  }
});

after(async () => {
  if (plugin && plugin.exitCode === null) plugin.kill('SIGTERM');
  const rules = (await s?.teardown()) ?? [];
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

test('annotations set the container\'s rlimits and environment; a sibling gets only the pod-wide ones', async () => {
  const pod = await s.runPod('ulimit-pod', {
    annotations: {
      'ulimits.nri.crisp.io/pod': 'nproc=700:800',
      'ulimits.nri.crisp.io/container.app': 'nofile=1111:2222, core=0',
      'env.nri.crisp.io/pod': 'FROM_POD=pod-wide\nOVERRIDE=pod',
      'env.nri.crisp.io/container.app': 'GREETING=hello world=1\nOVERRIDE=app',
    },
  });
  const rt = s.d.client.runtime;
  const app = await s.runContainer(pod, 'app', ['sleep', '60']);
  const sidecar = await s.runContainer(pod, 'sidecar', ['sleep', '60']);
  const read = async (id: string) => {
    const r = await rt.unary('ExecSync', { containerId: id, cmd: ['sh', '-c', 'cat /proc/1/limits; echo ---; env'], timeout: 10 });
    assert.equal(r.exitCode, 0, r.stderr.toString());
    const [procLimits, env] = r.stdout.toString().split('---\n') as [string, string];
    return { limits: limits(procLimits), env };
  };
  const a = await read(app);
  assert.deepEqual(a.limits.get('Max open files'), ['1111', '2222']);
  assert.deepEqual(a.limits.get('Max processes'), ['700', '800']);
  assert.deepEqual(a.limits.get('Max core file size'), ['0', '0']);
  assert.match(a.env, /^GREETING=hello world=1$/m);
  assert.match(a.env, /^FROM_POD=pod-wide$/m);
  assert.match(a.env, /^OVERRIDE=app$/m);

  const b = await read(sidecar);
  assert.deepEqual(b.limits.get('Max processes'), ['700', '800']);
  assert.notDeepEqual(b.limits.get('Max open files'), ['1111', '2222']);
  assert.match(b.env, /^OVERRIDE=pod$/m);
  assert.doesNotMatch(b.env, /GREETING/);
  assert.match(pluginLog, /"msg":"adjusting container".*"container":"app"/);
  await rt.unary('StopPodSandbox', { podSandboxId: pod });
  await rt.unary('RemovePodSandbox', { podSandboxId: pod });
});

test('an annotation the plugin refuses (bad syntax, above --max) fails CreateContainer naming it; nothing is left', async () => {
  const rt = s.d.client.runtime;
  const cases: [Record<string, string>, RegExp][] = [
    [{ 'ulimits.nri.crisp.io/container.app': 'nofile=lots' }, /40-ulimit-policy failed CreateContainer: annotation ulimits\.nri\.crisp\.io\/container\.app: "nofile=lots": "lots" is not a non-negative integer/],
    [{ 'ulimits.nri.crisp.io/pod': 'nofile=1024:100000' }, /annotation ulimits\.nri\.crisp\.io\/pod: RLIMIT_NOFILE hard limit 100000 is above the plugin's maximum 65536/],
  ];
  for (const [annotations, why] of cases) {
    const pod = await s.runPod(`ulimit-bad-${Object.values(annotations)[0]!.length}`, { annotations });
    await assert.rejects(s.runContainer(pod, 'app', ['sleep', '60']), (err: unknown) => isGrpcError(err, status.FAILED_PRECONDITION) && why.test(err.details));
    assert.deepEqual((await rt.unary('ListContainers', { filter: { podSandboxId: pod } })).containers, []);
    await rt.unary('StopPodSandbox', { podSandboxId: pod });
    await rt.unary('RemovePodSandbox', { podSandboxId: pod });
  }
  assert.equal(plugin.exitCode, null, 'refusing a container does not stop the plugin');
});
