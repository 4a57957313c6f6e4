// containerd killed (-9) under crispd while pods run and a client keeps working. Embedded: crispd
// reports RuntimeReady=false with a reason, restarts its containerd, reconciles; running containers
// kept running and logging, calls made meanwhile failed cleanly (never past their deadline), and the
// resource census ends where it started. External (`containerd_address`, a containerd this test runs):
// while it is gone every call answers OK or UNAVAILABLE within its deadline, and all works again once
// it is back, with nothing left behind.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { uniqueId } from './lib/crispd.js';
import { PrivateContainerd } from './lib/private-containerd.js';
import { takeCensus, settledDiff, type CensusTarget } from './lib/resource-census.js';
import { TICK_CMD, TICK_MS, readTickLog } from './lib/tick-log.js';
import { CriClient } from '../../cri/client.js';
import { isGrpcError, errorMessage } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { ContainerState } from '../../gen/runtime.v1.js';

const DEADLINE_MS = 5000;
/** A call may return this much after its deadline (scheduling on a loaded 2-core machine). */
const DEADLINE_SLACK_MS = 1500;

interface Outcome {
  method: string;
  ms: number;
  code: string;
  message: string;
}

function codeName(err: unknown): string {
  return isGrpcError(err) ? (grpc.status[err.code] ?? String(err.code)) : `not a gRPC error: ${errorMessage(err)}`;
}

/** Calls through a client with a deadline, recording each outcome. */
function recorder(cri: CriClient, out: Outcome[]) {
  return async <T>(method: string, call: () => Promise<T>): Promise<T> => {
    const t0 = Date.now();
    try {
      const r = await call();
      out.push({ method, ms: Date.now() - t0, code: 'OK', message: '' });
      return r;
    } catch (err) {
      out.push({ method, ms: Date.now() - t0, code: codeName(err), message: errorMessage(err).slice(0, 200) });
      throw err;
    }
  };
}

async function runtimeCondition(s: Stack): Promise<{ ready: boolean; reason: string; message: string }> {
  const st = await s.d.client.runtime.unary('Status', {});
  const c = st.status?.conditions.find((x) => x.type === 'RuntimeReady');
  return { ready: c?.status ?? false, reason: c?.reason ?? '', message: c?.message ?? '' };
}

/** Removes every pod but `keep` (the client's half-done ones). */
async function removePodsExcept(s: Stack, keep: Set<string>): Promise<void> {
  for (const p of (await s.d.client.runtime.unary('ListPodSandbox', {})).items) {
    if (keep.has(p.id)) continue;
    await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: p.id });
    await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: p.id });
  }
}

