// Linux capabilities of a container's process: the default set, the CRI add/drop lists, privileged.
import { invalidArgument } from '../../common/errors.js';
import type { LinuxCapabilities } from './oci-types.js';
import type { ContainerSecurity } from './types.js';

/** Every capability Linux defines (6.x), in bit order: bit n is ALL_CAPABILITIES[n]. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
];

/**
 * What a container gets when it asks for nothing: containerd's (and Docker's) default list. It keeps
 * what ordinary images expect of root (chown, setuid/setgid for su and daemons dropping privileges,
 * binding low ports, raw sockets for ping, mknod limited by the device cgroup) and leaves out anything
 * that reaches beyond the container (SYS_ADMIN, NET_ADMIN, SYS_MODULE, SYS_TIME, ...).
 */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

const KNOWN = new Set(ALL_CAPABILITIES);

/** "net_admin", "CAP_NET_ADMIN", "Cap_Net_Admin" → "CAP_NET_ADMIN"; "all" → "ALL"; unknown → INVALID_ARGUMENT. */
export function normaliseCapability(name: string): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!KNOWN.has(full)) throw invalidArgument(`unknown capability "${name}"`);
  return full;
}

/**
 * Capability names set in a /proc/<pid>/status mask (CapEff/CapBnd, hex): what the daemon itself holds,
 * which is the most a privileged container can get (runc fails to raise a capability it lacks).
 */
export function capabilitiesFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim() || '0'}`);
  return ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
}

export type CapabilityRequest = Pick<ContainerSecurity, 'capabilities' | 'privileged'>;

/**
 * The process capability sets. Privileged or add "ALL": every capability in `available` (default: all
 * Linux knows). "ALL" in add/drop applies first, so { add: [ALL], drop: [CHOWN] } is everything but
 * CHOWN and { drop: [ALL], add: [NET_ADMIN] } is NET_ADMIN alone; a name both added and dropped ends
 * dropped. Ambient capabilities must also be permitted and inheritable, so they join every set.
 * Inheritable holds only the ambient ones (an inheritable set without them lets a file capability
 * escalate, which is why containerd stopped filling it).
 */
export function computeCapabilities(security: CapabilityRequest, available: readonly string[] = ALL_CAPABILITIES): LinuxCapabilities {
  const add = security.capabilities.add.map(normaliseCapability);
  const drop = security.capabilities.drop.map(normaliseCapability);
  const ambient = security.capabilities.addAmbient.map(normaliseCapability);
  if (ambient.includes('ALL')) throw invalidArgument('"ALL" is not allowed in add_ambient_capabilities');

  let set: Set<string>;
  if (security.privileged) set = new Set(available);
  else {
    set = new Set(add.includes('ALL') ? available : DEFAULT_CAPABILITIES);
    if (drop.includes('ALL')) set.clear();
    for (const c of add) if (c !== 'ALL') set.add(c);
    for (const c of drop) if (c !== 'ALL') set.delete(c);
  }
  for (const c of ambient) set.add(c);
  const ordered = ALL_CAPABILITIES.filter((c) => set.has(c));
  const amb = ALL_CAPABILITIES.filter((c) => ambient.includes(c));
  return { bounding: ordered, effective: [...ordered], permitted: [...ordered], inheritable: amb, ambient: [...amb] };
}
