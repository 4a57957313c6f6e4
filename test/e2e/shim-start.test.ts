// crisp-shim-start in front of the runc v2 shim. First the helper alone, against the real shim: for each
// spec it must give the answer the shim gives (exit status, stdout, the bundle's `address` file), and
// answer itself exactly where it can read the spec as the shim does (else it execs the shim, which a
// recording wrapper notices); a shim it starts must look like one the shim's start starts (arguments,
// environment, process group, OOM score, socket); the same for `delete` with bundles that have
// something left to clean up and bundles that do not. Then under crispd's embedded containerd: a container joining its pod's
// shim is started without running the shim binary, a pod's first container (no warm shim) still gets a
// shim of its own through the helper, and shim_start_helper = false runs the shim for every start.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { containerPid, parentPid, removePod } from './lib/pod-processes.js';
import { buildTreeCandidates } from '../../native/helper-paths.js';
import { codecFor } from '../../common/proto-registry.js';
import type { Options as RuncOptions } from '../../gen/containerd.runc.v1.js';
import { pidsWhere } from './lib/crispd.js';
import { sleep } from '../../common/time.js';

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

/** runtime options as containerd writes them to the shim's stdin: google.protobuf.Any{type_url, value}. */
function runtimeOptions(options: Partial<RuncOptions>): Buffer {
  const value = Buffer.from(codecFor<RuncOptions>('containerd.runc.v1.Options').encode(options));
  const type = Buffer.from('containerd.runc.v1.Options');
  return Buffer.concat([Buffer.from([0x0a, type.length]), type, Buffer.from([0x12, value.length]), value]);
}

describe('crisp-shim-start starting a shim, against the runc v2 shim', { skip: !haveShim && 'containerd-shim-runc-v2 or native/build/crisp-shim-start missing' }, () => {
  const dir = mkdtempSync('/tmp/crisp-shim-new-');
  const address = join(dir, 'containerd.sock');
  const ns = 'shimnew';
  const wrapper = recordingShim(join(dir, 'bin'));
  const socketFor = (group: string) => join('/run/containerd/s', createHash('sha256').update(`${address}/${ns}/${group}`).digest('hex'));
  // The shim daemon of `group` (its task id is `<group>-task`), once it runs the shim binary itself.
  const daemons = (group: string) =>
    pidsWhere((argv) => argv[0]?.endsWith('containerd-shim-runc-v2') === true && argv.includes(address) && argv.includes(`${group}-task`) && !argv.includes('start'));
  const stop = async (group: string) => {
    for (const pid of daemons(group)) process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 40 && daemons(group).length > 0; i++) await sleep(25);
    rmSync(socketFor(group), { force: true });
  };
  const logReaders: number[] = [];
  after(() => {
    for (const fd of logReaders) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });

  /** Start a shim for `group` with `binary`; what the shim it started looks like. */
  async function start(binary: string, group: string, stdin: Buffer) {
    const bundle = mkdtempSync(join(dir, 'bundle-'));
    writeFileSync(join(bundle, 'config.json'), JSON.stringify({ annotations: { 'io.kubernetes.cri.sandbox-id': group } }));
    // The daemon writes its log to the bundle's `log` FIFO (containerd reads it); without one it exits.
    execFileSync('mkfifo', [join(bundle, 'log')]);
    logReaders.push(openSync(join(bundle, 'log'), constants.O_RDWR | constants.O_NONBLOCK));
    const r = spawnSync(binary, ['-namespace', ns, '-address', address, '-publish-binary', '/usr/bin/containerd', '-id', `${group}-task`, 'start'], {
      cwd: bundle,
      input: stdin,
      env: { ...process.env, CRISP_SHIM_BINARY: wrapper.path, TTRPC_ADDRESS: `${address}.ttrpc`, GOMAXPROCS: '2' },
    });
    // A daemon the helper started execs the recording wrapper first, which execs the shim.
    for (let i = 0; i < 40 && daemons(group).length === 0; i++) await sleep(25);
    const [pid] = daemons(group);
    const shim = pid ? describeDaemon(pid, bundle, socketFor(group)) : undefined;
    const addressFile = join(bundle, 'address');
    return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString(), address: existsSync(addressFile) ? readFileSync(addressFile, 'utf8') : undefined, shim };
  }

  for (const c of [
    { name: 'no runtime options', stdin: Buffer.alloc(0), fast: true },
    { name: 'runc options without a shim cgroup', stdin: runtimeOptions({ root: '/run/x', binaryName: 'runc', systemdCgroup: false }), fast: true },
    { name: 'a shim cgroup (the shim puts itself there)', stdin: runtimeOptions({ shimCgroup: '/crisp-test-no-such-cgroup' }), fast: false },
  ]) {
    test(`${c.name}: ${c.fast ? 'started by the helper' : 'started by the shim'} as the shim starts one`, async () => {
      const group = `new-${c.fast ? 'f' : 's'}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
      const before = wrapper.calls().length;
      const helper = await start(HELPER!, group, c.stdin);
      const handed = wrapper.calls().slice(before);
      await stop(group);
      const shim = await start(SHIM, group, c.stdin);
      await stop(group);
      assert.equal(helper.status, shim.status, `exit status (shim: ${shim.stderr.slice(0, 300)}; helper: ${helper.stderr.slice(0, 300)})`);
      assert.equal(helper.stdout, shim.stdout);
      assert.equal(helper.address, shim.address);
      if (c.fast) {
        assert.equal(helper.stdout, `unix://${socketFor(group)}`);
        // The helper ran no `start`: only the daemon itself went through the (recording) shim binary.
        assert.deepEqual(handed, [['-namespace', ns, '-id', `${group}-task`, '-address', address]]);
        assert.deepEqual(helper.shim, shim.shim);
        assert.deepEqual(helper.shim?.env, [`GOMAXPROCS=4`, `TTRPC_ADDRESS=${address}.ttrpc`]);
        assert.equal(helper.shim?.oomScoreAdj, Math.min(1000, Number(readFileSync('/proc/self/oom_score_adj', 'utf8')) + 1));
        assert.equal(helper.shim?.socketMode, 0o600);
      } else {
        assert.equal(handed.at(0)?.at(-1), 'start', 'the start went to the shim, stdin replayed');
      }
    });
  }
});

