// NRI host end to end, without crispd: an NriHost on /tmp/crisp-e2e-nri-<rand>/nri.sock with fake
// runtime state, and plugins built on the TypeScript SDK running as separate node processes, both
// external (dialing the socket) and pre-installed (launched by the host with fd 3). Every process a
// test starts is killed by pid in t.after; pre-installed ones are killed by host.stop().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { isCrispError } from '../../common/errors.js';
import { encodeMuxHeader } from '../../nri/transport/mux.js';
import { NriHost } from '../../nri/host/index.js';
import { FakeAccess, fakeContainer, fakePod, fakeSpec, testLogger } from './fixtures/nri-plugins/fake-runtime.js';
import { startHost, waitFor, type HostHarness } from './fixtures/nri-plugins/harness.js';
import { writeLaunchedPlugin, type PluginScript } from './fixtures/nri-plugins/scripted-plugin.js';
import { isAlive } from './lib/crispd.js';

interface Rec {
  ev: string;
  pid: number;
  t: number;
  [k: string]: unknown;
}

function records(file: string): Rec[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Rec);
}

const ready = (h: HostHarness, q: string, timeoutMs = 10_000) => h.waitHealth(q, 'ready', timeoutMs);

test('pre-installed and external plugins: registration, configure, synchronize, events in order, merged adjustments', async (t) => {
  const access = new FakeAccess();
  const existing = access.addPod(fakePod('existing'));
  access.addContainer(fakeContainer(existing, 'old'));
  const h = await startHost(t, { requestTimeoutMs: 3000 }, { start: false, access });
  const rec = (n: string) => join(h.dir, `${n}.jsonl`);
  writeLaunchedPlugin(h.pluginDir, '10-recorder', { record: rec('recorder'), adjust: { env: [{ key: 'FROM_LAUNCHED', value: '1' }] } });
  writeLaunchedPlugin(h.pluginDir, '30-second', { record: rec('second'), events: ['RunPodSandbox', 'RemovePodSandbox'] });
  writeFileSync(join(h.configDir, '10-recorder.conf'), 'mode: strict\n');
  writeFileSync(join(h.configDir, 'second.conf'), 'by-name: yes\n');
  await h.host.start();
  // start() returns once the pre-installed plugins are ready.
  assert.deepEqual(
    h.host.plugins().map((p) => [`${p.index}-${p.name}`, p.kind, p.health]),
    [
      ['10-recorder', 'launched', 'ready'],
      ['30-second', 'launched', 'ready'],
    ],
  );

  h.spawnPlugin({ name: 'ext', index: '20', record: rec('ext'), adjust: { annotations: { 'ext-was-here': 'yes' } } });
  h.spawnPlugin({ name: 'oldstyle', index: '40', record: rec('old'), legacy: true, events: ['RunPodSandbox', 'StartContainer'] });
  await ready(h, '20-ext');
  await ready(h, '40-oldstyle');

  const launchedStart = records(rec('recorder')).find((r) => r.ev === 'start')!;
  assert.deepEqual(launchedStart.env, ['NRI_PLUGIN_IDX', 'NRI_PLUGIN_NAME', 'NRI_PLUGIN_SOCKET']);
  const conf = records(rec('recorder')).find((r) => r.ev === 'Configure')!;
  assert.equal(conf.config, 'mode: strict\n');
  assert.equal(conf.runtimeName, 'crisp');
  assert.equal(conf.runtimeVersion, '0.0.0-test');
  assert.equal(conf.requestTimeout, 3000);
  assert.equal(conf.registrationTimeout, 5000);
  assert.equal(records(rec('second')).find((r) => r.ev === 'Configure')!.config, 'by-name: yes\n');
  assert.equal(records(rec('ext')).find((r) => r.ev === 'Configure')!.config, '');
  const sync = records(rec('ext')).find((r) => r.ev === 'Synchronize')!;
  assert.deepEqual(sync.pods, ['existing']);
  assert.deepEqual(sync.containers, ['old']);

  const pod = access.addPod(fakePod('web'));
  const ctr = fakeContainer(pod, 'app');
  await h.host.runPodSandbox(pod);
  const spec = await h.host.createContainer(pod, ctr, fakeSpec(ctr, pod));
  access.addContainer(ctr, spec);
  await h.host.postCreateContainer(pod, ctr);
  await h.host.startContainer(pod, ctr);
  ctr.state = 'running';
  await h.host.postStartContainer(pod, ctr);
  ctr.state = 'exited';
  await h.host.stopContainer(pod, ctr);
  await h.host.removeContainer(pod, ctr);
  await h.host.stopPodSandbox(pod);
  await h.host.removePodSandbox(pod);

  const lifecycle = ['RunPodSandbox', 'CreateContainer', 'PostCreateContainer', 'StartContainer', 'PostStartContainer', 'StopContainer', 'RemoveContainer', 'StopPodSandbox', 'RemovePodSandbox'];
  const evs = (n: string) => records(rec(n)).map((r) => r.ev).filter((e) => lifecycle.includes(e));
  assert.deepEqual(evs('recorder'), lifecycle);
  assert.deepEqual(evs('ext'), lifecycle);
  assert.deepEqual(evs('second'), ['RunPodSandbox', 'RemovePodSandbox']);
  // The old-style plugin got its events through StateChange.
  assert.deepEqual(evs('old'), ['RunPodSandbox', 'StartContainer']);
  // Index order within each event: 10 before 20 before 30.
  const at = (n: string, ev: string) => records(rec(n)).find((r) => r.ev === ev)!.t;
  assert.ok(at('recorder', 'RunPodSandbox') <= at('ext', 'RunPodSandbox'));
  assert.ok(at('ext', 'RunPodSandbox') <= at('second', 'RunPodSandbox'));
  // 20-ext saw 10-recorder's adjustment in its request; both ended up in the spec.
  const extCreate = records(rec('ext')).find((r) => r.ev === 'CreateContainer')!;
  assert.ok((extCreate.env as string[]).includes('FROM_LAUNCHED=1'));
  assert.ok(((spec.process as { env: string[] }).env).includes('FROM_LAUNCHED=1'));
  assert.equal((spec.annotations as Record<string, string>)['ext-was-here'], 'yes');
  assert.equal(h.log.find(/predates per-event RPCs/).length, 1);
});

