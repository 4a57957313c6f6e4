// Memory: resident set size (VmRSS from /proc/<pid>/status) of each runtime's daemons idle, after N pods,
// and after N pods with one running container each. crisp's daemon is crispd's node process plus its
// embedded containerd child (reported separately and summed); the peer's is the one containerd process
// with the CRI plugin. The processes each runtime keeps per pod (shims and whatever runs below them:
// pause containers for the peer) are reported as well, since avoiding them is crisp's point.
//   node dist/bench/rss.js [--pods 20] [--samples 5] [--settle 3] [--quiet-idle 30]
import { join } from 'node:path';
import { makeLogDir, withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark, fmt } from './lib/results.js';
import { describeError, step } from './lib/errors.js';
import { rssKiB, shimTree } from './lib/procs.js';
import { sleep } from '../common/time.js';

const opts = parseOptions('rss', {
  pods: { kind: 'number', default: 20, min: 1, doc: 'pods created for the loaded measurement' },
  samples: { kind: 'number', default: 5, min: 1, doc: 'RSS samples per measurement (200 ms apart)' },
  settle: { kind: 'number', default: 3, min: 0, doc: 'seconds to wait before sampling' },
  containers: { kind: 'boolean', default: true, doc: 'also measure with one running container per pod' },
  'quiet-idle': { kind: 'number', default: 30, min: 0, doc: 'seconds after the daemons are up for a second idle measurement (0: none)' },
});

const MiB = (kib: number) => kib / 1024;

async function sample(sides: Side[], rec: Recorder, phase: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    for (const side of sides) {
      let total = 0;
      for (const { role, pid } of side.daemonPids()) {
        const kib = rssKiB(pid);
        if (kib === undefined) throw new Error(`${side.name}: ${role} (pid ${pid}) is gone`);
        total += kib;
        if (side.name === 'crisp') rec.add(`${phase}: ${role}`, side.name, MiB(kib));
      }
      rec.add(`${phase}: daemon total`, side.name, MiB(total));
      const pods = shimTree(side.containerdSocket);
      rec.add(`${phase}: shims and everything below them`, side.name, MiB(pods.reduce((a, p) => a + (rssKiB(p) ?? 0), 0)));
      rec.add(`${phase}: number of those processes`, side.name, pods.length, 'procs');
    }
    await sleep(200);
  }
}

const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  const rec = new Recorder('MiB');
  const notes: string[] = [];
  const readyAt = Date.now();
  await sleep(opts.settle * 1000);
  await sample(env.sides, rec, 'idle', opts.samples);
  // V8 gives back what start-up and the pull left behind only after a quiet spell (its memory reducer
  // runs some seconds after allocation stops): an idle daemon on a node is measured here.
  const quietIdle = opts['quiet-idle'];
  if (quietIdle > 0) {
    await sleep(Math.max(0, quietIdle * 1000 - (Date.now() - readyAt)));
    await sample(env.sides, rec, `idle, ${quietIdle} s later`, opts.samples);
  }

  const pods = new Map<string, { id: string; config: Awaited<ReturnType<Side['runPod']>>['config'] }[]>();
  for (const side of env.sides) {
    const list: { id: string; config: Awaited<ReturnType<Side['runPod']>>['config'] }[] = [];
    for (let i = 0; i < opts.pods; i++) list.push(await step(side.name, `RunPodSandbox rss-${i}`, () => side.runPod(`rss-${i}`)));
    pods.set(side.name, list);
  }
  await sleep(opts.settle * 1000);
  await sample(env.sides, rec, `${opts.pods} pods`, opts.samples);

  if (opts.containers) {
    const ok: Side[] = [];
    for (const side of env.sides) {
      try {
        for (const pod of pods.get(side.name)!) {
          makeLogDir(join(pod.config.logDirectory!, 'app'));
          const { containerId } = await step(side.name, `CreateContainer in ${pod.id.slice(0, 12)}`, () =>
            side.client.runtime.unary('CreateContainer', { podSandboxId: pod.id, config: side.containerConfig('app', ['sleep', '3600']), sandboxConfig: pod.config }),
          );
          await step(side.name, `StartContainer ${containerId.slice(0, 12)}`, () => side.client.runtime.unary('StartContainer', { containerId }));
        }
        ok.push(side);
      } catch (err) {
        notes.push(`${side.name}: could not start a container in every pod: ${describeError(err)}`);
      }
    }
    await sleep(opts.settle * 1000);
    await sample(ok, rec, `${opts.pods} pods + ${opts.pods} containers`, opts.samples);
  }

  const rows = rec.rows();
  const perPod = (phase: string, side: string) => {
    const idle = rows.find((r) => r.case === 'idle: daemon total');
    const loaded = rows.find((r) => r.case === `${phase}: daemon total`);
    const a = side === 'crisp' ? idle?.crisp?.median : idle?.peer?.median;
    const b = side === 'crisp' ? loaded?.crisp?.median : loaded?.peer?.median;
    return a !== undefined && b !== undefined ? fmt(((b - a) * 1024) / opts.pods, 0) : 'n/a';
  };
  notes.push(
    'Medians and p95 are over the samples of one run (RSS is a level, not a latency).',
    `Daemon growth per pod (KiB, median daemon total after ${opts.pods} pods minus idle, divided by ${opts.pods}): crisp ${perPod(`${opts.pods} pods`, 'crisp')}, containerd ${perPod(`${opts.pods} pods`, 'containerd')}.`,
    'Both daemons have the busybox image pulled (and containerd its pause image) before the idle measurement; crispd runs at log level info with NRI off.',
    `"idle" is ${opts.settle} s after the daemons are up and the pulls done; "idle, ${opts['quiet-idle']} s later" is after a quiet spell, once V8's memory reducer has given back what start-up and the pull left (it runs some seconds after allocation stops): the state of an idle node.`,
    'Shims and everything below them: containerd-shim-runc-v2 processes started by that runtime\'s containerd, and their descendants. containerd: one shim and one pause process per pod, app containers join the pod\'s shim. crisp: nothing per pod; per container a shim, the container and crisp\'s log copier (crisp-logger).',
  );
  saveBenchmark('rss', {
    title: 'Daemon memory (RSS)',
    peer: 'containerd',
    startedAt,
    params: { pods: opts.pods, samples: opts.samples, settleSeconds: opts.settle, containers: opts.containers },
    rows,
    samples: rec.samples(),
    notes,
  });
});