describe('embedded containerd killed under traffic', () => {
  let s: Stack | undefined;
  after(async () => {
    if (s) assert.deepEqual(await s.teardown(), []);
  });

  test('RuntimeReady false with a reason, containerd restarted, state reconciled, nothing leaked', async (t) => {
    const cgroupParent = `/crisp-e2e-${uniqueId()}`;
    s = await startStack({ cgroup_parent: cgroupParent });
    const stack = s;
    const target: CensusTarget = { d: stack.d, net: stack.net, cgroupParent };
    const empty = await takeCensus(target);
    const steady: { pod: string; tick: string; idle: string; log: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const name = `ctd-steady-${i}`;
      const pod = await stack.runPod(name);
      steady.push({
        pod,
        tick: await stack.runContainer(pod, 'tick', TICK_CMD),
        idle: await stack.runContainer(pod, 'idle', ['sleep', '3600']),
        log: join(stack.podConfig(name).logDirectory!, 'tick', '0.log'),
      });
    }
    await sleep(300);
    const baseline = await takeCensus(target);

    // The client: pod → container → start → exec → stop → remove, over and over; failures allowed
    // while containerd is down, as long as they are clean and within the deadline.
    const cri = new CriClient(stack.d.endpoint, DEADLINE_MS);
    const outcomes: Outcome[] = [];
    const call = recorder(cri, outcomes);
    let stop = false;
    const cycleEnds: number[] = [];
    const traffic = (async () => {
      for (let k = 0; !stop; k++) {
        try {
          const name = `ctd-churn-${k}`;
          const pod = (await call('RunPodSandbox', () => cri.runtime.unary('RunPodSandbox', { config: stack.podConfig(name) }))).podSandboxId;
          const { containerId } = await call('CreateContainer', () => cri.runtime.unary('CreateContainer', { podSandboxId: pod, config: stack.containerConfig('work', ['sleep', '3600']) }));
          await call('StartContainer', () => cri.runtime.unary('StartContainer', { containerId }));
          await call('ExecSync', () => cri.runtime.unary('ExecSync', { containerId, cmd: ['true'], timeout: 4 }));
          await call('ExecSync', () => cri.runtime.unary('ExecSync', { containerId: steady[k % 3]!.idle, cmd: ['true'], timeout: 4 }));
          await call('StopPodSandbox', () => cri.runtime.unary('StopPodSandbox', { podSandboxId: pod }));
          await call('RemovePodSandbox', () => cri.runtime.unary('RemovePodSandbox', { podSandboxId: pod }));
          cycleEnds.push(Date.now());
        } catch {
          await sleep(100); // recorded; the half-done pod is removed after the outage
        }
      }
    })();

    await sleep(1500);
    const ticks = steady.map((p) => readTickLog(p.log).last);
    const oldPid = stack.d.containerdPid()!;
    const killedAt = Date.now();
    process.kill(oldPid, 'SIGKILL');
    let down: { ready: boolean; reason: string; message: string } | undefined;
    let downAt = 0;
    while (Date.now() - killedAt < 10_000) {
      const c = await runtimeCondition(stack);
      if (!c.ready) {
        down = c;
        downAt = Date.now();
        break;
      }
      await sleep(50);
    }
    assert.ok(down, 'RuntimeReady went false');
    assert.notEqual(down.reason, '', 'with a reason');
    assert.notEqual(down.message, '', 'and a message');
    let upAt = 0;
    while (Date.now() - killedAt < 60_000) {
      if ((await runtimeCondition(stack)).ready) {
        upAt = Date.now();
        break;
      }
      await sleep(100);
    }
    assert.ok(upAt > 0, 'RuntimeReady true again within 60 s');
    assert.notEqual(stack.d.containerdPid(), oldPid, 'a new containerd');
    // Traffic goes on after the restart until a whole cycle has worked.
    const cycleDeadline = Date.now() + 30_000;
    while (!cycleEnds.some((at) => at > upAt + 500) && Date.now() < cycleDeadline) await sleep(100);
    stop = true;
    await traffic;
    cri.close();
    const failed = outcomes.filter((o) => o.code !== 'OK');
    const late = outcomes.filter((o) => o.ms > DEADLINE_MS + DEADLINE_SLACK_MS);
    t.diagnostic(
      `RuntimeReady false ${downAt - killedAt} ms after the kill (${down.reason}: ${down.message}), true again after ${upAt - killedAt} ms; ` +
        `${outcomes.length} calls, ${failed.length} failed (${[...new Set(failed.map((o) => `${o.method} ${o.code}`))].join(', ')}); slowest ${Math.max(...outcomes.map((o) => o.ms))} ms`,
    );
    assert.ok(cycleEnds.some((at) => at > upAt + 500), 'a full client cycle worked after the restart');
    assert.deepEqual(late.map((o) => `${o.method} ${o.ms} ms`), [], 'no call ran past its deadline');
    assert.deepEqual(failed.filter((o) => o.code !== 'UNAVAILABLE').map((o) => `${o.method} ${o.code}: ${o.message}`), [], 'failures are UNAVAILABLE');

    // Reconciled: the running containers kept running and logging, exec works, nothing leaked.
    await removePodsExcept(stack, new Set(steady.map((p) => p.pod)));
    const listed = new Map((await stack.d.client.runtime.unary('ListContainers', {})).containers.map((c) => [c.id, c.state]));
    for (const [i, p] of steady.entries()) {
      assert.equal(listed.get(p.tick), ContainerState.CONTAINER_RUNNING);
      assert.equal(listed.get(p.idle), ContainerState.CONTAINER_RUNNING);
      const log = readTickLog(p.log);
      assert.deepEqual(log.gaps, [], `pod ${i}'s tick log`);
      assert.ok(log.last > ticks[i]! + (upAt - killedAt) / TICK_MS / 2, `pod ${i} kept ticking (${ticks[i]} → ${log.last})`);
      assert.equal((await stack.d.client.runtime.unary('ExecSync', { containerId: p.idle, cmd: ['echo', 'ok'], timeout: 10 })).stdout.toString(), 'ok\n');
    }
    assert.deepEqual(await settledDiff(target, baseline), [], 'census with the steady pods');
    await removePodsExcept(stack, new Set());
    assert.deepEqual(await settledDiff(target, empty), [], 'census once every pod is removed');
  });
});