test('a state of more than 1 MB is synchronized in parts, and 5 MB at the real message limit', async (t) => {
  const access = new FakeAccess();
  for (let i = 0; i < 60; i++) {
    const pod = access.addPod(fakePod(`p${i}`));
    for (let j = 0; j < 10; j++) {
      const c = fakeContainer(pod, `c${j}`);
      access.addContainer(c, { ...fakeSpec(c, pod), annotations: { blob: 'z'.repeat(8000) } });
    }
  }
  const h = await startHost(t, { syncPartBytes: 256 * 1024, requestTimeoutMs: 10_000 }, { access });
  h.spawnPlugin({ name: 'bigsync', index: '10', record: join(h.dir, 'big.jsonl') });
  await ready(h, '10-bigsync', 20_000);
  const sync = records(join(h.dir, 'big.jsonl')).find((r) => r.ev === 'Synchronize')!;
  assert.equal((sync.pods as string[]).length, 60);
  assert.equal((sync.containers as string[]).length, 600);
  assert.ok((sync.bytes as number) > 4_800_000, `about 5 MB of containers arrived (${String(sync.bytes)})`);
  const parts = h.log.find(/NRI plugin synchronized/)[0]!.parts as number;
  assert.ok(parts >= 19, `split into ${parts} parts`);

  // The same state with the default part size: two messages near the 4 MiB ttrpc limit.
  const h2 = await startHost(t, { requestTimeoutMs: 10_000 }, { access });
  h2.spawnPlugin({ name: 'bigsync', index: '10', record: join(h2.dir, 'big.jsonl') });
  await ready(h2, '10-bigsync', 20_000);
  assert.equal(h2.log.find(/NRI plugin synchronized/)[0]!.parts, 2);
  assert.equal((records(join(h2.dir, 'big.jsonl')).find((r) => r.ev === 'Synchronize')!.containers as string[]).length, 600);
});

