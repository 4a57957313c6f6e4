// Memory and leftovers under pod churn: what each runtime's daemons hold after many short-lived pods,
// and whether anything is left once they are gone. One cycle is a pod's whole life as kubelet drives a
// short job: RunPodSandbox, a long-running and a quickly exiting container (CreateContainer +
// StartContainer each), an ExecSync in the running one, StopPodSandbox, RemovePodSandbox. `--callers`
// workers run cycles side by side; the runtimes take turns in chunks of `--chunk` cycles, and after
// each chunk the daemons' RSS and open file descriptors are sampled. At the end: the same after a quiet
// spell, and what is left (pods, containers, shims and what runs below them).
//   node dist/bench/churn.js [--cycles 300] [--chunk 50] [--callers 4] [--quiet 30]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeLogDir, withBenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { Recorder } from './lib/recorder.js';
import { saveBenchmark } from './lib/results.js';
import { describeError, step } from './lib/errors.js';
import { rssKiB, shimTree } from './lib/procs.js';
import { processFootprint } from '../test/e2e/lib/resource-census.js';
import { nriTestDir } from '../test/e2e/lib/nri-dir.js';
import { sleep } from '../common/time.js';

const opts = parseOptions('churn', {
  cycles: { kind: 'number', default: 300, min: 1, doc: 'pod cycles per runtime' },
  chunk: { kind: 'number', default: 50, min: 1, doc: 'cycles per turn; the daemons are sampled after each' },
  callers: { kind: 'number', default: 4, min: 1, doc: 'concurrent CRI callers running cycles' },
  quiet: { kind: 'number', default: 30, min: 0, doc: 'seconds of quiet after the last cycle before the final sample' },
  settle: { kind: 'number', default: 3, min: 0, doc: 'seconds to wait before each sample' },
});

const MiB = (kib: number) => kib / 1024;

function sample(side: Side, rec: Recorder, phase: string, perProcess = true): void {
  let rss = 0;
  let fds = 0;
  for (const { role, pid } of side.daemonPids()) {
    const kib = rssKiB(pid);
    if (kib === undefined) throw new Error(`${side.name}: ${role} (pid ${pid}) is gone`);
    rss += kib;
    fds += processFootprint(pid).fds;
    if (perProcess && side.name === 'crisp' && role !== 'crisp-spawner') rec.add(`${phase}: ${role} RSS`, side.name, MiB(kib), 'MiB');
  }
  rec.add(`${phase}: daemon RSS`, side.name, MiB(rss), 'MiB');
  rec.add(`${phase}: daemon open fds`, side.name, fds, 'fds');
}

async function cycle(side: Side, name: string): Promise<void> {
  const { id, config } = await step(side.name, `RunPodSandbox ${name}`, () => side.runPod(name));
  const containers: [string, string[]][] = [
    ['sleeper', ['sleep', '3600']],
    ['quitter', ['sh', '-c', 'echo out; echo err >&2; exit 3']],
  ];
  let sleeper = '';
  for (const [cname, cmd] of containers) {
    makeLogDir(join(config.logDirectory!, cname));
    const { containerId } = await step(side.name, `CreateContainer ${cname} in ${name}`, () =>
      side.client.runtime.unary('CreateContainer', { podSandboxId: id, config: side.containerConfig(cname, cmd), sandboxConfig: config }),
    );
    await step(side.name, `StartContainer ${cname} in ${name}`, () => side.client.runtime.unary('StartContainer', { containerId }));
    if (cname === 'sleeper') sleeper = containerId;
  }
  const res = await step(side.name, `ExecSync in ${name}`, () =>
    side.client.runtime.unary('ExecSync', { containerId: sleeper, cmd: ['echo', 'x'], timeout: 10 }),
  );
  const stdout = Buffer.from(res.stdout).toString();
  if (res.exitCode !== 0 || stdout !== 'x\n') throw new Error(`${side.name}: ExecSync in ${name}: exit ${res.exitCode}, stdout ${JSON.stringify(stdout)}`);
  await step(side.name, `StopPodSandbox ${name}`, () => side.client.runtime.unary('StopPodSandbox', { podSandboxId: id }));
  await step(side.name, `RemovePodSandbox ${name}`, () => side.client.runtime.unary('RemovePodSandbox', { podSandboxId: id }));
}

const CYCLE = 'one cycle (run, 2 containers, exec, stop, remove)';

