// /proc helpers: a process's RSS, its descendants, a runtime's shims, and killing a tree by pid (never by name).
import { readFileSync, readdirSync } from 'node:fs';
import { pidsWhere } from '../../test/e2e/lib/crispd.js';

/** VmRSS of `pid` in KiB, or undefined when the process is gone. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Parent pid from /proc/<pid>/stat (the comm field may contain spaces and parentheses). */
export function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

/** All descendants of `pid` (children first found, then theirs). */
export function descendants(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const ppid = parentPid(Number(name));
    if (ppid === undefined) continue;
    const list = parents.get(ppid) ?? [];
    list.push(Number(name));
    parents.set(ppid, list);
  }
  const out: number[] = [];
  const queue = [...(parents.get(pid) ?? [])];
  while (queue.length) {
    const p = queue.shift()!;
    out.push(p);
    queue.push(...(parents.get(p) ?? []));
  }
  return out;
}

/** SIGKILL `pid` and everything below it, leaves first so nothing is reparented mid-way unnoticed. */
export function killTree(pid: number): void {
  for (const p of [...descendants(pid).reverse(), pid]) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The shims the containerd at `containerdSocket` started (they carry its address on their command line). */
export function shimPids(containerdSocket: string): number[] {
  return pidsWhere((argv) => argv.includes(containerdSocket) && argv.some((a) => a.includes('containerd-shim')));
}

/** Those shims and everything below them (pause and app containers, loggers). */
export function shimTree(containerdSocket: string): number[] {
  return [...new Set(shimPids(containerdSocket).flatMap((pid) => [pid, ...descendants(pid)]))];
}