test('two plugin processes setting the same field fail CreateContainer, naming both', async (t) => {
  const h = await startHost(t);
  h.spawnPlugin({ name: 'ulimit-a', index: '10', adjust: { rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }] } });
  h.spawnPlugin({ name: 'ulimit-b', index: '20', adjust: { rlimits: [{ type: 'RLIMIT_NOFILE', hard: 8192, soft: 8192 }] } });
  await ready(h, '10-ulimit-a');
  await ready(h, '20-ulimit-b');
  const pod = h.access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'c');
  await assert.rejects(h.host.createContainer(pod, ctr, fakeSpec(ctr, pod)), (err: unknown) => {
    assert.ok(isCrispError(err, 'FAILED_PRECONDITION'));
    assert.match(err.message, /plugins "20-ulimit-b" and "10-ulimit-a" both tried to set Rlimits RLIMIT_NOFILE/);
    return true;
  });
});

test('a slow plugin is disconnected after the request timeout and the host carries on', async (t) => {
  const h = await startHost(t, { requestTimeoutMs: 1000 });
  const slowRec = join(h.dir, 'slow.jsonl');
  const slow = h.spawnPlugin({ name: 'slow', index: '10', slowMs: { CreateContainer: 8000, StartContainer: 8000 }, record: slowRec });
  h.spawnPlugin({ name: 'fast', index: '20', adjust: { annotations: { fast: 'yes' } } });
  await ready(h, '10-slow');
  await ready(h, '20-fast');
  const pod = h.access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'c');
  let started = Date.now();
  const spec = await h.host.createContainer(pod, ctr, fakeSpec(ctr, pod));
  const first = Date.now() - started;
  assert.ok(first >= 950 && first < 5000, `first create took ${first}ms: the request timeout, not the plugin's 8 s`);
  assert.equal((spec.annotations as Record<string, string>).fast, 'yes');
  // The slow plugin is gone; the next operations do not wait for it.
  await waitFor('slow plugin process exit', () => slow.exitCode !== null);
  const slowInfo = h.host.plugins().find((p) => p.name === 'slow')!;
  assert.equal(slowInfo.health, 'closed');
  assert.equal(slowInfo.failures, 1);
  assert.match(slowInfo.lastError ?? '', /CreateContainer failed: .*no response within 1000ms/);
  const ctr2 = fakeContainer(pod, 'c2');
  started = Date.now();
  await h.host.createContainer(pod, ctr2, fakeSpec(ctr2, pod));
  await h.host.startContainer(pod, ctr2);
  assert.ok(Date.now() - started < 1000, `later calls took ${Date.now() - started}ms`);
  assert.equal(records(slowRec).filter((r) => r.ev === 'CreateContainer').length, 1);
});

test('a required plugin: operations fail with FAILED_PRECONDITION until it is there, and again when it dies', async (t) => {
  const h = await startHost(t, { requiredPlugins: ['gate'] });
  const pod = h.access.addPod(fakePod('p'));
  const ctr = fakeContainer(pod, 'c');
  const failsPrecondition = (err: unknown) => {
    assert.ok(isCrispError(err, 'FAILED_PRECONDITION'), String(err));
    assert.match(err.message, /required NRI plugin "gate"/);
    return true;
  };
  await assert.rejects(h.host.runPodSandbox(pod), failsPrecondition);
  await assert.rejects(h.host.createContainer(pod, ctr, fakeSpec(ctr, pod)), failsPrecondition);
  assert.deepEqual(
    h.host.plugins().map((p) => [p.name, p.health, p.required]),
    [['gate', 'missing', true]],
  );

  const gate = h.spawnPlugin({ name: 'gate', index: '50' });
  await ready(h, '50-gate');
  await h.host.runPodSandbox(pod);
  const spec = await h.host.createContainer(pod, ctr, fakeSpec(ctr, pod));
  h.access.addContainer(ctr, spec);

  gate.kill('SIGKILL');
  await waitFor('gate gone', () => h.host.plugins().find((p) => p.name === 'gate')?.health === 'missing');
  await assert.rejects(h.host.startContainer(pod, ctr), (err: unknown) => {
    failsPrecondition(err);
    assert.match((err as Error).message, /last error/);
    return true;
  });
  // Tearing down is never refused.
  await h.host.stopContainer(pod, ctr);
  await h.host.removeContainer(pod, ctr);
  await h.host.removePodSandbox(pod);
});