/**
 * What a started shim daemon looks like; undefined when it went while being looked at (a start that
 * fails, e.g. on a shim cgroup that does not exist, kills the daemon it started and removes its socket).
 */
function describeDaemon(pid: number, bundle: string, socket: string) {
  try {
    return {
      argv: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(1),
      env: readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((e) => /^(GOMAXPROCS|TTRPC_ADDRESS)=/.test(e)).sort(),
      oomScoreAdj: Number(readFileSync(`/proc/${pid}/oom_score_adj`, 'utf8')),
      ownGroup: readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[2] === String(pid),
      cwd: readlinkSync(`/proc/${pid}/cwd`) === bundle,
      socketMode: statSync(socket).mode & 0o777,
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ESRCH') return undefined;
    throw err;
  }
}

/** containerd.task.v2.DeleteResponse: pid (1), exit_status (2), exited_at (3: Timestamp seconds, nanos). */
function decodeDeleteResponse(b: Buffer): { pid: number; exitStatus: number; exitedAt: number } {
  let at = 0;
  const varint = (end: number) => {
    let v = 0;
    for (let shift = 0; at < end; shift += 7) {
      const byte = b[at++]!;
      v += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return v;
    }
    throw new Error('truncated varint');
  };
  const out = { pid: 0, exitStatus: 0, exitedAt: 0 };
  while (at < b.length) {
    const tag = varint(b.length);
    if (tag === 0x08) out.pid = varint(b.length);
    else if (tag === 0x10) out.exitStatus = varint(b.length);
    else if (tag === 0x1a) {
      const length = varint(b.length);
      const end = at + length;
      while (at < end) {
        const t = varint(end);
        const v = varint(end);
        if (t === 0x08) out.exitedAt += v * 1000;
        else if (t === 0x10) out.exitedAt += v / 1e6;
      }
    } else throw new Error(`unexpected tag ${tag}`);
  }
  return out;
}

describe('crisp-shim-start delete against the runc v2 shim', { skip: !haveShim && 'containerd-shim-runc-v2 or native/build/crisp-shim-start missing' }, () => {
  const dir = mkdtempSync('/tmp/crisp-shim-delete-');
  const ns = `shimdel${process.pid}`;
  const wrapper = recordingShim(join(dir, 'bin'));
  const runcRoot = join(dir, 'runc-root');
  after(() => {
    spawnSync('umount', ['-R', join(dir, 'bundles')]);
    rmSync(dir, { recursive: true, force: true });
    // The shim's delete of a bundle without options.json runs runc with its default root, which makes
    // this namespace's (empty) directory there; the name is this process's own.
    rmSync(join('/run/containerd/runc', ns), { recursive: true, force: true });
  });

  /** A bundle as containerd and the shim leave it after a normal task delete, tweaked by `shape`. */
  function bundle(id: string, shape: { options?: string | null; runtime?: boolean; initPid?: string; state?: boolean; mounted?: boolean } = {}): string {
    const b = join(dir, 'bundles', id);
    mkdirSync(join(b, 'rootfs'), { recursive: true });
    if (shape.runtime !== false) writeFileSync(join(b, 'runtime'), 'runc');
    if (shape.options !== null) writeFileSync(join(b, 'options.json'), shape.options ?? JSON.stringify({ root: runcRoot }));
    if (shape.initPid !== undefined) writeFileSync(join(b, 'init.pid'), shape.initPid);
    if (shape.state) mkdirSync(join(runcRoot, ns, id), { recursive: true });
    if (shape.mounted) execFileSync('mount', ['-t', 'tmpfs', 'tmpfs', join(b, 'rootfs')]);
    return b;
  }

  function del(binary: string, id: string, b: string) {
    const r = spawnSync(binary, ['-namespace', ns, '-address', join(dir, 'c.sock'), '-publish-binary', '/usr/bin/containerd', '-id', id, '-bundle', b, 'delete'], {
      cwd: b,
      env: { ...process.env, CRISP_SHIM_BINARY: wrapper.path },
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr.toString() };
  }

  function compare(id: string, shape: Parameters<typeof bundle>[1], fast: boolean) {
    const before = wrapper.calls().length;
    const t0 = Date.now();
    const helper = del(HELPER!, id, bundle(id, shape));
    assert.equal(wrapper.calls().length - before, fast ? 0 : 1, fast ? 'answered without the shim' : 'handed to the shim');
    rmSync(join(dir, 'bundles', id), { recursive: true, force: true });
    rmSync(join(runcRoot, ns, id), { recursive: true, force: true });
    const shim = del(SHIM, `${id}-real`, bundle(`${id}-real`, shape));
    assert.equal(helper.status, shim.status, `exit status (shim stderr: ${shim.stderr.slice(0, 300)})`);
    if (shim.status !== 0) return;
    const a = decodeDeleteResponse(helper.stdout);
    const b = decodeDeleteResponse(shim.stdout);
    assert.equal(a.pid, b.pid);
    assert.equal(a.exitStatus, b.exitStatus);
    assert.equal(a.exitStatus, 137);
    assert.ok(a.exitedAt >= t0 - 1000 && a.exitedAt <= Date.now() + 1000, `exited_at ${a.exitedAt} is now`);
  }

  test('a cleaned-up bundle: answered as the shim answers, init.pid as the pid', () => compare('del-clean', { initPid: '4242' }, true));
  test('no init.pid: the pid the shim reports for an unreadable one', () => compare('del-nopid', {}, true));
  test('an empty init.pid: pid 0', () => compare('del-emptypid', { initPid: '' }, true));
  test('an init.pid that is no number: the shim reads it', () => compare('del-badpid', { initPid: '12ab' }, false));
  test('no options.json: the default runc root (no state of this namespace there)', () => compare('del-noopts', { options: null }, true));
  test('options.json with other fields and no root', () => compare('del-otheropts', { options: '{"binary_name":"runc","systemd_cgroup":true}', initPid: '7' }, true));
  test('runc state left: the shim cleans up', () => compare('del-state', { state: true, initPid: '4242' }, false));
  test('rootfs still mounted: the shim unmounts it', () => {
    compare('del-mounted', { mounted: true }, false);
    for (const id of ['del-mounted', 'del-mounted-real']) {
      const rootfs = join(dir, 'bundles', id, 'rootfs');
      assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${rootfs} `), `${rootfs} unmounted`);
    }
  });
  test('a root field in another case: the shim reads it', () => compare('del-case', { options: `{"Root":${JSON.stringify(runcRoot)}}` }, false));
  test('no runtime file: the shim fails, and so does the helper', () => compare('del-noruntime', { runtime: false }, false));
});

/** Shim invocations of `action` (start: start or join a task's shim; delete: clean up after it) for task `id`. */
function callsFor(calls: string[][], action: 'start' | 'delete', id: string): number {
  return calls.filter((argv) => argv.at(-1) === action && argv[argv.indexOf('-id') + 1] === id).length;
}
const startsFor = (calls: string[][], id: string) => callsFor(calls, 'start', id);
/** Shim daemons (`-namespace N -id ID -address A`, no action) started for task `id`. */
function daemonsFor(calls: string[][], id: string): number {
  return calls.filter((argv) => argv[0] === '-namespace' && !['start', 'delete'].includes(argv.at(-1)!) && argv[argv.indexOf('-id') + 1] === id).length;
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
      const seen = JSON.stringify(calls);
      // With the helper no `start` reaches the shim binary: joins are answered, new shims started by it.
      assert.equal(startsFor(calls, c1), helperOn ? 0 : 1, `first container's start: ${seen}`);
      assert.equal(startsFor(calls, c2), helperOn ? 0 : 1, `second container's start: ${seen}`);
      if (warm) {
        assert.equal(startsFor(calls, pod), helperOn ? 0 : 1, `crispd's warm start: ${seen}`);
        // The Go start runs its daemon from its own executable, past the recording wrapper.
        assert.equal(daemonsFor(calls, pod), helperOn ? 1 : 0, `the warm shim: ${seen}`);
      } else {
        assert.equal(daemonsFor(calls, c1), 1, `the first container's shim: ${seen}`);
      }

      // containerd runs the shim's `delete` whenever its connection to a task's shim closes, after a
      // normal task delete too: with nothing left to clean up, the helper answers it.
      await s.d.client.runtime.unary('StopContainer', { containerId: c2, timeout: 0 });
      await s.d.client.runtime.unary('RemoveContainer', { containerId: c2 });
      await removePod(s, pod);
      const after = wrapper.calls();
      assert.equal(callsFor(after, 'delete', c2), helperOn ? 0 : 1, `second container's cleanup: ${JSON.stringify(after.filter((a) => a.at(-1) === 'delete'))}`);
      assert.equal(callsFor(after, 'delete', c1), helperOn ? 0 : 1, `first container's cleanup: ${JSON.stringify(after.filter((a) => a.at(-1) === 'delete'))}`);
    });
  });
}
