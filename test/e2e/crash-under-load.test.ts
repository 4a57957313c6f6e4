// crispd killed (-9) at seeded random moments while pods run and clients keep creating and removing
// pods and containers, running ExecSync, and opening exec and port-forward sessions. After each restart: every acknowledged pod and container is
// listed in its state, the running containers kept running and logging (a ticking container's log has
// every tick), every interrupted call, retried as kubelet would, succeeds or fails cleanly; at the end
// nothing is orphaned (shims, processes, mounts, namespaces, IPs, cgroups, containerd objects).
// CI size: 10 pods × 2 containers, 5 kills. CRISP_FAULT_PODS / CRISP_FAULT_KILLS / CRISP_FAULT_SEED
// for the full size (30 pods, 10 kills) on demand.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { startStack, type Stack } from './lib/stack.js';
import { uniqueId } from './lib/crispd.js';
import { takeCensus, settledDiff, processFootprint, type CensusTarget } from './lib/resource-census.js';
import { Gate, RetryingCri } from './lib/retrying-client.js';
import { TICK_CMD, TICK_MS, readTickLog } from './lib/tick-log.js';
import { envCount, seededRandom } from './lib/seeded-random.js';
import { channelSession } from './lib/ws-channel.js';
import { sleep } from '../../common/time.js';
import { isGrpcError, errorMessage } from '../../common/errors.js';
import { ContainerState, PodSandboxState } from '../../gen/runtime.v1.js';

const PODS = envCount('CRISP_FAULT_PODS', 10);
const KILLS = envCount('CRISP_FAULT_KILLS', 5);
const SEED = envCount('CRISP_FAULT_SEED', 16);
const WORKERS = 2;
/** The steady pods' second container serves this on 8080, for port-forward. */
const WEB_CMD = ['sh', '-c', 'echo hello-from-pod > /tmp/index.html; exec httpd -f -p 8080 -h /tmp'];

type PodIntent = 'ready' | 'stopping' | 'notready' | 'removing';
type ContainerIntent = 'created' | 'starting' | 'running';

