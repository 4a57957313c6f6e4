// CPU, memory and process counts of a cgroup, read straight from cgroupfs (v1 controllers or the v2
// tree), so stats need no extra round trip through containerd.
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface CgroupStats {
  /** Cumulative CPU time in nanoseconds. */
  cpuUsageNanos: number;
  memoryUsageBytes: number;
  /** Usage minus inactive file cache: what kubelet evicts on. */
  memoryWorkingSetBytes: number;
  memoryRssBytes: number;
  pageFaults: number;
  majorPageFaults: number;
  processCount: number;
}

interface Layout {
  v2?: string;
  v1: Map<string, string>;
}

/** controller name → mount point (v1), and the v2 root when the host is pure v2. */
export function cgroupLayout(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): Layout {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const [fstype, , superOpts] = post.split(' ');
    const mountPoint = pre.split(' ')[4];
    if (!mountPoint) continue;
    if (fstype === 'cgroup') for (const o of (superOpts ?? '').split(',')) if (o !== 'rw' && o !== 'ro') v1.set(o, mountPoint);
    if (fstype === 'cgroup2') v2 = mountPoint;
  }
  // A v2 mount beside v1 controllers (hybrid) holds no controllers: read the v1 ones.
  return v1.size > 0 ? { v1 } : { v1, ...(v2 ? { v2 } : {}) };
}

async function readNum(path: string): Promise<number> {
  try {
    return Number.parseInt((await readFile(path, 'utf8')).trim(), 10) || 0;
  } catch {
    return 0;
  }
}

async function readKv(path: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  try {
    for (const line of (await readFile(path, 'utf8')).split('\n')) {
      const [k, v] = line.split(' ');
      if (k && v) out.set(k, Number(v));
    }
  } catch {
    // absent controller
  }
  return out;
}

async function countProcs(path: string): Promise<number> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter(Boolean).length;
  } catch {
    return 0;
  }
}

/** Stats of `cgroupPath` (cgroupfs-style, e.g. /crisp/pod/ctr); zeros where a controller is absent. */
export async function readCgroupStats(cgroupPath: string, layout: Layout = cgroupLayout()): Promise<CgroupStats> {
  if (layout.v2) {
    const dir = join(layout.v2, cgroupPath);
    const cpu = await readKv(join(dir, 'cpu.stat'));
    const mem = await readKv(join(dir, 'memory.stat'));
    const usage = await readNum(join(dir, 'memory.current'));
    return {
      cpuUsageNanos: (cpu.get('usage_usec') ?? 0) * 1000,
      memoryUsageBytes: usage,
      memoryWorkingSetBytes: Math.max(0, usage - (mem.get('inactive_file') ?? 0)),
      memoryRssBytes: mem.get('anon') ?? 0,
      pageFaults: mem.get('pgfault') ?? 0,
      majorPageFaults: mem.get('pgmajfault') ?? 0,
      processCount: await countProcs(join(dir, 'cgroup.procs')),
    };
  }
  const at = (controller: string, file: string) => join(layout.v1.get(controller) ?? `/nonexistent/${controller}`, cgroupPath, file);
  const mem = await readKv(at('memory', 'memory.stat'));
  const usage = await readNum(at('memory', 'memory.usage_in_bytes'));
  return {
    cpuUsageNanos: await readNum(at('cpuacct', 'cpuacct.usage')),
    memoryUsageBytes: usage,
    memoryWorkingSetBytes: Math.max(0, usage - (mem.get('total_inactive_file') ?? 0)),
    memoryRssBytes: mem.get('total_rss') ?? 0,
    pageFaults: mem.get('total_pgfault') ?? 0,
    majorPageFaults: mem.get('total_pgmajfault') ?? 0,
    processCount: await countProcs(at('pids', 'cgroup.procs')),
  };
}

/** cgroupsPath as runc got it → the cgroupfs path (systemd "slice:prefix:name" → slice path). */
export function cgroupfsPathOf(cgroupsPath: string): string {
  if (!cgroupsPath.includes(':')) return cgroupsPath;
  const [slice, prefix, name] = cgroupsPath.split(':') as [string, string, string];
  const parts = slice.replace(/\.slice$/, '').split('-');
  const dirs = parts.map((_, i) => `${parts.slice(0, i + 1).join('-')}.slice`);
  return `/${[...dirs, `${prefix}-${name}.scope`].join('/')}`;
}
