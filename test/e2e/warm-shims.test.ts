// Warm pod shims against the embedded containerd: RunPodSandbox starts the pod's runc v2 shim from
// <state>/shims/<pod>; the pod's containers run under that very shim (containerd's own `start` finds
// the group's socket served); stopping or removing the pod ends it and leaves no process, socket or
// directory; a kill -9 of crispd keeps a warm shim usable; warm_pod_shims = false starts none.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { startStack, type Stack } from './lib/stack.js';
import { containerPid, parentPid, removePod } from './lib/pod-processes.js';
import { isAlive, pidsWhere } from './lib/crispd.js';
import { sleep } from '../../common/time.js';

/** Pids of runc v2 shims of this crispd's containerd serving group `podId`. */
function shimPids(s: Stack, podId: string): number[] {
  const address = join(s.d.state, 'containerd', 'containerd.sock');
  return pidsWhere((argv) => argv[0]?.endsWith('containerd-shim-runc-v2') === true && argv.includes(address) && argv.includes(podId) && !argv.includes('start'));
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** sha256("<containerd address>/<namespace>/<pod>") below /run/containerd/s, as containerd's shims name it. */
function groupSocket(s: Stack, podId: string): string {
  const address = join(s.d.state, 'containerd', 'containerd.sock');
  return join('/run/containerd/s', createHash('sha256').update(join(address, 'k8s.io', podId)).digest('hex'));
}

function socketOf(s: Stack, podId: string): string {
  return readFileSync(join(s.d.state, 'shims', podId, 'address'), 'utf8').trim().replace(/^unix:\/\//, '');
}

/** The pid of the pod's shim, once it runs. */
async function warmShim(s: Stack, podId: string): Promise<number> {
  const [pid] = await waitFor('the warm shim', () => {
    const p = shimPids(s, podId);
    return p.length > 0 ? p : undefined;
  });
  return pid!;
}

describe('warm pod shims', () => {
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => {
    assert.deepEqual(await s?.teardown(), []);
  });

  test('the pod shim starts with the pod and runs its containers', async () => {
    const pod = await s.runPod('warm-a');
    const shim = await warmShim(s, pod);
    assert.equal(readlinkSync(`/proc/${shim}/cwd`), join(s.d.state, 'shims', pod));
    const socket = await waitFor('the shim address', () => (existsSync(join(s.d.state, 'shims', pod, 'address')) ? socketOf(s, pod) : undefined));
    assert.equal(socket, groupSocket(s, pod), 'the socket containerd derives for the pod group');

    const c1 = await s.runContainer(pod, 'one', ['sleep', '3600']);
    const c2 = await s.runContainer(pod, 'two', ['sleep', '3600']);
    assert.equal(parentPid(await containerPid(s, c1)), shim, 'first container runs under the warm shim');
    assert.equal(parentPid(await containerPid(s, c2)), shim, 'second container runs under the warm shim');
    assert.deepEqual(shimPids(s, pod), [shim], 'containerd started no second shim for the pod');

    await removePod(s, pod);
    await waitFor('the shim to exit', () => (shimPids(s, pod).length === 0 ? true : undefined));
    assert.equal(existsSync(socket), false, 'shim socket removed');
    assert.equal(existsSync(join(s.d.state, 'shims', pod)), false, 'shim directory removed');
  });

  test('a container that exits takes the pod shim with it; the next one finds a new warm shim', async () => {
    const pod = await s.runPod('warm-d');
    const first = await warmShim(s, pod);
    const c1 = await s.runContainer(pod, 'short', ['true']);
    await s.waitExited(c1);
    await waitFor('the first shim to exit', () => (shimPids(s, pod).includes(first) ? undefined : true));
    // The one shim serving the pod again, started from the pod's warm-shim directory.
    const [second] = await waitFor('a new warm shim', () => {
      const p = shimPids(s, pod).filter((x) => x !== first);
      return p.length === 1 && existsSync(`/proc/${p[0]}/cwd`) ? p : undefined;
    });
    assert.equal(readlinkSync(`/proc/${second}/cwd`), join(s.d.state, 'shims', pod));
    const c2 = await s.runContainer(pod, 'long', ['sleep', '3600']);
    assert.equal(parentPid(await containerPid(s, c2)), second, 'the restarted container runs under the new warm shim');
    await removePod(s, pod);
    await waitFor('the shim to exit', () => (shimPids(s, pod).length === 0 ? true : undefined));
  });

  test('a pod removed without ever running a container ends its idle shim', async () => {
    const pod = await s.runPod('warm-b');
    await warmShim(s, pod);
    const socket = await waitFor('the shim address', () => (existsSync(join(s.d.state, 'shims', pod, 'address')) ? socketOf(s, pod) : undefined));
    await removePod(s, pod);
    assert.deepEqual(shimPids(s, pod), [], 'no shim left');
    assert.equal(existsSync(socket), false, 'shim socket removed');
    assert.equal(existsSync(join(s.d.state, 'shims', pod)), false, 'shim directory removed');
  });

  test('a warm shim that lost the group socket (another shim took it) is ended by pid when its pod goes', async () => {
    // What critest left behind: containerd's own start for the first container raced the warm start and
    // bound the group socket to a shim of its own; crisp's shim then idled unreachable. Here its socket
    // file is removed, so Shutdown cannot reach it either.
    const pod = await s.runPod('warm-lost');
    const pid = await warmShim(s, pod);
    const socket = await waitFor('the shim address', () => (existsSync(join(s.d.state, 'shims', pod, 'address')) ? socketOf(s, pod) : undefined));
    rmSync(socket);
    await removePod(s, pod);
    await waitFor('the unreachable shim to be killed', () => (shimPids(s, pod).length === 0 ? true : undefined));
    // Reaped, or a zombie until its new parent (pid 1) reaps it: either way it runs no more.
    assert.ok(!isAlive(pid) || /^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')), `shim ${pid} is gone`);
    await waitFor('the warning', () => (/a warm shim nobody could reach outlived its pod; killing it/.test(s.d.logs) ? true : undefined));
    assert.equal(existsSync(join(s.d.state, 'shims', pod)), false, 'shim directory removed');
  });

  test('after kill -9 of crispd the warm shim still serves the pod, and goes with it', async () => {
    const pod = await s.runPod('warm-c');
    const shim = await warmShim(s, pod);
    await waitFor('the shim address', () => (existsSync(join(s.d.state, 'shims', pod, 'address')) ? true : undefined));
    await s.d.kill9();
    await s.d.start();
    const c = await s.runContainer(pod, 'after', ['sleep', '3600']);
    assert.equal(parentPid(await containerPid(s, c)), shim, 'the container runs under the shim started before the crash');
    const socket = socketOf(s, pod);
    await removePod(s, pod);
    await waitFor('the shim to exit', () => (shimPids(s, pod).length === 0 ? true : undefined));
    assert.equal(existsSync(socket), false, 'shim socket removed');
  });
});

describe('warm pod shims off', () => {
  let s: Stack;
  before(async () => {
    s = await startStack({ warm_pod_shims: false });
  });
  after(async () => {
    assert.deepEqual(await s?.teardown(), []);
  });

  test('no shim runs for a pod until its first container starts', async () => {
    const pod = await s.runPod('cold');
    await sleep(500);
    assert.deepEqual(shimPids(s, pod), []);
    assert.equal(existsSync(join(s.d.state, 'shims', pod)), false);
    const c = await s.runContainer(pod, 'one', ['sleep', '3600']);
    // containerd started the shim for the container (named after it, in its bundle).
    const shim = parentPid(await containerPid(s, c));
    const argv = readFileSync(`/proc/${shim}/cmdline`, 'utf8').split('\0');
    assert.match(argv[0]!, /containerd-shim-runc-v2$/);
    assert.equal(argv[argv.indexOf('-id') + 1], c);
    assert.equal(existsSync(join(s.d.state, 'shims')), false, 'no warm shim directory');
    await removePod(s, pod);
  });
});

describe('one shim for the node (shim_grouping = "node")', () => {
  let s: Stack;
  const exec = async (id: string) => (await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd: ['echo', 'ok'], timeout: 10 })).stdout.toString().trim();
  before(async () => {
    s = await startStack({ shim_grouping: 'node' });
  });
  after(async () => {
    assert.deepEqual(await s?.teardown(), []);
  });

  test("every container of every pod runs under one shim, which outlives a pod's removal and crispd's kill -9, and goes with the last container", async () => {
    const address = join(s.d.state, 'containerd', 'containerd.sock');
    const shims = () => pidsWhere((argv) => argv[0]?.endsWith('containerd-shim-runc-v2') === true && argv.includes(address) && !argv.includes('start') && !argv.includes('delete'));
    const [a, b] = [await s.runPod('node-a'), await s.runPod('node-b')];
    assert.equal(existsSync(join(s.d.state, 'shims')), false, 'no warm shim per pod');
    const ctrs = [
      await s.runContainer(a, 'one', ['sleep', '3600']),
      await s.runContainer(a, 'two', ['sleep', '3600']),
      await s.runContainer(b, 'one', ['sleep', '3600']),
    ];
    const parents = new Set(await Promise.all(ctrs.map(async (c) => parentPid(await containerPid(s, c)))));
    assert.equal(parents.size, 1, 'one shim parents all three containers');
    const [shim] = [...parents];
    assert.deepEqual(shims(), [shim]);
    const spec = JSON.parse((await s.d.client.runtime.unary('ContainerStatus', { containerId: ctrs[2]!, verbose: true })).info.info!) as { runtimeSpec: { annotations: Record<string, string> } };
    assert.equal(spec.runtimeSpec.annotations['io.containerd.runc.v2.group'], 'crisp-node');
    assert.equal(spec.runtimeSpec.annotations['io.kubernetes.cri.sandbox-id'], b, 'the pod id stays where kubelet and tools read it');

    await removePod(s, a);
    assert.equal(await exec(ctrs[2]!), 'ok', "pod b's container is untouched");
    assert.ok(isAlive(shim!), "the shim outlives pod a's removal");

    await s.d.kill9();
    await s.d.start();
    assert.equal(await exec(ctrs[2]!), 'ok', 'after kill -9 the container runs on under the same shim');
    assert.deepEqual(shims(), [shim]);

    await removePod(s, b);
    await waitFor('the shim to exit with the last container', () => (shims().length === 0 ? true : undefined));
  });
});
