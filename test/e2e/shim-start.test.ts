// crisp-shim-start in front of the runc v2 shim. First the helper alone, against the real shim: for each
// spec it must give the answer the shim gives (exit status, stdout, the bundle's `address` file), and
// answer itself exactly where it can read the spec as the shim does (else it execs the shim, which a
// recording wrapper notices). Then under crispd's embedded containerd: a container joining its pod's
// shim is started without running the shim binary, a pod's first container (no warm shim) still gets a
// shim of its own through the helper, and shim_start_helper = false runs the shim for every start.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { buildTreeCandidates } from '../../native/helper-paths.js';

const SHIM = '/usr/bin/containerd-shim-runc-v2';
const HELPER = buildTreeCandidates('crisp-shim-start').find((p) => existsSync(p));
const haveShim = existsSync(SHIM) && HELPER !== undefined;

/** A `containerd-shim-runc-v2` that records each invocation's arguments in `log` and execs the real shim. */
function recordingShim(dir: string): { path: string; calls: () => string[][] } {
  mkdirSync(dir, { recursive: true });
  const log = join(dir, 'calls.log');
  const path = join(dir, 'containerd-shim-runc-v2');
  writeFileSync(path, `#!/bin/sh\nprintf '%s\\n' "$*" >> '${log}'\nexec ${SHIM} "$@"\n`);
  chmodSync(path, 0o755);
  return { path, calls: () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => l.split(' ')) : []) };
}

describe('crisp-shim-start against the runc v2 shim', { skip: !haveShim && 'containerd-shim-runc-v2 or native/build/crisp-shim-start missing' }, () => {
  const dir = mkdtempSync('/tmp/crisp-shim-start-');
  // A containerd address of this test's own: the group sockets it hashes to are this test's.
  const address = join(dir, 'containerd.sock');
  const ns = 'shimtest';
  const servers: Server[] = [];
  const sockets: string[] = [];
  const wrapper = recordingShim(join(dir, 'bin'));
  const socketFor = (group: string) => join('/run/containerd/s', createHash('sha256').update(`${address}/${ns}/${group}`).digest('hex'));

  before(async () => {
    mkdirSync('/run/containerd/s', { recursive: true, mode: 0o700 });
    // Listeners stand in for running shims: every group below has one, so the real shim joins too
    // (it would start a shim of its own for a group nobody serves).
    for (const group of ['podA', 'podB', 'task-1']) {
      const path = socketFor(group);
      const server = createServer((c) => c.destroy());
      await new Promise<void>((resolve, reject) => server.once('error', reject).listen(path, resolve));
      servers.push(server);
      sockets.push(path);
    }
  });
  after(async () => {
    for (const s of servers) await new Promise((r) => s.close(r));
    for (const s of sockets) rmSync(s, { force: true });
    rmSync(dir, { recursive: true, force: true });
  });

  /** Run `binary start` in a fresh bundle holding `spec`: exit status, stdout, stderr, the address file. */
  function run(binary: string, spec: string, args = ['-namespace', ns, '-address', address, '-publish-binary', '/usr/bin/containerd', '-id', 'task-1', 'start']) {
    const bundle = mkdtempSync(join(dir, 'bundle-'));
    writeFileSync(join(bundle, 'config.json'), spec);
    const r = spawnSync(binary, args, { cwd: bundle, input: Buffer.from([0x0a, 0x00]), env: { ...process.env, CRISP_SHIM_BINARY: wrapper.path } });
    const addressFile = join(bundle, 'address');
    return { status: r.status, stdout: r.stdout.toString(), address: existsSync(addressFile) ? readFileSync(addressFile, 'utf8') : undefined, stderr: r.stderr.toString() };
  }

  const cases: { name: string; spec: string; fast: boolean; group?: string }[] = [
    { name: 'the pod id label', spec: JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': 'podA' } }), fast: true, group: 'podA' },
    {
      name: 'the runc group label before the pod id',
      spec: JSON.stringify({ ociVersion: '1.0.2', annotations: { 'io.kubernetes.cri.sandbox-id': 'podA', 'io.containerd.runc.v2.group': 'podB' } }),
      fast: true,
      group: 'podB',
    },
    {
      name: 'no label: the task id; a label-like env value is not a label',
      spec: JSON.stringify({ process: { args: ['sh'], env: ['X="io.kubernetes.cri.sandbox-id":"podA"'] }, annotations: { other: 'x' } }),
      fast: true,
      group: 'task-1',
    },
    { name: 'null annotations', spec: '{"annotations":null,"hostname":"h"}', fast: true, group: 'task-1' },
    { name: 'a repeated label: the last wins', spec: '{"annotations":{"io.kubernetes.cri.sandbox-id":"podA","io.kubernetes.cri.sandbox-id":"podB"}}', fast: true, group: 'podB' },
    { name: 'whitespace and nesting', spec: '{ "linux" : { "a" : [ 1, -2.5e3, true, null, {"b":"\\"}"} ] } ,\n "annotations" : { "io.kubernetes.cri.sandbox-id" : "podA" } }\n', fast: true, group: 'podA' },
    { name: 'a field name in another case (the decoder folds case)', spec: '{"Annotations":{"io.kubernetes.cri.sandbox-id":"podA"}}', fast: false, group: 'podA' },
    { name: 'an escaped value', spec: '{"annotations":{"io.kubernetes.cri.sandbox-id":"pod\\u0041"}}', fast: false, group: 'podA' },
    { name: 'an escaped key', spec: '{"annotations":{"io.kubernetes.cri.sandbox\\u002did":"podB"}}', fast: false, group: 'podB' },
    { name: 'a non-string label value', spec: '{"annotations":{"io.kubernetes.cri.sandbox-id":7}}', fast: false },
    { name: 'a broken spec', spec: '{"annotations":{"io.kubernetes.cri.sandbox-id":"podA"}', fast: false },
    { name: 'a group with a slash', spec: JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': 'pod/A' } }), fast: false },
  ];

  for (const c of cases) {
    test(`${c.name}: the shim's answer, ${c.fast ? 'given by the helper' : 'from the shim'}`, () => {
      const before = wrapper.calls().length;
      const helper = run(HELPER!, c.spec);
      const shim = run(SHIM, c.spec);
      assert.equal(wrapper.calls().length - before, c.fast ? 0 : 1, c.fast ? 'answered without the shim' : 'handed to the shim');
      assert.equal(helper.status, shim.status, `exit status (shim stderr: ${shim.stderr.slice(0, 300)})`);
      assert.equal(helper.stdout, shim.stdout);
      assert.equal(helper.address, shim.address);
      if (c.group) assert.equal(helper.stdout, `unix://${socketFor(c.group)}`);
      else assert.notEqual(helper.status, 0);
    });
  }

  test('other commands and flags it does not know go to the shim unchanged', () => {
    const before = wrapper.calls().length;
    const spec = JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': 'podA' } });
    const version = run(HELPER!, spec, ['-v']);
    assert.equal(version.status, 0);
    assert.equal(version.stdout, run(SHIM, spec, ['-v']).stdout);
    const unknownFlag = run(HELPER!, spec, ['-namespace', ns, '-address', address, '-id', 'task-1', '-surprise', 'x', 'start']);
    assert.notEqual(unknownFlag.status, 0, 'the shim refuses a flag it does not know');
    assert.deepEqual(wrapper.calls().slice(before), [['-v'], ['-namespace', ns, '-address', address, '-id', 'task-1', '-surprise', 'x', 'start']]);
  });
});

/** Shim invocations that started (or joined) a task: `start` with `-id <id>`. */
function startsFor(calls: string[][], id: string): number {
  return calls.filter((argv) => argv.at(-1) === 'start' && argv[argv.indexOf('-id') + 1] === id).length;
}

function parentPid(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('PPid:'))!;
  return Number(line.split(/\s+/)[1]);
}

async function containerPid(s: Stack, id: string): Promise<number> {
  const st = await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true });
  return (JSON.parse(st.info.info!) as { pid: number }).pid;
}