describe('external containerd that goes away and comes back', () => {
  let s: Stack | undefined;
  let ctd: PrivateContainerd | undefined;
  after(async () => {
    try {
      if (s) assert.deepEqual(await s.teardown(), []);
    } finally {
      await ctd?.cleanup();
    }
  });

  test('calls answer OK or UNAVAILABLE within their deadline, and work again once it is back', async (t) => {
    ctd = new PrivateContainerd();
    await ctd.start();
    const cgroupParent = `/crisp-e2e-${uniqueId()}`;
    s = await startStack({ cgroup_parent: cgroupParent, containerd_address: ctd.socket });
    const stack = s;
    const target: CensusTarget = { d: stack.d, net: stack.net, cgroupParent, containerdAddress: ctd.socket, containerdDir: ctd.dir };
    const empty = await takeCensus(target);
    const pod = await stack.runPod('ext-steady');
    const tick = await stack.runContainer(pod, 'tick', TICK_CMD);
    const idle = await stack.runContainer(pod, 'idle', ['sleep', '3600']);
    const log = join(stack.podConfig('ext-steady').logDirectory!, 'tick', '0.log');
    const spare = (await stack.d.client.runtime.unary('CreateContainer', { podSandboxId: pod, config: stack.containerConfig('spare', ['true']) })).containerId;
    await sleep(300);
    const baseline = await takeCensus(target);

    await ctd.kill9();
    const cri = new CriClient(stack.d.endpoint, DEADLINE_MS);
    const outcomes: Outcome[] = [];
    const call = recorder(cri, outcomes);
    const attempt = <T>(method: string, fn: () => Promise<T>) => call(method, fn).catch(() => undefined);
    const down = await runtimeCondition(stack);
    await attempt('ContainerStatus', () => cri.runtime.unary('ContainerStatus', { containerId: idle }));
    await attempt('ListContainers', () => cri.runtime.unary('ListContainers', {}));
    await attempt('ExecSync', () => cri.runtime.unary('ExecSync', { containerId: idle, cmd: ['true'], timeout: 3 }));
    await attempt('CreateContainer', () => cri.runtime.unary('CreateContainer', { podSandboxId: pod, config: stack.containerConfig('during', ['sleep', '3600']) }));
    await attempt('StartContainer', () => cri.runtime.unary('StartContainer', { containerId: spare }));
    await attempt('RemoveContainer', () => cri.runtime.unary('RemoveContainer', { containerId: spare }));
    const other = await attempt('RunPodSandbox', () => cri.runtime.unary('RunPodSandbox', { config: stack.podConfig('ext-during') }));
    await attempt('PullImage', () => cri.image.unary('PullImage', { image: { image: stack.image } }));
    await attempt('ImageStatus', () => cri.image.unary('ImageStatus', { image: { image: stack.image } }));
    await attempt('ListImages', () => cri.image.unary('ListImages', {}));
    await attempt('ImageFsInfo', () => cri.image.unary('ImageFsInfo', {}));
    await attempt('ContainerStats', () => cri.runtime.unary('ContainerStats', { containerId: idle }));
    await attempt('StopPodSandbox', () => cri.runtime.unary('StopPodSandbox', { podSandboxId: other?.podSandboxId ?? 'none' }));
    await attempt('RemovePodSandbox', () => cri.runtime.unary('RemovePodSandbox', { podSandboxId: other?.podSandboxId ?? 'none' }));

    t.diagnostic(`while containerd was gone (RuntimeReady ${down.ready}, ${down.reason}): ${outcomes.map((o) => `${o.method} ${o.code} ${o.ms} ms`).join('; ')}`);
    assert.equal(down.ready, false);
    assert.notEqual(down.reason, '');
    assert.deepEqual(outcomes.filter((o) => o.ms > DEADLINE_MS + DEADLINE_SLACK_MS).map((o) => `${o.method} ${o.ms} ms`), [], 'no call past its deadline');
    assert.deepEqual(outcomes.filter((o) => o.code !== 'OK' && o.code !== 'UNAVAILABLE').map((o) => `${o.method} ${o.code}: ${o.message}`), [], 'OK or UNAVAILABLE');
    for (const m of ['ExecSync', 'CreateContainer', 'StartContainer', 'PullImage']) {
      assert.equal(outcomes.find((o) => o.method === m)?.code, 'UNAVAILABLE', `${m} needs containerd`);
    }

    const backAt = Date.now();
    await ctd.start();
    let upAfter = -1;
    for (let i = 0; i < 200; i++) {
      if ((await runtimeCondition(stack)).ready) {
        upAfter = Date.now() - backAt;
        break;
      }
      await sleep(100);
    }
    assert.ok(upAfter >= 0, 'RuntimeReady true again');
    assert.equal((await cri.runtime.unary('ExecSync', { containerId: idle, cmd: ['echo', 'back'], timeout: 10 })).stdout.toString(), 'back\n');
    const fresh = await stack.runContainer(pod, 'after', ['sleep', '3600']);
    assert.equal((await cri.runtime.unary('ContainerStatus', { containerId: fresh })).status?.state, ContainerState.CONTAINER_RUNNING);
    await cri.runtime.unary('StopContainer', { containerId: fresh, timeout: 0 });
    await cri.runtime.unary('RemoveContainer', { containerId: fresh });
    const tickLog = readTickLog(log);
    assert.deepEqual(tickLog.gaps, [], 'the ticking container logged throughout');
    assert.equal((await cri.runtime.unary('ContainerStatus', { containerId: tick })).status?.state, ContainerState.CONTAINER_RUNNING);
    // The spare container: removed during the outage (then containerd must have none) or removable now.
    await cri.runtime.unary('RemoveContainer', { containerId: spare });
    const extra = (await cri.runtime.unary('ListContainers', { filter: { podSandboxId: pod } })).containers.filter((c) => c.metadata?.name === 'during');
    for (const c of extra) await cri.runtime.unary('RemoveContainer', { containerId: c.id });
    await removePodsExcept(stack, new Set([pod]));
    cri.close();
    t.diagnostic(`RuntimeReady true ${upAfter} ms after containerd was started again`);
    // The spare (created, never started) container, its record and its snapshot are gone; all else as before.
    const want = { ...baseline, containerDirs: baseline.containerDirs - 1, containerdContainers: baseline.containerdContainers - 1, snapshots: baseline.snapshots - 1 };
    assert.deepEqual(await settledDiff(target, want), [], 'census (the spare container removed)');
    await removePodsExcept(stack, new Set());
    assert.deepEqual(await settledDiff(target, empty), [], 'census once every pod is removed');
  });
});
