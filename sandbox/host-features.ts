// What this host can do, probed once at start: LSMs, cgroup layout, swap accounting, and the daemon's
// own limits (OOM score, open files, capabilities) that a container cannot exceed without
// CAP_SYS_RESOURCE.
import { existsSync, readFileSync } from 'node:fs';
import type { OciHostFeatures } from './containers/oci-spec.js';
import { capabilitiesFromMask } from './containers/capabilities.js';
import { v1ControllerMounted } from './cgroups.js';

function read(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

/** Hard "Max open files" of this process. */
export function maxNofile(limits = read('/proc/self/limits')): number | undefined {
  const m = /^Max open files\s+\S+\s+(\S+)/m.exec(limits);
  if (!m || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/**
 * Whether runc finds a hugetlb controller: on a pure v2 host the root lists it in cgroup.controllers; on
 * v1 and hybrid hosts (runc works in v1 mode there) a cgroup v1 hierarchy carries it (the host's mountinfo
 * by default).
 */
export function hugetlbPresent(cgroupV2: boolean, mountinfo: string | undefined, v2Controllers: string): boolean {
  if (cgroupV2) return v2Controllers.split(/\s+/).includes('hugetlb');
  return v1ControllerMounted('hugetlb', mountinfo);
}

export function probeHostFeatures(): OciHostFeatures {
  const cgroupV2 = existsSync('/sys/fs/cgroup/cgroup.controllers');
  const capEff = /^CapEff:\s+([0-9a-f]+)$/m.exec(read('/proc/self/status'))?.[1];
  const nofile = maxNofile();
  return {
    apparmor: read('/sys/module/apparmor/parameters/enabled') === 'Y',
    selinux: read('/sys/fs/selinux/enforce') !== '',
    cgroupV2,
    // runc 1.1 has no "rro" mount option: crisp prepares recursive read-only sources itself
    // (sandbox/containers/prepared-mounts.ts), so the spec never carries "rro".
    rroSupported: false,
    swapAccounting: cgroupV2 ? true : existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes'),
    hugetlb: hugetlbPresent(cgroupV2, undefined, read('/sys/fs/cgroup/cgroup.controllers')),
    daemonOomScoreAdj: Number.parseInt(read('/proc/self/oom_score_adj') || '0', 10),
    ...(capEff ? { capabilities: capabilitiesFromMask(capEff) } : {}),
    ...(nofile ? { maxNofile: nofile } : {}),
  };
}
