// Container lifecycle latency with a busybox `sleep` container: CreateContainer+StartContainer and
// StopContainer+RemoveContainer inside one long-lived pod, and the whole start path of a new pod
// (RunPodSandbox → CreateContainer → StartContainer → ContainerStatus says RUNNING, with that pod's first
// CreateContainer and StartContainer also on their own), crisp against containerd's CRI plugin.
//   node dist/bench/container.js [--iterations 50] [--warmup 3]
import { makeLogDir, withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark } from './lib/results.js';
import { timed, performance } from './lib/timing.js';
import { describeError, step } from './lib/errors.js';
import { describeDropped, interleave } from './lib/interleave.js';
import { sleep } from '../common/time.js';
import { join } from 'node:path';
import { ContainerState } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';
import type { PodSandboxConfig } from '../gen/runtime.v1.js';

const opts = parseOptions('container', {
  iterations: { kind: 'number', default: 50, min: 1, doc: 'containers (and pods, for the full path) per runtime' },
  warmup: { kind: 'number', default: 3, min: 0, doc: 'unrecorded cycles per runtime before measuring' },
});

const SLEEP = ['sleep', '3600'];

interface PodRef {
  id: string;
  config: Input<PodSandboxConfig>;
}

async function createStart(side: Side, podId: string, podConfig: Input<PodSandboxConfig>, name: string) {
  makeLogDir(join(podConfig.logDirectory!, name));
  const created = await timed(() =>
    step(side.name, `CreateContainer ${name}`, () =>
      side.client.runtime.unary('CreateContainer', { podSandboxId: podId, config: side.containerConfig(name, SLEEP), sandboxConfig: podConfig }),
    ),
  );
  const id = created.value.containerId;
  const started = await timed(() => step(side.name, `StartContainer ${id.slice(0, 12)}`, () => side.client.runtime.unary('StartContainer', { containerId: id })));
  return { id, create: created.ms, start: started.ms };
}

/**
 * StopContainer then RemoveContainer. A failed RemoveContainer is recorded (not timed) and retried once
 * after 200 ms so the run goes on; the iteration then has no stop/remove sample.
 */
async function stopRemove(side: Side, rec: Recorder | undefined, id: string): Promise<{ stop: number; remove: number } | undefined> {
  // timeout 0: SIGKILL at once in both runtimes (sleep as pid 1 ignores SIGTERM; a grace period would
  // only measure the timeout).
  const stopped = await timed(() => step(side.name, `StopContainer ${id.slice(0, 12)}`, () => side.client.runtime.unary('StopContainer', { containerId: id, timeout: 0 })));
  const what = `RemoveContainer ${id.slice(0, 12)}`;
  try {
    const removed = await timed(() => step(side.name, what, () => side.client.runtime.unary('RemoveContainer', { containerId: id })));
    return { stop: stopped.ms, remove: removed.ms };
  } catch (err) {
    rec?.fail('RemoveContainer', side.name, describeError(err));
    await sleep(200);
    await step(side.name, `${what} (retry)`, () => side.client.runtime.unary('RemoveContainer', { containerId: id }));
    return undefined;
  }
}

async function waitRunning(side: Side, id: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const st = await step(side.name, `ContainerStatus ${id.slice(0, 12)}`, () => side.client.runtime.unary('ContainerStatus', { containerId: id }));
    const state = st.status?.state;
    if (state === ContainerState.CONTAINER_RUNNING) return;
    if (state === ContainerState.CONTAINER_EXITED) throw new Error(`${side.name}: container ${id.slice(0, 12)} exited (${st.status?.reason} ${st.status?.exitCode}) instead of running`);
    if (Date.now() > deadline) throw new Error(`${side.name}: container ${id.slice(0, 12)} not running after ${timeoutMs} ms (state ${state})`);
    await sleep(2);
  }
}

