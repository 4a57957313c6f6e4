// Where cgroups live on this host (v1 controller mounts or the v2 tree) and the cgroupfs path of a
// container's cgroupsPath; the counters themselves are read by containers/metrics-sample.ts.
import { readFileSync } from 'node:fs';
import { parseMountinfo } from './mountinfo.js';

interface Layout {
  v2?: string;
  v1: Map<string, string>;
}

/** controller name → mount point (v1), and the v2 root when the host is pure v2. */
export function cgroupLayout(mountinfo = readFileSync('/proc/self/mountinfo', 'utf8')): Layout {
  const v1 = new Map<string, string>();
  let v2: string | undefined;
  for (const { fstype, mountPoint, superOptions } of parseMountinfo(mountinfo)) {
    if (fstype === 'cgroup') for (const o of superOptions) if (o !== 'rw' && o !== 'ro') v1.set(o, mountPoint);
    if (fstype === 'cgroup2') v2 = mountPoint;
  }
  // A v2 mount beside v1 controllers (hybrid) holds no controllers: read the v1 ones.
  return v1.size > 0 ? { v1 } : { v1, ...(v2 ? { v2 } : {}) };
}

/** cgroupsPath as runc got it → the cgroupfs path (systemd "slice:prefix:name" → slice path). */
export function cgroupfsPathOf(cgroupsPath: string): string {
  if (!cgroupsPath.includes(':')) return cgroupsPath;
  const [slice, prefix, name] = cgroupsPath.split(':') as [string, string, string];
  const parts = slice.replace(/\.slice$/, '').split('-');
  const dirs = parts.map((_, i) => `${parts.slice(0, i + 1).join('-')}.slice`);
  return `/${[...dirs, `${prefix}-${name}.scope`].join('/')}`;
}
