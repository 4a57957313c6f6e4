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

async function warmup(side: Side, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { id } = await runPod(side, `warm-${i}`);
    await phase(side, 'StopPodSandbox', id);
    await phase(side, 'RemovePodSandbox', id);
  }
}

async function sequential(side: Side, rec: Recorder, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { id, ms: run } = await runPod(side, `seq-${i}`);
    const stop = await phase(side, 'StopPodSandbox', id);
    const remove = await phase(side, 'RemovePodSandbox', id);
    rec.add('sequential: RunPodSandbox', side.name, run);
    rec.add('sequential: StopPodSandbox', side.name, stop);
    rec.add('sequential: RemovePodSandbox', side.name, remove);
    rec.add('sequential: run+stop+remove', side.name, run + stop + remove);
  }
}

/** Batches of `k` pods: all run at once, then all stop, then all remove; per-call latency under contention. */
async function parallel(side: Side, rec: Recorder, n: number, k: number): Promise<number> {
  const label = `${k}-parallel`;
  const t0 = performance.now();
  for (let base = 0; base < n; base += k) {
    const names = Array.from({ length: Math.min(k, n - base) }, (_, j) => `par-${base + j}`);
    const runs = await Promise.all(names.map((name) => runPod(side, name)));
    const stops = await Promise.all(runs.map((r) => phase(side, 'StopPodSandbox', r.id)));
    const removes = await Promise.all(runs.map((r) => phase(side, 'RemovePodSandbox', r.id)));
    runs.forEach((r) => rec.add(`${label}: RunPodSandbox`, side.name, r.ms));
    stops.forEach((ms) => rec.add(`${label}: StopPodSandbox`, side.name, ms));
    removes.forEach((ms) => rec.add(`${label}: RemovePodSandbox`, side.name, ms));
  }
  return (performance.now() - t0) / 1000;
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const notes: string[] = [];
  const wall: Record<string, number> = {};
  for (const side of env.sides) await warmup(side, opts.warmup);
  // Modes outermost and sides alternating, so slow drift of the machine hits both runtimes alike.
  for (const side of env.sides) {
    try {
      await sequential(side, rec, opts.iterations);
    } catch (err) {
      notes.push(`sequential, ${err instanceof Error ? err.message : String(err)}`);
      await side.removeAllPods().catch(() => undefined);
    }
  }
  for (const side of env.sides) {
    try {
      wall[side.name] = await parallel(side, rec, opts.iterations, opts.concurrency);
    } catch (err) {
      notes.push(`${opts.concurrency}-parallel, ${err instanceof Error ? err.message : String(err)}`);
      await side.removeAllPods().catch(() => undefined);
    }
  }
  const throughput = env.sides
    .filter((s) => wall[s.name] !== undefined)
    .map((s) => `| ${s.name} | ${fmt(wall[s.name], 2)} s | ${fmt(opts.iterations / wall[s.name]!, 2)} pods/s |`);
  notes.push(
    'crisp pods pin namespaces and run CNI ADD; containerd pods also start a pause container (busybox sleep, from the loopback registry) through a runc shim.',
    `Parallel mode: batches of ${opts.concurrency} pods; the ${opts.concurrency} RunPodSandbox calls go out at once, then the ${opts.concurrency} stops, then the removes. Latency is per call.`,
    'CNI: bridge (ipMasq, hairpin, host-local) + portmap, the same conflist for both, each runtime on its own bridge and /24. containerd adds loopback itself; crisp brings lo up itself.',
    'Log levels: crispd info, containerd info. NRI off in crispd (containerd 1.6 has no NRI v2).',
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