describe(`crispd killed ${KILLS} times under load (${PODS} pods × 2 containers, ${WORKERS} clients)`, () => {
  let s: Stack;
  const cgroupParent = `/crisp-e2e-${uniqueId()}`;
  before(async () => {
    s = await startStack({ cgroup_parent: cgroupParent });
  });
  after(async () => {
    const rules = await s.teardown();
    assert.deepEqual(rules, []);
  });

  test('acknowledged state survives, logs have no gap, retried calls are clean, nothing is orphaned', { timeout: 30 * 60_000 }, async (t) => {
    const target: CensusTarget = { d: s.d, net: s.net, cgroupParent };
    const empty = await takeCensus(target);

    // The load: PODS pods, each a ticking container and an idle one.
    const steady: { pod: string; tick: string; idle: string; log: string }[] = [];
    for (let i = 0; i < PODS; i += 5) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(5, PODS - i) }, async (_, j) => {
          const name = `steady-${i + j}`;
          const pod = await s.runPod(name);
          const tick = await s.runContainer(pod, 'tick', TICK_CMD);
          const idle = await s.runContainer(pod, 'idle', WEB_CMD);
          return { pod, tick, idle, log: join(s.podConfig(name).logDirectory!, 'tick', '0.log') };
        }),
      );
      steady.push(...batch);
    }
    await sleep(500);
    const baseline = await takeCensus(target);
    t.diagnostic(`baseline: ${JSON.stringify(baseline)}`);

    // The clients: each loops pod → container → start → exec (own and a steady one) → stop → remove.
    const gate = new Gate();
    const pods = new Map<string, PodIntent>();
    const containers = new Map<string, { pod: string; intent: ContainerIntent }>();
    const problems: string[] = [];
    let stop = false;
    let cycles = 0;
    let execs = 0;
    const clients: RetryingCri[] = [];
    const worker = async (w: number) => {
      const cri = new RetryingCri(s.d.endpoint, gate);
      clients.push(cri);
      for (let k = 0; !stop; k++) {
        const name = `churn-${w}-${k}`;
        const podId = (await cri.call('RunPodSandbox', { config: s.podConfig(name) })).podSandboxId;
        pods.set(podId, 'ready');
        const config = s.containerConfig('work', ['sleep', '3600']);
        let ctr: string;
        try {
          ctr = (await cri.call('CreateContainer', { podSandboxId: podId, config })).containerId;
        } catch (err) {
          // The interrupted attempt finished before the kill: the name is taken by its container.
          if (!isGrpcError(err, grpc.status.ALREADY_EXISTS)) throw err;
          const found = (await cri.call('ListContainers', { filter: { podSandboxId: podId } })).containers.find((c) => c.metadata?.name === 'work');
          if (!found) throw new Error(`CreateContainer retry said ALREADY_EXISTS but pod ${podId} lists no "work": ${errorMessage(err)}`);
          ctr = found.id;
        }
        containers.set(ctr, { pod: podId, intent: 'starting' });
        await cri.call('StartContainer', { containerId: ctr });
        containers.set(ctr, { pod: podId, intent: 'running' });
        const own = await cri.call('ExecSync', { containerId: ctr, cmd: ['echo', name], timeout: 10 });
        if (own.exitCode !== 0 || own.stdout.toString() !== `${name}\n`) problems.push(`ExecSync in ${name}: exit ${own.exitCode}, stdout ${JSON.stringify(own.stdout.toString())}`);
        const other = steady[(w + k) % steady.length]!;
        const theirs = await cri.call('ExecSync', { containerId: other.idle, cmd: ['true'], timeout: 10 });
        if (theirs.exitCode !== 0) problems.push(`ExecSync in a steady pod: exit ${theirs.exitCode}`);
        execs += 2;
        pods.set(podId, 'stopping');
        await cri.call('StopPodSandbox', { podSandboxId: podId });
        pods.set(podId, 'removing');
        await cri.call('RemovePodSandbox', { podSandboxId: podId });
        pods.delete(podId);
        containers.delete(ctr);
        cycles++;
      }
    };
    // A streaming client: exec and port-forward sessions into the steady pods; one cut by a kill is
    // opened again (new URL) once crispd is back, and must then work.
    let kills = 0;
    let sessions = 0;
    let cutSessions = 0;
    const streamer = async () => {
      const cri = new RetryingCri(s.d.endpoint, gate);
      clients.push(cri);
      for (let k = 0; !stop; k++) {
        const p = steady[k % steady.length]!;
        for (let attempt = 0; ; attempt++) {
          const killsBefore = kills;
          try {
            const exec = await channelSession((await cri.call('Exec', { containerId: p.idle, cmd: ['sh', '-c', 'echo s; sleep 0.3'], stdout: true })).url);
            if (exec.text(1) !== 's\n') throw new Error(`exec session output ${JSON.stringify(exec.text(1))}`);
            const pf = await channelSession((await cri.call('PortForward', { podSandboxId: p.pod, port: [8080] })).url, {
              protocol: 'v4.channel.k8s.io',
              send: [{ ch: 0, data: 'GET /index.html HTTP/1.0\r\n\r\n' }],
            });
            if (!(pf.channels.get(0)?.toString() ?? '').includes('hello-from-pod')) throw new Error(`port-forward got ${JSON.stringify(pf.channels.get(0)?.toString())}`);
            sessions += 2;
            break;
          } catch (err) {
            if (kills === killsBefore && !gate.closed) throw err;
            if (attempt === 0) cutSessions++;
            await gate.wait();
          }
        }
      }
    };
    const running = [...Array.from({ length: WORKERS }, (_, w) => worker(w)), streamer()].map((p, w) =>
      p.catch((err: unknown) => {
        problems.push(`client ${w}: ${errorMessage(err)}`);
      }),
    );

    const rnd = seededRandom(SEED);
    const restartMs: number[] = [];
    let maxPauseMs = 0;
    for (let kill = 0; kill < KILLS; kill++) {
      // A random moment once the clients are busy again: a few calls answered since the restart, so
      // the kill lands among calls in flight rather than in a restart-slowed lull.
      const progress = () => clients.reduce((n, c) => n + c.succeeded, 0);
      const before = progress();
      for (let i = 0; i < 600 && progress() < before + 4; i++) await sleep(100);
      await sleep(rnd.between(0, 1500));
      const ticks = steady.map((p) => readTickLog(p.log).last);
      gate.close();
      kills++;
      await s.d.kill9();
      const t0 = Date.now();
      await s.d.start();
      restartMs.push(Date.now() - t0);

      // Every acknowledged pod and container, in its state.
      const listedPods = new Map((await s.d.client.runtime.unary('ListPodSandbox', {})).items.map((p) => [p.id, p.state]));
      const listedCtrs = new Map((await s.d.client.runtime.unary('ListContainers', {})).containers.map((c) => [c.id, c.state]));
      for (const p of steady) {
        assert.equal(listedPods.get(p.pod), PodSandboxState.SANDBOX_READY, `kill ${kill}: steady pod ${p.pod.slice(0, 12)} ready`);
        assert.equal(listedCtrs.get(p.tick), ContainerState.CONTAINER_RUNNING, `kill ${kill}: ticking container running`);
        assert.equal(listedCtrs.get(p.idle), ContainerState.CONTAINER_RUNNING, `kill ${kill}: idle container running`);
      }
      for (const [id, intent] of pods) {
        const st = listedPods.get(id);
        if (intent === 'ready') assert.equal(st, PodSandboxState.SANDBOX_READY, `kill ${kill}: acknowledged pod ${id.slice(0, 12)} ready`);
        if (intent === 'stopping') assert.notEqual(st, undefined, `kill ${kill}: pod ${id.slice(0, 12)} being stopped is listed`);
      }
      for (const [id, c] of containers) {
        if (pods.get(c.pod) !== 'ready') continue; // its pod is being stopped: any state
        const st = listedCtrs.get(id);
        const allowed = c.intent === 'running' ? [ContainerState.CONTAINER_RUNNING] : [ContainerState.CONTAINER_CREATED, ContainerState.CONTAINER_RUNNING];
        assert.ok(st !== undefined && allowed.includes(st), `kill ${kill}: container ${id.slice(0, 12)} (${c.intent}) listed as ${st}`);
      }
      // The ticking containers kept logging through the crash, with no tick lost.
      await sleep(3 * TICK_MS);
      for (const [i, p] of steady.entries()) {
        const log = readTickLog(p.log);
        assert.deepEqual(log.gaps, [], `kill ${kill}: pod ${i}'s tick log`);
        assert.ok(log.last > ticks[i]!, `kill ${kill}: pod ${i} still ticking (${ticks[i]} → ${log.last})`);
        maxPauseMs = Math.max(maxPauseMs, log.maxPauseMs);
      }
      gate.open();
    }
    await sleep(1000);
    stop = true;
    await Promise.all(running);
    for (const c of clients) c.close();
    const interrupted = clients.reduce((n, c) => n + c.interrupted, 0);
    const retried = clients.flatMap((c) => c.retriedMethods);
    const footprint = processFootprint(s.d.child!.pid!);
    t.diagnostic(
      `${KILLS} kills (seed ${SEED}), ${cycles} client cycles, ${execs} ExecSync, ${sessions} exec/port-forward sessions (${cutSessions} cut by a kill and redone), ` +
        `${interrupted} calls interrupted and retried ` +
        `(${retried.join(', ')}); restart to serving ${Math.min(...restartMs)}–${Math.max(...restartMs)} ms; ` +
        `largest pause in a tick log ${maxPauseMs} ms; crispd ${footprint.fds} fds, ${(footprint.rssKiB / 1024).toFixed(0)} MiB RSS`,
    );
    assert.deepEqual(problems, []);
    assert.ok(cycles > 0, 'the clients completed cycles');
    assert.ok(sessions > 0, 'the streaming client completed sessions');

    // Nothing orphaned: the same counts as before the load, then as before any pod once all are gone.
    assert.deepEqual(await settledDiff(target, baseline), [], 'census with the steady pods after the crashes');
    for (const p of steady) {
      await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: p.pod });
      await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: p.pod });
    }
    assert.deepEqual(await settledDiff(target, empty), [], 'census once every pod is removed');
  });
});
