// crispd restart with NRI plugins: after kill -9 and a new crispd on the same state, an external SDK
// plugin (with reconnect) registers again by itself and a pre-installed one is launched again; both
// get a Synchronize holding exactly the pods and containers that survived, with the pod resources an
// UpdatePodSandboxResources gave before the crash. The configured NRI timeouts reach the plugins.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { startStack, type Stack } from './lib/stack.js';
import { CLI } from './lib/crispd.js';
import { SCRIPTED_PLUGIN_JS, writeLaunchedPlugin, type PluginScript } from './fixtures/nri-plugins/scripted-plugin.js';
import { sleep } from '../../common/time.js';
import { processAlive } from '../../common/process.js';
import { nriTestDir } from './lib/nri-dir.js';

interface Rec {
  ev: string;
  pid: number;
  [k: string]: unknown;
}
interface SyncRec extends Rec {
  pods: string[];
  containers: string[];
  podIds: string[];
  containerIds: string[];
  podResources: Record<string, { cpu?: { shares?: { value: number } } } | null>;
}

let s: Stack;
let dir: string;
let socket: string;
let externalRecord: string;
let launchedRecord: string;
const children: ChildProcess[] = [];

const records = (file: string): Rec[] =>
  existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Rec)
    : [];
const syncs = (file: string) => records(file).filter((r): r is SyncRec => r.ev === 'Synchronize');

async function waitFor(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

before(async () => {
  dir = `/tmp/crisp-e2e-nri-restart-${process.pid}-${Date.now().toString(36)}`;
  const nri = nriTestDir(dir);
  const pluginDir = nri.pluginDir;
  socket = nri.socket;
  externalRecord = join(dir, 'external.jsonl');
  launchedRecord = join(dir, 'launched.jsonl');
  writeLaunchedPlugin(pluginDir, '20-preinstalled', { record: launchedRecord });
  s = await startStack({
    ...nri.config,
    nri_registration_timeout: 4,
    nri_request_timeout: 3,
  });
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  const rules = (await s?.teardown()) ?? [];
  // Pre-installed plugin processes the crashed crispd left behind exit on their own when their
  // socket closes; one that did not is ours to end, by the pid it recorded.
  for (const r of records(launchedRecord)) if (r.ev === 'start' && processAlive(r.pid)) process.kill(r.pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
  assert.deepEqual(rules, []);
});

test('after kill -9 and restart, plugins reconnect and resynchronize with exactly what survived', async () => {
  const script: PluginScript = { name: 'watcher', index: '10', socketPath: socket, record: externalRecord, reconnectMs: 100 };
  const external = spawn(process.execPath, [SCRIPTED_PLUGIN_JS, JSON.stringify(script)], { stdio: 'ignore' });
  children.push(external);
  await waitFor('external plugin synchronized', () => syncs(externalRecord).length === 1);
  const configure = records(externalRecord).find((r) => r.ev === 'Configure')!;
  assert.equal(configure.registrationTimeout, 4000, 'nri_registration_timeout reached Configure');
  assert.equal(configure.requestTimeout, 3000, 'nri_request_timeout reached Configure');
  const rt = () => s.d.client.runtime;

  // What survives: one pod with a running container and resized resources. What does not: a removed
  // container in it, and a whole removed pod with its container.
  const keep = await s.runPod('nri-keep');
  const keepRun = await s.runContainer(keep, 'keep-run', ['sleep', '300']);
  const keepGone = await s.runContainer(keep, 'keep-gone', ['sleep', '300']);
  await rt().unary('StopContainer', { containerId: keepGone, timeout: 0 });
  await rt().unary('RemoveContainer', { containerId: keepGone });
  const gone = await s.runPod('nri-gone');
  await s.runContainer(gone, 'gone-run', ['sleep', '300']);
  await rt().unary('StopPodSandbox', { podSandboxId: gone });
  await rt().unary('RemovePodSandbox', { podSandboxId: gone });
  await rt().unary('UpdatePodSandboxResources', { podSandboxId: keep, resources: { cpuShares: 768 } });

  const launchedBefore = records(launchedRecord).filter((r) => r.ev === 'start').map((r) => r.pid);
  assert.equal(launchedBefore.length, 1);
  await s.d.kill9();
  await waitFor('external plugin noticed', () => records(externalRecord).some((r) => r.ev === 'disconnected'));
  await s.d.start();

  await waitFor('external plugin resynchronized', () => syncs(externalRecord).length === 2);
  await waitFor('pre-installed plugin launched and synchronized again', () => syncs(launchedRecord).length === 2);
  const pods = (await rt().unary('ListPodSandbox', {})).items;
  const containers = (await rt().unary('ListContainers', {})).containers;
  assert.ok(pods.some((p) => p.id === keep) && !pods.some((p) => p.id === gone));
  assert.deepEqual(
    containers.map((c) => c.id),
    [keepRun],
    'the only container left is the running one',
  );
  for (const [who, file] of [['external', externalRecord], ['pre-installed', launchedRecord]] as const) {
    const sync = syncs(file)[1]!;
    assert.deepEqual([...sync.podIds].sort(), pods.map((p) => p.id).sort(), `${who}: Synchronize pod ids`);
    assert.deepEqual([...sync.pods].sort(), pods.map((p) => p.metadata!.name).sort(), `${who}: Synchronize pod names`);
    assert.deepEqual(sync.containerIds, [keepRun], `${who}: Synchronize container ids`);
    assert.deepEqual(sync.containers, ['keep-run'], `${who}: Synchronize container names`);
    assert.equal(sync.podResources[keep]?.cpu?.shares?.value, 768, `${who}: the resized pod resources survived`);
  }
  // The external plugin is the same process, reconnected; the pre-installed one is a new process.
  assert.equal(syncs(externalRecord)[1]!.pid, external.pid);
  const launchedAfter = records(launchedRecord).filter((r) => r.ev === 'start').map((r) => r.pid);
  assert.equal(launchedAfter.length, 2);
  assert.notEqual(launchedAfter[1], launchedBefore[0]);
  await waitFor('the old pre-installed plugin exited with its crispd', () => !processAlive(launchedBefore[0]!), 10_000);

  // Both take part in events of the new crispd.
  const late = await s.runContainer(keep, 'after-restart', ['sleep', '300']);
  for (const file of [externalRecord, launchedRecord]) {
    await waitFor('StartContainer after restart', () => records(file).some((r) => r.ev === 'StartContainer' && r.container === 'after-restart'), 10_000);
  }
  const ls = spawnSync(process.execPath, [CLI, '-e', s.d.endpoint, 'nri', 'plugins'], { encoding: 'utf8' });
  assert.equal(ls.status, 0, ls.stderr);
  assert.match(ls.stdout, /10\s+watcher/);
  assert.match(ls.stdout, /20\s+preinstalled/);
  await rt().unary('StopContainer', { containerId: late, timeout: 0 });
  await rt().unary('StopPodSandbox', { podSandboxId: keep });
  await rt().unary('RemovePodSandbox', { podSandboxId: keep });
});
