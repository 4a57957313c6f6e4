// The host side of a volume's mount propagation. A Bidirectional (rshared) volume needs its host path on
// a shared mount, a HostToContainer (rslave) one on a shared or slave mount: on a private mount runc makes
// the container's mount as asked and nothing ever propagates, silently. containerd's CRI refuses both at
// CreateContainer, naming the mount; so does crisp, naming the field and the fix.
import { readFile, realpath } from 'node:fs/promises';
import { failedPrecondition } from '../../common/errors.js';
import type { MountSpec } from './types.js';
import { parseMountinfo } from '../mountinfo.js';

export interface HostMount {
  point: string;
  shared: boolean;
  /** Receives propagation from a peer group (`master:N`). */
  slave: boolean;
}

/** The mounts of a /proc/<pid>/mountinfo table, in its order, with their propagation. */
export function hostMounts(text: string): HostMount[] {
  return parseMountinfo(text).map((l) => ({
    point: l.mountPoint,
    shared: l.optional.some((o) => o.startsWith('shared:')),
    slave: l.optional.some((o) => o.startsWith('master:')),
  }));
}

/** The mount `path` (resolved) lies on: the longest mount point above it, the last one mounted there. */
export function mountOf(path: string, mounts: readonly HostMount[]): HostMount | undefined {
  let best: HostMount | undefined;
  for (const m of mounts) {
    const above = m.point === '/' || path === m.point || path.startsWith(`${m.point}/`);
    if (above && (!best || m.point.length >= best.point.length)) best = m;
  }
  return best;
}

/**
 * FAILED_PRECONDITION for the first rshared or rslave volume whose host path is on a mount that cannot
 * propagate that way. Reads the host's mountinfo only when such a volume is asked for.
 */
export async function checkMountPropagation(mounts: readonly MountSpec[], mountinfo = () => readFile('/proc/self/mountinfo', 'utf8')): Promise<void> {
  const wanting = [...mounts.entries()].filter(([, m]) => !m.image && m.propagation !== 'private');
  if (wanting.length === 0) return;
  const table = hostMounts(await mountinfo());
  for (const [i, m] of wanting) {
    const path = await realpath(m.hostPath);
    const host = mountOf(path, table);
    if (!host || host.shared || (m.propagation === 'rslave' && host.slave)) continue;
    const mode = m.propagation === 'rshared' ? 'Bidirectional (rshared) needs a shared mount' : 'HostToContainer (rslave) needs a shared or slave mount';
    throw failedPrecondition(
      `config.mounts[${i}].propagation: host path "${m.hostPath}" is on mount "${host.point}", which is ${host.slave ? 'a slave' : 'private'}; ${mode} (mount --make-rshared ${host.point})`,
    );
  }
}