async function removePod(s: Stack, podId: string): Promise<void> {
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: podId });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: podId });
}

for (const mode of [
  { name: 'with warm pod shims', config: {} },
  { name: 'without warm pod shims', config: { warm_pod_shims: false } },
  { name: 'turned off', config: { shim_start_helper: false } },
]) {
  describe(`crisp-shim-start under crispd, ${mode.name}`, { skip: !haveShim && 'containerd-shim-runc-v2 or native/build/crisp-shim-start missing' }, () => {
    const bin = mkdtempSync('/tmp/crisp-shim-path-');
    const wrapper = recordingShim(bin);
    const helperOn = !('shim_start_helper' in mode.config);
    const warm = !('warm_pod_shims' in mode.config);
    let s: Stack;
    before(async () => {
      // crispd finds the recording wrapper first in its PATH: the shim containerd would run.
      s = await startStack(mode.config, { env: { PATH: `${bin}:${process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'}` } });
    });
    after(async () => {
      assert.deepEqual(await s?.teardown(), []);
      rmSync(bin, { recursive: true, force: true });
    });

    test(helperOn ? 'containers joining the pod shim start without the shim binary' : 'the shim binary runs for every start', async () => {
      const ctdPid = Number(readFileSync(join(s.d.state, 'containerd', 'containerd.pid'), 'utf8'));
      const environ = readFileSync(`/proc/${ctdPid}/environ`, 'utf8').split('\0');
      const path = environ.find((e) => e.startsWith('PATH='));
      if (helperOn) {
        assert.ok(environ.includes(`CRISP_SHIM_BINARY=${wrapper.path}`), 'the real shim (the first in crispd PATH) is named for the helper');
        assert.ok(path?.startsWith(`PATH=${join(s.d.state, 'containerd', 'shim-bin')}:`), path);
      } else {
        assert.ok(!environ.some((e) => e.startsWith('CRISP_SHIM_BINARY=')));
        assert.ok(!path?.includes('shim-bin'), path);
      }

      const pod = await s.runPod('joins');
      const c1 = await s.runContainer(pod, 'one', ['sleep', '3600']);
      const c2 = await s.runContainer(pod, 'two', ['sleep', '3600']);
      const shim = parentPid(await containerPid(s, c1));
      assert.equal(parentPid(await containerPid(s, c2)), shim, 'both containers run under the pod shim');
      assert.match(readFileSync(`/proc/${shim}/cmdline`, 'utf8').split('\0')[0]!, /containerd-shim-runc-v2$/);

      const calls = wrapper.calls();
      // The first container: with a warm shim it joins; without, the helper hands the start to the shim.
      assert.equal(startsFor(calls, c1), helperOn && warm ? 0 : 1, `first container's start: ${JSON.stringify(calls)}`);
      assert.equal(startsFor(calls, c2), helperOn ? 0 : 1, `second container's start: ${JSON.stringify(calls)}`);
      if (warm) assert.equal(startsFor(calls, pod), 1, 'crispd started the warm shim with the real shim binary');
      await removePod(s, pod);
    });
  });
}
