// The raw numbers behind CRI metrics (ListPodSandboxMetrics): one container's cgroup (v1 controllers
// or the v2 tree) and its processes, read from cgroupfs and /proc. A file the host does not have
// leaves its field undefined: it is not reported, never reported as zero.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout } from '../cgroup-stats.js';

export interface CgroupSample {
  cpuUsageNanos?: number;
  cpuUserNanos?: number;
  cpuSystemNanos?: number;
  cfsPeriods?: number;
  cfsThrottledPeriods?: number;
  cfsThrottledNanos?: number;
  memoryUsage?: number;
  memoryMaxUsage?: number;
  memoryCache?: number;
  memoryRss?: number;
  memoryMappedFile?: number;
  memoryKernel?: number;
  memorySwap?: number;
  memoryWorkingSet?: number;
  memoryFailcnt?: number;
  pgfault?: number;
  pgmajfault?: number;
  oomEvents?: number;
  processes?: number;
  threadsMax?: number;
  /** The memory limit (absent: unlimited). */
  memoryLimit?: number;
  /** Swap the cgroup may still use (absent: unlimited or not accounted). */
  swapLimit?: number;
  /** Pressure stall information (cgroup v2 with PSI only). */
  psi?: { cpu?: Psi; memory?: Psi; io?: Psi };
}

export interface PsiLine {
  total: number;
  avg10: number;
  avg60: number;
  avg300: number;
}
export interface Psi {
  some?: PsiLine;
  full?: PsiLine;
}

/** A <resource>.pressure file: "some avg10=… avg60=… avg300=… total=…" and a "full" line. */
export function parsePsi(text: string | undefined): Psi | undefined {
  if (!text) return undefined;
  const out: Psi = {};
  for (const line of text.split('\n')) {
    const [kind, ...fields] = line.trim().split(/\s+/);
    if (kind !== 'some' && kind !== 'full') continue;
    const f = Object.fromEntries(fields.map((x) => x.split('=') as [string, string]));
    out[kind] = { total: Number(f.total ?? 0), avg10: Number(f.avg10 ?? 0), avg60: Number(f.avg60 ?? 0), avg300: Number(f.avg300 ?? 0) };
  }
  return out.some || out.full ? out : undefined;
}

/** v1 reports "no limit" as a page-rounded huge number. */
const limitOrUndefined = (n: number | undefined) => (n === undefined || n >= 2 ** 62 ? undefined : n);

export interface ProcessSample {
  fileDescriptors: number;
  sockets: number;
  threads: number;
}

async function text(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    // an absent file is a counter this host (or this cgroup version) does not keep
    return undefined;
  }
}

async function num(path: string): Promise<number | undefined> {
  const t = await text(path);
  if (t === undefined || t === 'max') return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

async function kv(path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of ((await text(path)) ?? '').split('\n')) {
    const [k, v] = line.split(/\s+/);
    if (k && v !== undefined && Number.isFinite(Number(v))) out.set(k, Number(v));
  }
  return out;
}

const workingSet = (usage: number | undefined, inactiveFile: number | undefined) =>
  usage === undefined ? undefined : Math.max(0, usage - (inactiveFile ?? 0));

/** USER_HZ on Linux for every architecture Kubernetes runs on: cpuacct.stat counts in 1/100 s. */
const USER_HZ_NANOS = 10_000_000;

