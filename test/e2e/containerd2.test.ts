// crisp on containerd 2.x as an external containerd (containerd_address), next to the embedded 1.6
// default: a private containerd 2 (and its runc) from CRISP_CONTAINERD2_DIR (default /opt/ctrd2, the
// layout `dpkg -x` of Debian's containerd 2.1 and runc 1.3 debs gives: usr/bin/containerd, shim and
// runc first in its PATH) with its own root, state, socket and config (every CRI plugin and NRI off),
// then the container paths that go through containerd: pull, create/start, logs, exit codes, OOM,
// exec, resource updates, a pod's grouped shim exiting under a new create, kill -9 of crispd,
// a containerd restart, image removal and GC. Skipped when that containerd is not installed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { PrivateContainerd } from './lib/private-containerd.js';
import { ContainerdClient } from '../../backend/containerd/client.js';
import { sleep } from '../../common/time.js';

const CTRD2_DIR = process.env.CRISP_CONTAINERD2_DIR ?? '/opt/ctrd2';
const CTRD2_BIN = join(CTRD2_DIR, 'usr', 'bin', 'containerd');
const skip = existsSync(CTRD2_BIN) ? false : `no containerd 2 at ${CTRD2_BIN} (set CRISP_CONTAINERD2_DIR)`;

