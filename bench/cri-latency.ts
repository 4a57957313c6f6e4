// CRI call latency under concurrent callers: Version, Status, ListPodSandbox, ListContainers and
// ImageStatus from 1, 10 and 50 callers sharing one connection (as kubelet does), with a few pods (each
// with a running container) present, crisp against containerd's CRI plugin.
//   node dist/bench/cri-latency.js [--calls 500] [--rounds 5] [--pods 5] [--concurrency 1,10,50] [--warmup 1000]
import { join } from 'node:path';
import { makeLogDir, withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark, fmt } from './lib/results.js';
import { timed, performance } from './lib/timing.js';
import { describeError, step } from './lib/errors.js';

const opts = parseOptions('cri-latency', {
  calls: { kind: 'number', default: 500, min: 1, doc: 'calls per (method, concurrency, runtime)' },
  pods: { kind: 'number', default: 5, min: 0, doc: 'pods present during the measurement (each with one sleep container)' },
  concurrency: { kind: 'string', default: '1,10,50', doc: 'comma-separated numbers of concurrent callers' },
  rounds: { kind: 'number', default: 5, min: 1, doc: 'rounds the calls of each (method, concurrency) are split into; the runtimes alternate which goes first' },
  // A daemon under kubelet answers these calls every few seconds for its whole life: its JIT is warm.
  warmup: { kind: 'number', default: 1000, min: 0, doc: 'unrecorded calls per method and runtime' },
});

const levels = opts.concurrency.split(',').map((x) => Number(x.trim()));
if (levels.some((l) => !Number.isInteger(l) || l < 1)) throw new Error(`--concurrency: expected positive integers, got "${opts.concurrency}"`);

type Method = 'Version' | 'Status' | 'ListPodSandbox' | 'ListContainers' | 'ImageStatus';
const METHODS: Method[] = ['Version', 'Status', 'ListPodSandbox', 'ListContainers', 'ImageStatus'];

function call(side: Side, m: Method): Promise<unknown> {
  const rt = side.client.runtime;
  switch (m) {
    case 'Version':
      return rt.unary('Version', { version: 'v1' });
    case 'Status':
      return rt.unary('Status', {});
    case 'ListPodSandbox':
      return rt.unary('ListPodSandbox', {});
    case 'ListContainers':
      return rt.unary('ListContainers', {});
    case 'ImageStatus':
      return side.client.image.unary('ImageStatus', { image: { image: side.image } });
  }
}

/** Pods with a running sleep container each; returns a note when containers could not be started. */
async function populate(side: Side, pods: number): Promise<string | undefined> {
  let failure: string | undefined;
  for (let i = 0; i < pods; i++) {
    const pod = await step(side.name, `RunPodSandbox present-${i}`, () => side.runPod(`present-${i}`));
    if (failure) continue;
    try {
      makeLogDir(join(pod.config.logDirectory!, 'app'));
      const { containerId } = await step(side.name, `CreateContainer in present-${i}`, () =>
        side.client.runtime.unary('CreateContainer', { podSandboxId: pod.id, config: side.containerConfig('app', ['sleep', '3600']), sandboxConfig: pod.config }),
      );
      await step(side.name, `StartContainer in present-${i}`, () => side.client.runtime.unary('StartContainer', { containerId }));
    } catch (err) {
      failure = `${describeError(err)} — measured with pods only`;
    }
  }
  return failure;
}

/** `total` calls of `m` from `callers` closed-loop callers; returns the wall time in seconds. */
async function measure(side: Side, rec: Recorder, m: Method, callers: number, total: number): Promise<number> {
  let issued = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(callers, total) }, async () => {
      while (issued < total) {
        issued++;
        const t = await timed(() => step(side.name, m, () => call(side, m)));
        rec.add(`${m}, ${callers} caller${callers > 1 ? 's' : ''}`, side.name, t.ms);
      }
    }),
  );
  return (performance.now() - t0) / 1000;
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('ms');
  const notes: string[] = [];
  for (const side of env.sides) {
    const note = await populate(side, opts.pods);
    if (note) notes.push(`${side.name}: containers for the present pods failed: ${note}`);
    for (const m of METHODS) for (let i = 0; i < opts.warmup; i++) await step(side.name, `${m} (warmup)`, () => call(side, m));
  }
  const throughput: string[] = [];
  for (const m of METHODS) {
    for (const c of levels) {
      const wall: Record<string, number> = {};
      const perRound = Math.ceil(opts.calls / opts.rounds);
      // Short rounds, the runtimes alternating which goes first: a burst of load from elsewhere on the
      // machine (or a GC in the client) lands on both alike instead of on one runtime's whole block.
      for (let r = 0; r < opts.rounds; r++) {
        const order = r % 2 === 0 ? env.sides : [...env.sides].reverse();
        for (const side of order) wall[side.name] = (wall[side.name] ?? 0) + (await measure(side, rec, m, c, perRound));
      }
      const calls = perRound * opts.rounds;
      throughput.push(`| ${m} | ${c} | ${env.sides.map((s) => fmt(calls / wall[s.name]!, 0)).join(' | ')} |`);
    }
  }
  notes.push(
    `${opts.pods} pods present on each runtime, each with one running busybox sleep container; busybox is the image asked about in ImageStatus.`,
    'Callers share one gRPC connection per runtime (as kubelet does) and call in a closed loop; latency is per call, measured in the client.',
    'containerd\'s Status also checks its CNI config; crisp\'s Status reports the same conditions (RuntimeReady, NetworkReady).',
  );
  saveBenchmark('cri-latency', {
    title: 'CRI call latency under concurrency',
    peer: 'containerd',
    startedAt,
    params: { calls: opts.calls, rounds: opts.rounds, pods: opts.pods, concurrency: levels.join('/'), warmup: opts.warmup },
    rows: rec.rows(),
    samples: rec.samples(),
    notes,
    extraMarkdown: [
      'Throughput (calls/s, all callers together):',
      '',
      `| method | callers | ${env.sides.map((s) => s.name).join(' | ')} |`,
      `| --- | ---: | ${env.sides.map(() => '---:').join(' | ')} |`,
      ...throughput,
    ],
  });
});
