// How many processes the kernel OOM-killed in a container's cgroup, read when its exit arrives: the
// counter moves when the kill is issued, so it is settled before the exit, where containerd's TaskOOM
// event may still be on its way. cgroup v2 keeps it in memory.events, v1 (kernel ≥ 4.13) in
// memory.oom_control; both show the memory cgroup's one `oom_kill` count.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout, cgroupfsPathOf } from '../cgroup-stats.js';

/** Where the memory controller is: the v2 root on a pure v2 host, else the v1 memory mount. */
export type MemoryCgroupRoot = { v2: string } | { v1: string };

let hostRoot: MemoryCgroupRoot | undefined | null = null;

/** The count, or undefined when it cannot be read (no memory controller, an old kernel, the cgroup is gone already). */
/** `root`: where the memory controller is mounted, null when it is not (default: this host's). */
export async function oomKills(cgroupsPath: string, root: MemoryCgroupRoot | null = hostMemoryRoot() ?? null): Promise<number | undefined> {
  if (!root || !cgroupsPath) return undefined;
  const file = 'v2' in root ? join(root.v2, cgroupfsPathOf(cgroupsPath), 'memory.events') : join(root.v1, cgroupfsPathOf(cgroupsPath), 'memory.oom_control');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    // Gone or unreadable: the caller falls back to waiting for containerd's OOM event.
    return undefined;
  }
  const m = /^oom_kill (\d+)$/m.exec(text);
  return m ? Number(m[1]) : undefined;
}

/** This host's memory controller (mounts do not move while crispd runs). */
function hostMemoryRoot(): MemoryCgroupRoot | undefined {
  if (hostRoot === null) {
    const layout = cgroupLayout();
    const v1 = layout.v1.get('memory');
    hostRoot = layout.v2 ? { v2: layout.v2 } : v1 ? { v1 } : undefined;
  }
  return hostRoot;
}