/** A private containerd 2 on its own socket, its own shim and runc first in PATH; every CRI plugin and NRI off (the embedded list). */
function containerd2(): PrivateContainerd {
  return new PrivateContainerd({
    binary: CTRD2_BIN,
    configVersion: 3,
    env: { ...process.env, PATH: [join(CTRD2_DIR, 'usr', 'bin'), join(CTRD2_DIR, 'usr', 'sbin'), process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin'].join(':') },
  });
}

describe('containerd 2 as external containerd', { skip }, () => {
  let ctd: PrivateContainerd;
  let s: Stack;
  let pod: string;

  /** Every pod the tests ran: their shims' group sockets must be gone once the pods are. */
  const pods: string[] = [];
  const runPod = async (name: string) => {
    const id = await s.runPod(name);
    pods.push(id);
    return id;
  };
  /** The group socket containerd 2's shims bind for a pod (hash of "<containerd socket>/k8s.io/<pod>"). */
  const groupSocket = (podId: string) => join('/run/containerd/s', createHash('sha256').update(join(ctd.socket, 'k8s.io', podId)).digest('hex'));

  before(async () => {
    ctd = containerd2();
    await ctd.start();
    s = await startStack({ containerd_address: ctd.socket });
    pod = await runPod('c2');
  });
  after(async () => {
    const rules = await s?.teardown().catch((e: unknown) => [`teardown: ${String(e)}`]);
    const leftSockets = pods.map(groupSocket).filter((path) => existsSync(path));
    await ctd?.cleanup();
    assert.deepEqual(rules ?? [], []);
    // containerd 2's shims remove only the socket named after their own id on exit: crisp removes the group's.
    assert.deepEqual(leftSockets, [], 'no shim socket left below /run/containerd/s');
  });

  const exec = async (id: string, cmd: string[], timeout = 10) => {
    const r = await s.d.client.runtime.unary('ExecSync', { containerId: id, cmd, timeout });
    return { out: r.stdout.toString(), code: r.exitCode };
  };
  const status = async (id: string) => (await s.d.client.runtime.unary('ContainerStatus', { containerId: id })).status!;
  const remove = (id: string) => s.d.client.runtime.unary('RemoveContainer', { containerId: id });
  const runtimeReady = async () => {
    const st = await s.d.client.runtime.unary('Status', {});
    return st.status!.conditions.find((c) => c.type === 'RuntimeReady')!.status;
  };

  test('Status names containerd 2 (not embedded) and RuntimeReady', async () => {
    const st = await s.d.client.runtime.unary('Status', { verbose: true });
    const info = JSON.parse(st.info.config!) as { containerd: { embedded: boolean; version: string; address: string } };
    assert.equal(info.containerd.embedded, false);
    assert.equal(info.containerd.address, ctd.socket);
    assert.match(info.containerd.version, /^2\./);
    assert.equal(await runtimeReady(), true);
  });

  test('containers: logs, exit codes, OOMKilled, ExecSync and its timeout, resource update, stats', async () => {
    const id = await s.runContainer(pod, 'main', ['sh', '-c', 'echo hello-ctrd2; echo to-stderr >&2; sleep 3600']);
    await sleep(300);
    const log = readFileSync((await status(id)).logPath, 'utf8');
    assert.match(log, /stdout F hello-ctrd2/);
    assert.match(log, /stderr F to-stderr/);
    assert.deepEqual(await exec(id, ['sh', '-c', 'echo in-exec; exit 7']), { out: 'in-exec\n', code: 7 });
    await assert.rejects(exec(id, ['sleep', '30'], 1), /DEADLINE_EXCEEDED|timed out/);
    await s.d.client.runtime.unary('UpdateContainerResources', { containerId: id, linux: { cpuPeriod: 100_000, cpuQuota: 50_000, memoryLimitInBytes: 64 * 1024 * 1024 } });
    const limit = await exec(id, ['sh', '-c', 'cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes']);
    assert.equal(limit.out.trim(), String(64 * 1024 * 1024));
    const stats = await s.d.client.runtime.unary('ContainerStats', { containerId: id });
    assert.ok((stats.stats?.memory?.workingSetBytes?.value ?? 0) > 0, 'memory stats');

    const bad = await s.runContainer(pod, 'exit3', ['sh', '-c', 'exit 3']);
    assert.deepEqual(await s.waitExited(bad), { exitCode: 3, reason: 'Error' });
    const ok = await s.runContainer(pod, 'exit0', ['true']);
    assert.deepEqual(await s.waitExited(ok), { exitCode: 0, reason: 'Completed' });
    const oom = await s.runContainer(pod, 'oom', ['sh', '-c', 'x=a; while true; do x="$x$x"; done'], {
      linux: { resources: { memoryLimitInBytes: 16 * 1024 * 1024, memorySwapLimitInBytes: 16 * 1024 * 1024 } },
    });
    assert.deepEqual(await s.waitExited(oom, 60_000), { exitCode: 137, reason: 'OOMKilled' });

    await s.d.client.runtime.unary('StopContainer', { containerId: id, timeout: 1 });
    assert.equal((await status(id)).state, 2);
    for (const c of [id, bad, ok, oom]) await remove(c);
  });

  test("a container starts while its pod's only other container exits (the grouped shim going away)", async () => {
    const p = await runPod('churn');
    for (let i = 0; i < 12; i++) {
      const a = await s.runContainer(p, `a${i}`, ['sh', '-c', `sleep 0.${i % 4}`]);
      const { containerId: b } = await s.d.client.runtime.unary('CreateContainer', { podSandboxId: p, config: s.containerConfig(`b${i}`, ['true']) });
      await sleep((i % 4) * 100 + (i % 3) * 15);
      await s.d.client.runtime.unary('StartContainer', { containerId: b });
      assert.deepEqual(await s.waitExited(b), { exitCode: 0, reason: 'Completed' });
      await s.waitExited(a);
      await remove(a);
      await remove(b);
    }
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: p });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: p });
  });

  test('kill -9 of crispd: running containers keep running; exits meanwhile are reported', async () => {
    const chatty = await s.runContainer(pod, 'chatty', ['sh', '-c', 'i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.05; done']);
    const shortLived = await s.runContainer(pod, 'short', ['sh', '-c', 'sleep 1.5; exit 5']);
    const logPath = (await status(chatty)).logPath;
    await s.d.kill9();
    const before = readFileSync(logPath, 'utf8').length;
    await sleep(2500);
    assert.ok(readFileSync(logPath, 'utf8').length > before, 'logs kept flowing while crispd was down');
    await s.d.start();
    assert.equal((await status(chatty)).state, 1, 'still running');
    assert.deepEqual(await s.waitExited(shortLived, 5000), { exitCode: 5, reason: 'Error' });
    await s.d.client.runtime.unary('StopContainer', { containerId: chatty, timeout: 1 });
    await remove(chatty);
    await remove(shortLived);
  });

  test('containerd restart: RuntimeReady drops and returns, containers survive, later exits are reported', async () => {
    const long = await s.runContainer(pod, 'survivor', ['sleep', '3600']);
    const later = await s.runContainer(pod, 'later', ['sh', '-c', 'sleep 4; exit 9']);
    await ctd.stop();
    let ready = true;
    for (let i = 0; i < 50 && ready; i++) {
      ready = await runtimeReady();
      if (ready) await sleep(100);
    }
    assert.equal(ready, false, 'RuntimeReady=false while containerd is down');
    await ctd.start();
    for (let i = 0; i < 100 && !ready; i++) {
      ready = await runtimeReady();
      if (!ready) await sleep(100);
    }
    assert.equal(ready, true, 'RuntimeReady again');
    assert.equal((await status(long)).state, 1);
    assert.deepEqual(await exec(long, ['echo', 'after-restart']), { out: 'after-restart\n', code: 0 });
    assert.deepEqual(await s.waitExited(later, 15_000), { exitCode: 9, reason: 'Error' });
    await s.d.client.runtime.unary('StopContainer', { containerId: long, timeout: 1 });
    await remove(long);
    await remove(later);
  });

  test('RemoveImage: containerd 2 collects the content', async () => {
    const client = new ContainerdClient({ address: ctd.socket, namespace: 'k8s.io', timeoutMs: 10_000 });
    try {
      const ids = (await s.d.client.runtime.unary('ListContainers', {})).containers.map((c) => c.id);
      for (const id of ids) await remove(id);
      const has = () => client.content.unary('Info', { digest: s.imageId }).then(() => true, () => false);
      assert.equal(await has(), true, 'config blob present after the pull');
      await s.d.client.image.unary('RemoveImage', { image: { image: s.image } });
      let gone = false;
      for (let i = 0; i < 50 && !gone; i++) {
        gone = !(await has());
        if (!gone) await sleep(100);
      }
      assert.ok(gone, 'config blob collected by containerd GC');
      assert.deepEqual((await s.d.client.image.unary('ListImages', {})).images, []);
    } finally {
      client.close();
    }
  });
});