/** Stop and remove the pod named `name` (a cycle that failed half-way), retrying a few times. */
async function removePod(side: Side, name: string): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const pods = await side.client.runtime.unary('ListPodSandbox', {});
    const left = pods.items.filter((p) => p.metadata?.name === name);
    if (!left.length) return;
    for (const pod of left) {
      await side.client.runtime.unary('StopPodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
      await side.client.runtime.unary('RemovePodSandbox', { podSandboxId: pod.id }).catch(() => undefined);
    }
    await sleep(200);
  }
}

async function chunk(side: Side, from: number, count: number, rec: Recorder): Promise<void> {
  let next = from;
  const end = from + count;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(opts.callers, count) }, async () => {
      while (next < end) {
        const i = next++;
        const t0 = performance.now();
        try {
          await cycle(side, `churn-${i}`);
          rec.add(CYCLE, side.name, performance.now() - t0, 'ms');
        } catch (err) {
          // A failed cycle is counted and its pod taken apart again, as kubelet would retry it.
          rec.fail(CYCLE, side.name, describeError(err));
          await removePod(side, `churn-${i}`);
        }
      }
    }),
  );
  rec.add(`wall time per ${count} cycles`, side.name, (performance.now() - started) / 1000, 's');
}

// crispd as configured by default, NRI host included (with no plugin connected), in a directory of its own.
const nriDir = mkdtempSync(join(tmpdir(), 'crisp-bench-nri-'));
const crispConfig = nriTestDir(nriDir).config;

const startedAt = Date.now();
try {
await withBenchEnv({ crispConfig }, async (env) => {
  const rec = new Recorder('MiB');
  await sleep(opts.settle * 1000);
  for (const side of env.sides) sample(side, rec, 'before');

  for (let done = 0; done < opts.cycles; done += opts.chunk) {
    const count = Math.min(opts.chunk, opts.cycles - done);
    const order = (done / opts.chunk) % 2 === 0 ? env.sides : [...env.sides].reverse();
    for (const side of order) await chunk(side, done, count, rec);
    if (done + count < opts.cycles) for (const side of env.sides) sample(side, rec, `after ${done + count} cycles`, false);
  }
  await sleep(opts.settle * 1000);
  for (const side of env.sides) sample(side, rec, `after ${opts.cycles} cycles`);
  await sleep(Math.max(0, opts.quiet - opts.settle) * 1000);
  for (const side of env.sides) {
    sample(side, rec, `${opts.quiet} s later`);
    const pods = (await side.client.runtime.unary('ListPodSandbox', {})).items.length;
    const containers = (await side.client.runtime.unary('ListContainers', {})).containers.length;
    rec.add('left: pods and containers listed', side.name, pods + containers, 'objects');
    rec.add('left: shims and processes below them', side.name, shimTree(side.containerdSocket).length, 'procs');
  }

  saveBenchmark('churn', {
    title: `Pod churn: ${opts.cycles} pods, one after another`,
    peer: 'containerd',
    startedAt,
    params: { cycles: opts.cycles, chunk: opts.chunk, callers: opts.callers, quietSeconds: opts.quiet, settleSeconds: opts.settle },
    rows: rec.rows(),
    samples: rec.samples(),
    notes: [
      `A cycle: RunPodSandbox; CreateContainer + StartContainer of busybox \`sleep 3600\` and of one that prints to stdout and stderr and exits 3; ExecSync \`echo x\` in the first; StopPodSandbox; RemovePodSandbox. ${opts.callers} callers run cycles side by side; the runtimes take turns every ${opts.chunk} cycles (alternating which goes first).`,
      'crispd runs with its default NRI host on (its own socket, no plugin connected), as a node without NRI plugins has it; log level info.',
      'Daemon RSS: crispd\'s node process, its embedded containerd and crisp-spawner, against containerd with its CRI plugin; the crisp rows per process are beside it. Open fds: the same processes\' /proc/<pid>/fd. "before" is after start-up and the busybox pull, before any cycle.',
      `Levels between chunks are sampled right after both runtimes' turn; the final ones ${opts.settle} s after the last call (RSS is a level: median and p95 are of that one sample, the cycle rows are over every cycle). "${opts.quiet} s later" is after a quiet spell, when V8's memory reducer has run.`,
      'A failed cycle is counted (below, with its first error) and its pod stopped and removed again (up to 5 tries), as kubelet would; it has no time row.',
      '"left" rows count what is listed over CRI and the shims (with anything below them) still running after the last RemovePodSandbox: 0 is the only right answer.',
      ...rec.failureNotes(),
    ],
  });
});
} finally {
  rmSync(nriDir, { recursive: true, force: true });
}