test('garbage frames, undecodable requests and unknown methods disconnect the plugin with a logged reason', async (t) => {
  const h = await startHost(t);
  const steadyRec = join(h.dir, 'steady.jsonl');
  h.spawnPlugin({ name: 'steady', index: '90', record: steadyRec });
  await ready(h, '90-steady');
  const cases: [string, RegExp][] = [
    ['oversized-mux-frame', /frame of 67108864 bytes exceeds the 4194314-byte limit/],
    ['bad-ttrpc-type', /has message type 7, expected 1/],
    ['unknown-method', /called unknown method \/nri\.pkg\.api\.v1alpha1\.Runtime\/DropAllTables/],
    ['undecodable-request', /undecodable request/],
  ];
  let idx = 10;
  for (const [how, reason] of cases) {
    const name = `bad${idx}`;
    const child = h.spawnPlugin({ name, index: String(idx), misbehave: how as PluginScript['misbehave'] });
    await waitFor(`${name} disconnected`, () => h.log.lines.some((l) => l.nriPlugin === `${idx}-${name}` && /disconnected/.test(String(l.msg))), 10_000);
    const line = h.log.lines.find((l) => l.nriPlugin === `${idx}-${name}` && /disconnected/.test(String(l.msg)))!;
    assert.match(String(line.reason), reason, how);
    await waitFor(`${name} exited`, () => child.exitCode !== null);
    idx += 10;
  }
  // Junk before any registration: dropped without an identity.
  const raw = net.connect(h.socketPath);
  await new Promise<void>((r) => raw.once('connect', r));
  raw.write(Buffer.concat([encodeMuxHeader(0xdead, 0xffffffff), Buffer.from('nonsense')]));
  await new Promise<void>((r) => raw.once('close', () => r()));
  await waitFor('junk connection logged', () => h.log.lines.some((l) => /^external#/.test(String(l.nriPlugin)) && /exceeds the 4194314-byte limit/.test(String(l.reason))));

  // The host still serves: the steady plugin gets the next event.
  const pod = h.access.addPod(fakePod('still'));
  await h.host.runPodSandbox(pod);
  assert.ok(records(steadyRec).some((r) => r.ev === 'RunPodSandbox' && r.pod === 'still'));
  assert.deepEqual(
    h.host.plugins().filter((p) => p.health === 'ready').map((p) => p.name),
    ['steady'],
  );
});

test('invalid identities are refused at registration; a bad file name fails NRI startup', async (t) => {
  const h = await startHost(t);
  const rec = join(h.dir, 'refused.jsonl');
  h.spawnPlugin({ name: 'ok', index: '10' });
  await ready(h, '10-ok');
  const dup = h.spawnPlugin({ name: 'ok', index: '10', record: rec });
  await waitFor('duplicate refused', () => dup.exitCode !== null);
  assert.match(String(records(rec).find((r) => r.ev === 'register-failed')!.error), /plugin 10-ok is already registered/);

  // The SDK refuses to even send a one-digit index, so speak the protocol by hand.
  const { Plugin } = await import('../../nri/plugin/index.js');
  const sneaky = new Plugin({ name: 'sneaky', index: '10', socketPath: h.socketPath });
  (sneaky as unknown as { identity: { index: string } }).identity.index = '7';
  await assert.rejects(sneaky.start(), /invalid plugin index "7": must be exactly two digits/);
  sneaky.stop();
  assert.deepEqual(
    h.host.plugins().map((p) => `${p.index}-${p.name}`),
    ['10-ok'],
  );

  const access = new FakeAccess();
  const bad = await startHost(t, {}, { start: false, access });
  writeLaunchedPlugin(bad.pluginDir, 'logger', {});
  await assert.rejects(bad.host.start(), /pre-installed NRI plugin .*\/logger: "logger" is not of the form NN-name/);
});

test('a crashing pre-installed plugin is restarted with growing delays; stop() kills every launched plugin', async (t) => {
  const h = await startHost(t, { restartBackoff: { initialMs: 200, maxMs: 1600 } }, { start: false });
  const crashRec = join(h.dir, 'crashy.jsonl');
  writeLaunchedPlugin(h.pluginDir, '40-crashy', { record: crashRec, crashAfterMs: 50 });
  writeLaunchedPlugin(h.pluginDir, '50-steady', { record: join(h.dir, 'steady.jsonl') });
  await h.host.start();
  await waitFor('four starts of 40-crashy', () => records(crashRec).filter((r) => r.ev === 'start').length >= 4, 20_000);
  const starts = records(crashRec).filter((r) => r.ev === 'start');
  assert.ok(new Set(starts.map((s) => s.pid)).size === starts.length, 'each start is a new process');
  // The restart delay doubles from 200 ms up to the 1600 ms cap.
  const crashyLog = h.log.lines.filter((l) => l.nriPlugin === '40-crashy');
  const delays = crashyLog.filter((l) => l.msg === 'NRI plugin restart scheduled').map((l) => l.inMs as number);
  assert.deepEqual(delays.slice(0, 3), [200, 400, 800]);
  // ...and it is really waited for: from each process end to the next start.
  const ended = crashyLog.filter((l) => l.msg === 'NRI plugin process ended').map((l) => Date.parse(String(l.time)) || Number(l.time));
  const started = crashyLog.filter((l) => l.msg === 'NRI plugin started').map((l) => Number(l.time));
  for (let i = 0; i < 3; i++) assert.ok(started[i + 1]! - ended[i]! >= delays[i]! - 5, `restart ${i + 1} after ${started[i + 1]! - ended[i]!}ms`);
  const info = h.host.plugins().find((p) => p.name === 'crashy')!;
  assert.ok(info.failures >= 3, `failures ${info.failures}`);

  const steady = h.host.plugins().find((p) => p.name === 'steady')!;
  assert.equal(steady.health, 'ready');
  const pids = [steady.pid!, ...starts.map((s) => s.pid)];
  await h.host.stop();
  await waitFor('launched plugins gone', () => pids.every((pid) => !isAlive(pid)), 5000);
  assert.equal(existsSync(h.socketPath), false);
  // Stopped for good: nothing restarts afterwards.
  const count = records(crashRec).filter((r) => r.ev === 'start').length;
  await new Promise((r) => setTimeout(r, 2000));
  assert.equal(records(crashRec).filter((r) => r.ev === 'start').length, count);
});

test('a stale socket file is replaced and the socket directory is created 0700', async (t) => {
  const dir = mkdtempSync('/tmp/crisp-e2e-nri-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'sub', 'nri.sock');
  mkdirSync(join(dir, 'sub'));
  // A stale socket: its listener was SIGKILLed, so nobody removed the file.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok(statSync(socketPath).isSocket());
  rmSync(join(dir, 'sub'), { recursive: true });
  mkdirSync(join(dir, 'sub'), { mode: 0o755 });
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  const host = new NriHost({ access: new FakeAccess(), logger: testLogger().logger, runtimeVersion: 't', socketPath, pluginDir: join(dir, 'none') });
  t.after(() => host.stop());
  await host.start();
  const c = net.connect(socketPath);
  await new Promise<void>((r, j) => c.once('connect', r).once('error', j));
  c.destroy();

  // A fresh directory is created 0700.
  const fresh = join(dir, 'fresh', 'nri.sock');
  const host2 = new NriHost({ access: new FakeAccess(), logger: testLogger().logger, runtimeVersion: 't', socketPath: fresh, pluginDir: join(dir, 'none') });
  t.after(() => host2.stop());
  await host2.start();
  assert.equal(statSync(join(dir, 'fresh')).mode & 0o777, 0o700);
  // Something else than a socket in the way is not deleted.
  writeFileSync(join(dir, 'file.sock'), 'data');
  const host3 = new NriHost({ access: new FakeAccess(), logger: testLogger().logger, runtimeVersion: 't', socketPath: join(dir, 'file.sock'), pluginDir: join(dir, 'none') });
  t.after(() => host3.stop());
  await assert.rejects(host3.start(), /exists and is not a socket/);
  assert.equal(statSync(fresh).mode & 0o777, 0o600, 'the NRI socket is root-only whatever the umask');
  // A socket another runtime serves (containerd 2.x uses the same default path) is never taken over.
  const other = join(dir, 'other.sock');
  const rival = net.createServer().listen(other);
  await new Promise<void>((r) => rival.once('listening', () => r()));
  t.after(() => rival.close());
  const host4 = new NriHost({ access: new FakeAccess(), logger: testLogger().logger, runtimeVersion: 't', socketPath: other, pluginDir: join(dir, 'none') });
  t.after(() => host4.stop());
  await assert.rejects(host4.start(), /another process is serving the NRI socket .*set nri_socket/);
  const still = net.connect(other);
  await new Promise<void>((r, j) => still.once('connect', r).once('error', j));
  still.destroy();
});
