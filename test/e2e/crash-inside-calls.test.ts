// crispd killed (-9) inside a call, at measured moments, then restarted and the call retried as
// kubelet would: the retry gets a clean result and nothing the interrupted call made is left behind
// (mounts, pinned namespaces, IPs, pod directories without a record, cgroups, exec FIFOs).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { startStack, type Stack } from './lib/stack.js';
import { mountsBelow } from './lib/crispd.js';
import { sleep } from '../../common/time.js';
import { ContainerState, PodSandboxState } from '../../gen/runtime.v1.js';
import { ContainerdClient } from '../../backend/containerd/client.js';

const KILL_DELAYS_MS = [20, 60, 120, 200, 320, 500];

describe('crispd killed inside a call', () => {
  let s: Stack;
  before(async () => {
    s = await startStack();
  });
  after(async () => {
    const rules = await s.teardown();
    assert.deepEqual(rules, []);
  });

  const livePods = async () => (await s.d.client.runtime.unary('ListPodSandbox', {})).items;
  /** Pod directories with no record, and run directories of pods crisp does not list. */
  const leftovers = async () => {
    const ids = new Set((await livePods()).map((p) => p.id));
    const podDirs = readdirSync(join(s.d.root, 'pods')).filter((id) => !existsSync(join(s.d.root, 'pods', id, 'pod.json')));
    const runDirs = existsSync(join(s.d.state, 'pods')) ? readdirSync(join(s.d.state, 'pods')).filter((id) => !ids.has(id)) : [];
    const mounts = mountsBelow(join(s.d.state, 'pods')).filter((m) => ![...ids].some((id) => m.includes(id)));
    const ipDir = join(s.net.dataDir, s.net.name);
    const ips = existsSync(ipDir) ? readdirSync(ipDir).filter((f) => /^\d/.test(f)).length : 0;
    return { podDirs, runDirs, mounts, ips, pods: ids.size };
  };

  test('RunPodSandbox: every interrupted attempt is taken apart at the next start; the retry gets a ready pod', async () => {
    for (const [i, delay] of KILL_DELAYS_MS.entries()) {
      const config = s.podConfig(`crash-run-${i}`);
      const call = s.d.client.runtime.unary('RunPodSandbox', { config }).then(
        (r) => r.podSandboxId,
        () => undefined,
      );
      await sleep(delay);
      await s.d.kill9();
      await call;
      await s.d.start();
      const left = await leftovers();
      assert.deepEqual({ podDirs: left.podDirs, runDirs: left.runDirs, mounts: left.mounts }, { podDirs: [], runDirs: [], mounts: [] }, `after a kill ${delay} ms into RunPodSandbox`);
      assert.equal(left.ips, left.pods, `one IP per listed pod (kill at ${delay} ms)`);
      // kubelet's retry: the same request again.
      const id = (await s.d.client.runtime.unary('RunPodSandbox', { config })).podSandboxId;
      const st = await s.d.client.runtime.unary('PodSandboxStatus', { podSandboxId: id });
      assert.equal(st.status?.state, PodSandboxState.SANDBOX_READY);
      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: id });
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: id });
    }
    const left = await leftovers();
    assert.deepEqual(left, { podDirs: [], runDirs: [], mounts: [], ips: 0, pods: 0 });
  });

  test('CreateContainer: a containerd container left without a record is removed at the next start; the retry works', async () => {
    const pod = await s.runPod('crash-create');
    const ctd = () => new ContainerdClient({ address: join(s.d.state, 'containerd', 'containerd.sock'), namespace: 'k8s.io', timeoutMs: 10_000 });
    for (const [i, delay] of KILL_DELAYS_MS.entries()) {
      const config = s.containerConfig(`create-${i}`, ['sleep', '3600']);
      const call = s.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config }).catch(() => undefined);
      await sleep(delay);
      await s.d.kill9();
      await call;
      await s.d.start();
      const known = new Set((await s.d.client.runtime.unary('ListContainers', {})).containers.map((c) => c.id));
      const client = ctd();
      try {
        const inContainerd = (await client.containers.unary('List', { filters: ['labels."io.crisp.pod"'] })).containers.map((c) => c.id);
        assert.deepEqual(inContainerd.filter((id) => !known.has(id)), [], `kill at ${delay} ms: no containerd container without a crisp record`);
      } finally {
        client.close();
      }
      const { containerId } = await s.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config }).catch(async () => {
        // The first attempt finished before the kill: its container holds the name.
        const existing = (await s.d.client.runtime.unary('ListContainers', { filter: { podSandboxId: pod } })).containers.find((c) => c.metadata?.name === `create-${i}`);
        return { containerId: existing!.id };
      });
      await s.d.client.runtime.unary('RemoveContainer', { containerId });
    }
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
  });

  test('StartContainer: a task started before the kill is adopted; status, retry, stop and remove work', async () => {
    const pod = await s.runPod('crash-start');
    for (const [i, delay] of KILL_DELAYS_MS.entries()) {
      const { containerId } = await s.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config: s.containerConfig(`c${i}`, ['sleep', '3600']) });
      const call = s.d.client.runtime.unary('StartContainer', { containerId }).catch(() => undefined);
      await sleep(delay);
      await s.d.kill9();
      await call;
      await s.d.start();
      // The retry succeeds whether the first attempt got the task running or not.
      await s.d.client.runtime.unary('StartContainer', { containerId });
      const st = (await s.d.client.runtime.unary('ContainerStatus', { containerId })).status!;
      assert.equal(st.state, ContainerState.CONTAINER_RUNNING, `kill at ${delay} ms: running after the retry`);
      await s.d.client.runtime.unary('StopContainer', { containerId, timeout: 0 });
      assert.equal((await s.d.client.runtime.unary('ContainerStatus', { containerId })).status!.state, ContainerState.CONTAINER_EXITED);
      await s.d.client.runtime.unary('RemoveContainer', { containerId });
    }
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
  });

  test('ExecSync: the FIFOs an interrupted exec left are drained and removed; the pod stops promptly', async () => {
    const pod = await s.runPod('crash-exec');
    const ctr = await s.runContainer(pod, 'main', ['sleep', '3600']);
    for (const delay of [30, 70, 150]) {
      const call = s.d.client.runtime.unary('ExecSync', { containerId: ctr, cmd: ['sh', '-c', 'echo started; sleep 2'], timeout: 10 }).catch(() => undefined);
      await sleep(delay);
      await s.d.kill9();
      await call;
      await s.d.start();
    }
    const execDir = join(s.d.state, 'exec');
    for (let i = 0; i < 50 && existsSync(execDir) && readdirSync(execDir).length > 0; i++) await sleep(100);
    assert.deepEqual(existsSync(execDir) ? readdirSync(execDir) : [], [], 'no exec directory left');
    assert.equal((await s.d.client.runtime.unary('ExecSync', { containerId: ctr, cmd: ['echo', 'ok'], timeout: 10 })).stdout.toString(), 'ok\n');
    const t0 = Date.now();
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: pod });
    assert.ok(Date.now() - t0 < 10_000, `StopPodSandbox took ${Date.now() - t0} ms`);
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod });
  });
});
