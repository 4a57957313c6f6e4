// A count of everything a crispd (and its containerd) can leave on a node, for before/after comparisons
// in fault and leak tests: shims, container processes, helper processes, mounts and pinned namespaces
// below the test's dir, host-local IP reservations, cgroups below the pods' cgroup parent, exec FIFO
// dirs, pod directories, and containerd's containers, tasks, snapshots and leases. Plus crispd's own
// open fds and RSS, which are compared with a bound rather than exactly.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerdClient } from '../../../backend/containerd/client.js';
import { cgroupMounts } from '../../../sandbox/cgroups.js';
import type { TestCrispd } from './crispd.js';
import type { TestNetwork } from './network.js';

export interface Census {
  shims: number;
  /** Direct children of the shims (container inits, execs, loggers); their own children come and go. */
  containerProcesses: number;
  /** Other processes naming the test dir (pod pid-namespace holders, leftovers), not crispd or containerd. */
  helpers: number;
  mounts: number;
  pinnedNamespaces: number;
  ipReservations: number;
  cgroups: number;
  execDirs: number;
  podDirs: number;
  /** Container record directories under the root. */
  containerDirs: number;
  containerdContainers: number;
  tasks: number;
  snapshots: number;
  leases: number;
}

export interface CensusTarget {
  d: TestCrispd;
  net: TestNetwork;
  /** The cgroupfs parent the pods are made under (crispd's `cgroup_parent`), e.g. "/crisp-e2e-…". */
  cgroupParent: string;
  /** containerd's socket; the embedded one's by default. */
  containerdAddress?: string;
  /** An external containerd's own dir: its mounts (task rootfs) count too. */
  containerdDir?: string;
  namespace?: string;
}

interface Proc {
  pid: number;
  ppid: number;
  argv: string[];
}

function processes(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // "pid (comm) state ppid …": comm may hold spaces and parentheses.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
      out.push({ pid: Number(name), ppid, argv });
    } catch {
      // exited while being read: not there to count
    }
  }
  return out;
}

function mountinfoBelow(dir: string): { point: string; fstype: string }[] {
  const out: { point: string; fstype: string }[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const [pre, post] = line.split(' - ');
    const point = pre?.split(' ')[4];
    if (!point || !post || (point !== dir && !point.startsWith(`${dir}/`))) continue;
    out.push({ point, fstype: post.split(' ')[0] ?? '' });
  }
  return out;
}

function countDirs(dir: string): number {
  if (!existsSync(dir)) return 0;
  let n = 1;
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) n += countDirs(join(dir, e.name));
  return n;
}

const entries = (dir: string) => (existsSync(dir) ? readdirSync(dir) : []);

export async function takeCensus(t: CensusTarget): Promise<Census> {
  const { d, net } = t;
  const address = t.containerdAddress ?? join(d.state, 'containerd', 'containerd.sock');
  const procs = processes();
  const shimPids = new Set(procs.filter((p) => (p.argv[0] ?? '').includes('containerd-shim') && p.argv.includes(address)).map((p) => p.pid));
  const byParent = new Map<number, Proc[]>();
  for (const p of procs) byParent.set(p.ppid, [...(byParent.get(p.ppid) ?? []), p]);
  const below = new Set<number>();
  for (const pid of shimPids) for (const c of byParent.get(pid) ?? []) if (!shimPids.has(c.pid)) below.add(c.pid);
  const crispdPid = d.child?.pid;
  const ctdPid = d.containerdPid();
  const inContainers = new Set<number>();
  const walk = (pid: number) => {
    for (const c of byParent.get(pid) ?? []) {
      if (inContainers.has(c.pid)) continue;
      inContainers.add(c.pid);
      walk(c.pid);
    }
  };
  for (const pid of shimPids) walk(pid);
  const helpers = procs.filter(
    (p) => !shimPids.has(p.pid) && !inContainers.has(p.pid) && p.pid !== crispdPid && p.pid !== ctdPid && p.pid !== process.pid && p.argv.some((a) => a.includes(d.dir)),
  ).length;
  const mounts = [...mountinfoBelow(d.dir), ...(t.containerdDir ? mountinfoBelow(t.containerdDir) : [])];
  const ipDir = join(net.dataDir, net.name);
  const cgroups = cgroupMounts().reduce((n, m) => n + countDirs(join(m, t.cgroupParent)), 0);

  const client = new ContainerdClient({ address, namespace: t.namespace ?? 'k8s.io', timeoutMs: 10_000 });
  try {
    const containerdContainers = (await client.containers.unary('List', {})).containers.length;
    const tasks = (await client.tasks.unary('List', {})).tasks.length;
    let snapshots = 0;
    for await (const r of client.snapshots.serverStream('List', { snapshotter: 'overlayfs' })) snapshots += r.info.length;
    const leases = (await client.leases.unary('List', {})).leases.length;
    return {
      shims: shimPids.size,
      containerProcesses: below.size,
      helpers,
      mounts: mounts.length,
      pinnedNamespaces: mounts.filter((m) => m.fstype === 'nsfs').length,
      ipReservations: entries(ipDir).filter((f) => /^[\d.:a-f]+$/.test(f) && f.includes('.')).length,
      cgroups,
      execDirs: entries(join(d.state, 'exec')).length,
      podDirs: entries(join(d.root, 'pods')).length,
      containerDirs: entries(join(d.root, 'containers')).length,
      containerdContainers,
      tasks,
      snapshots,
      leases,
    };
  } finally {
    client.close();
  }
}

/** crispd's open file descriptors and resident memory (KiB), from /proc. */
export function processFootprint(pid: number): { fds: number; rssKiB: number } {
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  const rss = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { fds, rssKiB: rss ? Number(rss[1]) : Number.NaN };
}

/** The census fields that differ, as "field: before → after" (empty when nothing leaked). */
export function censusDiff(before: Census, after: Census): string[] {
  return (Object.keys(before) as (keyof Census)[]).filter((k) => before[k] !== after[k]).map((k) => `${k}: ${before[k]} → ${after[k]}`);
}


/** Polls the census until it equals `want` (exits and cleanups settle) or `ms` passes; returns the diff. */
export async function settledDiff(target: CensusTarget, want: Census, ms = 15_000): Promise<string[]> {
  const deadline = Date.now() + ms;
  for (;;) {
    const diff = censusDiff(want, await takeCensus(target));
    if (diff.length === 0 || Date.now() > deadline) return diff;
    await new Promise((r) => setTimeout(r, 250));
  }
}
