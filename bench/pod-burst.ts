// Many pods at once: N pods with one busybox `sleep` container each, started by C concurrent callers
// (each caller takes the next pod: RunPodSandbox → CreateContainer → StartContainer), crisp against
// containerd's CRI plugin. Reports the wall time until every container was started and the per-pod
// latency (median, p95, p99). Rounds alternate between the runtimes; every round's pods are removed
// before the next round starts.
//   node dist/bench/pod-burst.js [--pods 100] [--callers 20] [--rounds 1]
import { join } from 'node:path';
import { makeLogDir, withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark, fmt } from './lib/results.js';
import { timed, performance } from './lib/timing.js';
import { step } from './lib/errors.js';
import { describeDropped, interleave } from './lib/interleave.js';
import { percentileSorted } from './lib/stats.js';

const opts = parseOptions('pod-burst', {
  pods: { kind: 'number', default: 100, min: 1, doc: 'pods (one container each) per round' },
  callers: { kind: 'number', default: 20, min: 1, doc: 'concurrent CRI callers' },
  rounds: { kind: 'number', default: 1, min: 1, doc: 'rounds per runtime (alternating)' },
});

const SLEEP = ['sleep', '3600'];

/** One pod with its container started; the per-call times of this pod. */
async function startPod(side: Side, name: string): Promise<{ run: number; create: number; start: number }> {
  const pod = await timed(() => step(side.name, `RunPodSandbox ${name}`, () => side.runPod(name)));
  makeLogDir(join(pod.value.config.logDirectory!, 'app'));
  const created = await timed(() =>
    step(side.name, `CreateContainer in ${name}`, () =>
      side.client.runtime.unary('CreateContainer', { podSandboxId: pod.value.id, config: side.containerConfig('app', SLEEP), sandboxConfig: pod.value.config }),
    ),
  );
  const id = created.value.containerId;
  const started = await timed(() => step(side.name, `StartContainer in ${name}`, () => side.client.runtime.unary('StartContainer', { containerId: id })));
  return { run: pod.ms, create: created.ms, start: started.ms };
}

/** `callers` workers drain a queue of `pods` pod starts; returns the wall time (ms) and per-pod totals. */
async function burst(side: Side, rec: Recorder, round: number): Promise<{ wallMs: number; totals: number[] }> {
  let next = 0;
  const totals: number[] = [];
  const t0 = performance.now();
  const worker = async () => {
    for (let i = next++; i < opts.pods; i = next++) {
      const t = await startPod(side, `burst-${round}-${i}`);
      const total = t.run + t.create + t.start;
      totals.push(total);
      rec.add('RunPodSandbox', side.name, t.run);
      rec.add('CreateContainer', side.name, t.create);
      rec.add('StartContainer', side.name, t.start);
      rec.add('per pod: run+create+start', side.name, total);
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.callers, opts.pods) }, worker));
  const wallMs = performance.now() - t0;
  rec.add(`wall time, ${opts.pods} pods`, side.name, wallMs);
  return { wallMs, totals };
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const notes: string[] = [];
  const all: Record<string, number[]> = {};
  const errors = await interleave(env.sides, opts.rounds, async (side, round) => {
    const { totals } = await burst(side, rec, round);
    (all[side.name] ??= []).push(...totals);
    // Teardown is not measured: the next round (the other runtime) starts on an empty node.
    await side.removeAllPods();
  });
  notes.push(...errors.map((e) => `burst: ${describeDropped(e)}`));
  const p99 = (name: string) => {
    const xs = [...(all[name] ?? [])].sort((a, b) => a - b);
    return xs.length ? percentileSorted(xs, 99) : Number.NaN;
  };
  const [c99, p99peer] = [p99('crisp'), p99('containerd')];
  notes.push(
    `Each round: ${opts.pods} pods, ${opts.callers} callers; a caller runs RunPodSandbox → CreateContainer → StartContainer for one pod, then takes the next. Wall time runs from the first call to the last StartContainer's return.`,
    'Container: busybox `sleep 3600` from the loopback registry (pulled before measuring), output to the CRI log file. The pods are removed (not timed) after each round.',
    'CNI: bridge (ipMasq, hairpin, host-local) + portmap for both, each runtime on its own bridge and /24; containerd starts a pause container per pod, crisp none.',
    'Rounds alternate between the runtimes; crispd at log level info, NRI off.',
  );
  saveBenchmark('pod-burst', {
    title: `${opts.pods} pods started by ${opts.callers} concurrent callers`,
    peer: 'containerd',
    startedAt,
    params: { pods: opts.pods, callers: opts.callers, rounds: opts.rounds },
    rows: rec.rows(),
    samples: rec.samples(),
    notes,
    extraMarkdown: [
      'p99 of the per-pod time (run+create+start), over every pod of every round:',
      '',
      '| crisp | containerd | crisp/containerd |',
      '| ---: | ---: | ---: |',
      `| ${fmt(c99, 0)} ms | ${fmt(p99peer, 0)} ms | ${fmt(c99 / p99peer, 2)}× |`,
    ],
  });
});
