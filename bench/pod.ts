// Pod sandbox lifecycle latency: RunPodSandbox, StopPodSandbox and RemovePodSandbox, one pod at a time
// and in batches of K concurrent pods, crisp (no pause container) against containerd's CRI plugin (a
// pause container per pod), same CNI conflist, same machine, one run.
//   node dist/bench/pod.js [--iterations 50] [--concurrency 10] [--warmup 3]
import { withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark, fmt } from './lib/results.js';
import { timed, performance } from './lib/timing.js';
import { step } from './lib/errors.js';
import { describeDropped, interleave } from './lib/interleave.js';

const opts = parseOptions('pod', {
  iterations: { kind: 'number', default: 50, min: 1, doc: 'pods per mode and runtime' },
  concurrency: { kind: 'number', default: 10, min: 2, doc: 'pods in flight at once in the parallel mode' },
  warmup: { kind: 'number', default: 3, min: 0, doc: 'unrecorded pod cycles per runtime before measuring' },
});

type Phase = 'RunPodSandbox' | 'StopPodSandbox' | 'RemovePodSandbox';

async function phase(side: Side, what: Phase, id: string): Promise<number> {
  const t = await timed(() => step(side.name, `${what} ${id.slice(0, 12)}`, () => side.client.runtime.unary(what, { podSandboxId: id })));
  return t.ms;
}

async function runPod(side: Side, name: string): Promise<{ id: string; ms: number }> {
  const t = await timed(() => step(side.name, `RunPodSandbox ${name}`, () => side.runPod(name)));
  return { id: t.value.id, ms: t.ms };
}

async function cycle(side: Side, name: string): Promise<{ run: number; stop: number; remove: number }> {
  const { id, ms: run } = await runPod(side, name);
  const stop = await phase(side, 'StopPodSandbox', id);
  const remove = await phase(side, 'RemovePodSandbox', id);
  return { run, stop, remove };
}

async function sequential(side: Side, rec: Recorder, i: number): Promise<void> {
  const { run, stop, remove } = await cycle(side, `seq-${i}`);
  rec.add('sequential: RunPodSandbox', side.name, run);
  rec.add('sequential: StopPodSandbox', side.name, stop);
  rec.add('sequential: RemovePodSandbox', side.name, remove);
  rec.add('sequential: run+stop+remove', side.name, run + stop + remove);
}

/** One batch of `size` pods: all run at once, then all stop, then all remove; returns its wall time (s). */
async function batch(side: Side, rec: Recorder, b: number, size: number, k: number): Promise<number> {
  const label = `${k}-parallel`;
  const t0 = performance.now();
  const names = Array.from({ length: size }, (_, j) => `par-${b}-${j}`);
  const runs = await Promise.all(names.map((name) => runPod(side, name)));
  const stops = await Promise.all(runs.map((r) => phase(side, 'StopPodSandbox', r.id)));
  const removes = await Promise.all(runs.map((r) => phase(side, 'RemovePodSandbox', r.id)));
  runs.forEach((r) => rec.add(`${label}: RunPodSandbox`, side.name, r.ms));
  stops.forEach((ms) => rec.add(`${label}: StopPodSandbox`, side.name, ms));
  removes.forEach((ms) => rec.add(`${label}: RemovePodSandbox`, side.name, ms));
  return (performance.now() - t0) / 1000;
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const notes: string[] = [];
  const wall: Record<string, number> = {};
  notes.push(...(await interleave(env.sides, opts.warmup, async (side, i) => void (await cycle(side, `warm-${i}`)))).map((e) => `warm-up: ${describeDropped(e)}`));
  notes.push(...(await interleave(env.sides, opts.iterations, (side, i) => sequential(side, rec, i))).map((e) => `sequential: ${describeDropped(e)}`));
  const batches = Math.ceil(opts.iterations / opts.concurrency);
  const parallelErrors = await interleave(env.sides, batches, async (side, b) => {
    const size = Math.min(opts.concurrency, opts.iterations - b * opts.concurrency);
    wall[side.name] = (wall[side.name] ?? 0) + (await batch(side, rec, b, size, opts.concurrency));
  });
  notes.push(...parallelErrors.map((e) => `${opts.concurrency}-parallel: ${describeDropped(e)}`));
  for (const e of parallelErrors) delete wall[e.runtime];
  const throughput = env.sides
    .filter((s) => wall[s.name] !== undefined)
    .map((s) => `| ${s.name} | ${fmt(wall[s.name], 2)} s | ${fmt(opts.iterations / wall[s.name]!, 2)} pods/s |`);
  notes.push(
    'crisp pods pin namespaces and run CNI ADD; containerd pods also start a pause container (busybox sleep, from the loopback registry) through a runc shim.',
    `Parallel mode: batches of ${opts.concurrency} pods; the ${opts.concurrency} RunPodSandbox calls go out at once, then the ${opts.concurrency} stops, then the removes. Latency is per call.`,
    'CNI: bridge (ipMasq, hairpin, host-local) + portmap, the same conflist for both, each runtime on its own bridge and /24. containerd adds loopback itself; crisp brings lo up itself.',
    'Log levels: crispd info, containerd info. NRI off in crispd (containerd 1.6 has no NRI v2).',
    'Iterations (and parallel batches) alternate between the runtimes, so load from elsewhere on the machine hits both alike.',
  );
  saveBenchmark('pod', {
    title: 'Pod sandbox lifecycle latency',
    peer: 'containerd',
    startedAt,
    params: { iterations: opts.iterations, concurrency: opts.concurrency, warmup: opts.warmup },
    rows: rec.rows(),
    samples: rec.samples(),
    notes,
    extraMarkdown: throughput.length
      ? [`Wall time of the ${opts.concurrency}-parallel mode (${opts.iterations} pods, run+stop+remove):`, '', '| runtime | wall | throughput |', '| --- | ---: | ---: |', ...throughput]
      : [],
  });
});
