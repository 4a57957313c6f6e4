// How many processes the kernel OOM-killed in a container's cgroup (cgroup v2 memory.events), read
// when its exit arrives: the counter moves when the kill is issued, so it is settled before the exit,
// where containerd's TaskOOM event may still be on its way.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout, cgroupfsPathOf } from '../cgroup-stats.js';

let v2Root: string | undefined | null = null;

/** The count, or undefined when it cannot be read (cgroup v1, or the cgroup is gone already). */
/** `root`: the cgroup v2 mount, null on a host without a pure v2 tree (default: this host's). */
export async function oomKills(cgroupsPath: string, root: string | null = cgroupV2Root() ?? null): Promise<number | undefined> {
  if (!root || !cgroupsPath) return undefined;
  let text: string;
  try {
    text = await readFile(join(root, cgroupfsPathOf(cgroupsPath), 'memory.events'), 'utf8');
  } catch {
    // Gone or unreadable: the caller falls back to waiting for containerd's OOM event.
    return undefined;
  }
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The cgroup v2 mount when the host is pure v2 (mounts do not move while crispd runs). */
function cgroupV2Root(): string | undefined {
  if (v2Root === null) v2Root = cgroupLayout().v2;
  return v2Root;
}