export async function sampleCgroup(cgroupPath: string, layout = cgroupLayout()): Promise<CgroupSample> {
  if (layout.v2) {
    const dir = join(layout.v2, cgroupPath);
    const cpu = await kv(join(dir, 'cpu.stat'));
    const mem = await kv(join(dir, 'memory.stat'));
    const events = await kv(join(dir, 'memory.events'));
    const usage = await num(join(dir, 'memory.current'));
    const micros = (k: string) => (cpu.has(k) ? cpu.get(k)! * 1000 : undefined);
    return {
      cpuUsageNanos: micros('usage_usec'),
      cpuUserNanos: micros('user_usec'),
      cpuSystemNanos: micros('system_usec'),
      cfsPeriods: cpu.get('nr_periods'),
      cfsThrottledPeriods: cpu.get('nr_throttled'),
      cfsThrottledNanos: micros('throttled_usec'),
      memoryUsage: usage,
      memoryMaxUsage: await num(join(dir, 'memory.peak')),
      memoryCache: mem.get('file'),
      memoryRss: mem.get('anon'),
      memoryMappedFile: mem.get('file_mapped'),
      memoryKernel: mem.get('kernel') ?? (mem.has('slab') ? mem.get('slab')! + (mem.get('kernel_stack') ?? 0) : undefined),
      memorySwap: await num(join(dir, 'memory.swap.current')),
      memoryWorkingSet: workingSet(usage, mem.get('inactive_file')),
      memoryFailcnt: events.get('max'),
      pgfault: mem.get('pgfault'),
      pgmajfault: mem.get('pgmajfault'),
      oomEvents: events.get('oom_kill'),
      processes: await num(join(dir, 'pids.current')),
      threadsMax: await num(join(dir, 'pids.max')),
      memoryLimit: limitOrUndefined(await num(join(dir, 'memory.max'))),
      swapLimit: limitOrUndefined(await num(join(dir, 'memory.swap.max'))),
      psi: {
        cpu: parsePsi(await text(join(dir, 'cpu.pressure'))),
        memory: parsePsi(await text(join(dir, 'memory.pressure'))),
        io: parsePsi(await text(join(dir, 'io.pressure'))),
      },
    };
  }
  const at = (controller: string, file: string) => join(layout.v1.get(controller) ?? `/nonexistent/${controller}`, cgroupPath, file);
  const cpuStat = await kv(at('cpu', 'cpu.stat'));
  const acct = await kv(at('cpuacct', 'cpuacct.stat'));
  const mem = await kv(at('memory', 'memory.stat'));
  const oom = await kv(at('memory', 'memory.oom_control'));
  const usage = await num(at('memory', 'memory.usage_in_bytes'));
  const ticks = (k: string) => (acct.has(k) ? acct.get(k)! * USER_HZ_NANOS : undefined);
  return {
    cpuUsageNanos: await num(at('cpuacct', 'cpuacct.usage')),
    cpuUserNanos: ticks('user'),
    cpuSystemNanos: ticks('system'),
    cfsPeriods: cpuStat.get('nr_periods'),
    cfsThrottledPeriods: cpuStat.get('nr_throttled'),
    cfsThrottledNanos: cpuStat.get('throttled_time'),
    memoryUsage: usage,
    memoryMaxUsage: await num(at('memory', 'memory.max_usage_in_bytes')),
    memoryCache: mem.get('total_cache'),
    memoryRss: mem.get('total_rss'),
    memoryMappedFile: mem.get('total_mapped_file'),
    memoryKernel: await num(at('memory', 'memory.kmem.usage_in_bytes')),
    memorySwap: mem.get('total_swap'),
    memoryWorkingSet: workingSet(usage, mem.get('total_inactive_file')),
    memoryFailcnt: await num(at('memory', 'memory.failcnt')),
    pgfault: mem.get('total_pgfault'),
    pgmajfault: mem.get('total_pgmajfault'),
    oomEvents: oom.get('oom_kill'),
    processes: await num(at('pids', 'pids.current')),
    threadsMax: await num(at('pids', 'pids.max')),
    memoryLimit: limitOrUndefined(await num(at('memory', 'memory.limit_in_bytes'))),
    swapLimit: await swapLimitV1(at('memory', 'memory.memsw.limit_in_bytes'), at('memory', 'memory.limit_in_bytes')),
  };
}

/** v1 limits memory+swap together: the swap part is their difference. */
async function swapLimitV1(memswFile: string, memFile: string): Promise<number | undefined> {
  const memsw = limitOrUndefined(await num(memswFile));
  const mem = limitOrUndefined(await num(memFile));
  return memsw === undefined || mem === undefined ? undefined : Math.max(0, memsw - mem);
}

/** Open files, sockets among them, and threads of the processes in `procsFile` (cgroup.procs). */
export async function sampleProcesses(procsFile: string): Promise<ProcessSample> {
  const pids = ((await text(procsFile)) ?? '').split('\n').filter(Boolean);
  const out: ProcessSample = { fileDescriptors: 0, sockets: 0, threads: 0 };
  for (const pid of pids) {
    const threads = /^Threads:\s+(\d+)/m.exec((await text(`/proc/${pid}/status`)) ?? '');
    out.threads += threads ? Number(threads[1]) : 0;
    let fds: string[] = [];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      // the process exited between the listing and now
      continue;
    }
    out.fileDescriptors += fds.length;
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '');
      if (target.startsWith('socket:')) out.sockets++;
    }
  }
  return out;
}

/** The cgroup.procs file of a cgroup path on this host. */
export function procsFileOf(cgroupPath: string, layout = cgroupLayout()): string {
  if (layout.v2) return join(layout.v2, cgroupPath, 'cgroup.procs');
  return join(layout.v1.get('pids') ?? layout.v1.get('memory') ?? '/nonexistent', cgroupPath, 'cgroup.procs');
}
