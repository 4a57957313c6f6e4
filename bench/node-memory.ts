// Node memory: every process a runtime keeps on the node for P pods with K running containers each —
// its daemons, the shims and everything below them (pause containers, crisp-logger log copiers, the
// app containers), and crisp's per-pod helpers outside the shims (FIFO-mode loggers, pid-namespace
// holders) — each counted with its RSS and its PSS (/proc/<pid>/smaps_rollup: shared pages split
// between the processes that map them, so the PSS column adds up to what the node really spends).
//   node dist/bench/node-memory.js [--pods 20] [--containers 2] [--samples 3] [--settle 3]
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeLogDir, withBenchEnv, type BenchEnv, type Side } from './lib/env.js';
import { parseOptions } from './lib/args.js';
import { saveBenchmark } from './lib/results.js';
import { step } from './lib/errors.js';
import { descendants, shimTree } from './lib/procs.js';
import { Recorder } from './lib/recorder.js';
import { pidsWhere } from '../test/e2e/lib/crispd.js';
import { sleep } from '../common/time.js';

const opts = parseOptions('node-memory', {
  pods: { kind: 'number', default: 20, min: 1, doc: 'pods per runtime' },
  containers: { kind: 'number', default: 2, min: 1, doc: 'running containers per pod' },
  samples: { kind: 'number', default: 3, min: 1, doc: 'samples (500 ms apart); the median of each sum is reported' },
  settle: { kind: 'number', default: 3, min: 0, doc: 'seconds to wait after the last start before sampling' },
});

type Role = 'daemon' | 'shim' | 'pause container' | 'crisp-logger' | 'pid-namespace holder' | 'app container' | 'other';
const ROLES: Role[] = ['daemon', 'shim', 'pause container', 'crisp-logger', 'pid-namespace holder', 'app container', 'other'];

/** RSS and PSS in KiB from smaps_rollup; undefined when the process is gone. */
function memOf(pid: number): { rss: number; pss: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
    return { rss: kib('Rss'), pss: kib('Pss') };
  } catch {
    return undefined;
  }
}

function argvOf(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
  } catch {
    return [];
  }
}

function roleOf(pid: number, daemons: Set<number>): Role {
  if (daemons.has(pid)) return 'daemon';
  const argv = argvOf(pid);
  const prog = (argv[0] ?? '').split('/').pop() ?? '';
  if (prog.startsWith('containerd-shim')) return 'shim';
  if (prog === 'crisp-logger') return 'crisp-logger';
  if (prog === 'crisp-pidinit' || prog.startsWith('crisp-nshelper')) return 'pid-namespace holder';
  // The peer's pause image runs busybox `sleep infinity`; the app containers `sleep 3600`.
  if (argv.includes('infinity')) return 'pause container';
  if (argv.includes('3600')) return 'app container';
  return 'other';
}

/** Every process of this runtime on the node, by pid. */
function processesOf(env: BenchEnv, side: Side): { pids: number[]; daemons: Set<number> } {
  const daemons = new Set(side.daemonPids().map((d) => d.pid));
  const pids = new Set<number>([...daemons, ...shimTree(side.containerdSocket)]);
  if (side.name === 'crisp' && env.crispd) {
    // Detached helpers (FIFO-mode loggers, pid-namespace holders) name crispd's directories in argv.
    const dir = env.crispd.dir;
    for (const p of pidsWhere((argv) => argv.some((a) => a.startsWith(dir)) && !argv.some((a) => a.includes('containerd-shim')))) {
      if (!daemons.has(p) && !descendants(env.crispd.child?.pid ?? -1).includes(p)) pids.add(p);
    }
  }
  return { pids: [...pids], daemons };
}

interface RoleSum {
  count: number;
  rss: number;
  pss: number;
}

function sampleSide(env: BenchEnv, side: Side): Map<Role, RoleSum> {
  const { pids, daemons } = processesOf(env, side);
  const out = new Map<Role, RoleSum>(ROLES.map((r) => [r, { count: 0, rss: 0, pss: 0 }]));
  for (const pid of pids) {
    const m = memOf(pid);
    if (!m) continue;
    const s = out.get(roleOf(pid, daemons))!;
    s.count++;
    s.rss += m.rss;
    s.pss += m.pss;
  }
  return out;
}

async function startAll(side: Side): Promise<void> {
  for (let p = 0; p < opts.pods; p++) {
    const pod = await step(side.name, `RunPodSandbox mem-${p}`, () => side.runPod(`mem-${p}`));
    for (let c = 0; c < opts.containers; c++) {
      const name = `app${c}`;
      makeLogDir(join(pod.config.logDirectory!, name));
      const { containerId } = await step(side.name, `CreateContainer ${name} in mem-${p}`, () =>
        side.client.runtime.unary('CreateContainer', { podSandboxId: pod.id, config: side.containerConfig(name, ['sleep', '3600']), sandboxConfig: pod.config }),
      );
      await step(side.name, `StartContainer ${name} in mem-${p}`, () => side.client.runtime.unary('StartContainer', { containerId }));
    }
  }
}

const MiB = (kib: number) => kib / 1024;
const startedAt = Date.now();
await withBenchEnv({}, async (env) => {
  for (const side of env.sides) await startAll(side);
  await sleep(opts.settle * 1000);
  const rec = new Recorder('MiB');
  for (let i = 0; i < opts.samples; i++) {
    for (const side of env.sides) {
      const sums = sampleSide(env, side);
      const runtime = ROLES.filter((r) => r !== 'app container').map((r) => sums.get(r)!);
      rec.add('runtime total (without app containers): PSS', side.name, MiB(runtime.reduce((a, s) => a + s.pss, 0)));
      rec.add('runtime total (without app containers): RSS', side.name, MiB(runtime.reduce((a, s) => a + s.rss, 0)));
      rec.add('runtime total (without app containers): processes', side.name, runtime.reduce((a, s) => a + s.count, 0), 'procs');
      // A role this runtime does not have (crisp: pause containers) stays out of its column.
      for (const role of ROLES) {
        const sum = sums.get(role)!;
        if (sum.count === 0) continue;
        rec.add(`${role}: PSS`, side.name, MiB(sum.pss));
        rec.add(`${role}: RSS`, side.name, MiB(sum.rss));
        rec.add(`${role}: processes`, side.name, sum.count, 'procs');
      }
    }
    await sleep(500);
  }
  saveBenchmark('node-memory', {
    title: `Node memory, ${opts.pods} pods × ${opts.containers} containers`,
    peer: 'containerd',
    startedAt,
    params: { pods: opts.pods, containers: opts.containers, samples: opts.samples, settleSeconds: opts.settle },
    rows: rec.rows(),
    samples: rec.samples(),
    notes: [
      'Every process is counted once: the daemons (crispd\'s node process and its embedded containerd; the peer\'s containerd with the CRI plugin), every containerd-shim-runc-v2 started by that containerd and all its descendants, and for crisp any detached helper naming crispd\'s directories (FIFO-mode loggers, pid-namespace holders).',
      'PSS (from /proc/<pid>/smaps_rollup) splits shared pages (the node binary, the shim binary, busybox) between the processes mapping them, so PSS sums add up across processes; RSS sums count shared pages once per process.',
      'App containers (busybox `sleep 3600`) are the same workload on both sides and are left out of the runtime total. The pods do not share a pid namespace, so crisp runs no pid-namespace holder here.',
      'Medians over the samples (a level, not a latency); both runtimes hold all their pods at once while sampling. A role a runtime does not have shows –.',
    ],
  });
});