/** One container in the runtime's long-lived pod: create+start, then stop+remove. */
async function inPodOnce(side: Side, pod: PodRef, rec: Recorder | undefined, name: string): Promise<void> {
  const c = await createStart(side, pod.id, pod.config, name);
  const s = await stopRemove(side, rec, c.id);
  if (!rec) return;
  rec.add('CreateContainer', side.name, c.create);
  rec.add('StartContainer', side.name, c.start);
  rec.add('create+start', side.name, c.create + c.start);
  if (!s) return;
  rec.add('StopContainer (timeout 0)', side.name, s.stop);
  rec.add('RemoveContainer', side.name, s.remove);
  rec.add('stop+remove', side.name, s.stop + s.remove);
}

/** A fresh pod: RunPodSandbox → CreateContainer → StartContainer → RUNNING; then the pod goes. */
async function fullPathOnce(side: Side, rec: Recorder | undefined, name: string): Promise<void> {
  const t0 = performance.now();
  const pod = await timed(() => step(side.name, `RunPodSandbox ${name}`, () => side.runPod(name)));
  const c = await createStart(side, pod.value.id, pod.value.config, 'app');
  await waitRunning(side, c.id);
  const total = performance.now() - t0;
  const down = await timed(async () => {
    await step(side.name, `StopPodSandbox ${name}`, () => side.client.runtime.unary('StopPodSandbox', { podSandboxId: pod.value.id }));
    await step(side.name, `RemovePodSandbox ${name}`, () => side.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod.value.id }));
  });
  if (!rec) return;
  rec.add('pod+container start: RunPodSandbox', side.name, pod.ms);
  rec.add('pod+container start: total until RUNNING', side.name, total);
  rec.add('pod+container start: CreateContainer', side.name, c.create);
  rec.add('pod+container start: StartContainer', side.name, c.start);
  rec.add('pod+container teardown: StopPodSandbox+RemovePodSandbox', side.name, down.ms);
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const notes: string[] = [];
  // The container cases run inside one long-lived pod per runtime.
  const pods = new Map<string, PodRef>();
  for (const side of env.sides) pods.set(side.name, await step(side.name, 'RunPodSandbox ctr-host', () => side.runPod('ctr-host')));
  const inPod = (side: Side, i: number, r: Recorder | undefined) => inPodOnce(side, pods.get(side.name)!, r, `c${i}`);
  notes.push(...(await interleave(env.sides, opts.warmup, (side, i) => inPod(side, -1 - i, undefined))).map((e) => `warm-up: ${describeDropped(e)}`));
  notes.push(...(await interleave(env.sides, opts.iterations, (side, i) => inPod(side, i, rec))).map((e) => `container in one pod: ${describeDropped(e)}`));
  for (const side of env.sides) await side.removeAllPods();
  notes.push(...(await interleave(env.sides, opts.warmup, (side, i) => fullPathOnce(side, undefined, `warm-${i}`))).map((e) => `warm-up: ${describeDropped(e)}`));
  notes.push(...(await interleave(env.sides, opts.iterations, (side, i) => fullPathOnce(side, rec, `full-${i}`))).map((e) => `pod+container start path: ${describeDropped(e)}`));
  notes.push(
    ...rec.failureNotes(),
    `Container: busybox \`${SLEEP.join(' ')}\` from the loopback registry (pulled before measuring), stdout/stderr to the CRI log file. StopContainer with timeout 0 (immediate SIGKILL in both runtimes).`,
    'The total start path polls ContainerStatus every 2 ms after StartContainer returns, until the state is RUNNING.',
    'Both runtimes delete the task when the exit event arrives (inside StopContainer); RemoveContainer then removes the container record, its rootfs snapshot and its files.',
    'Iterations alternate between the runtimes, so load from elsewhere on the machine hits both alike.',
    'Pod teardown with a running container: StopPodSandbox kills and waits for the container (and, for containerd, the pause container).',
  );
  saveBenchmark('container', {
    title: 'Container lifecycle latency',
    peer: 'containerd',
    startedAt,
    params: { iterations: opts.iterations, warmup: opts.warmup },
    rows: rec.rows(),
    samples: rec.samples(),
    notes,
  });
});
