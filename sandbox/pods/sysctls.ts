// Which sysctls a pod may set: only namespaced ones, and only for namespaces the pod owns.
import { invalidArgument } from '../../common/errors.js';
import type { PodNamespaces } from './types.js';

const IPC_PREFIXES = ['kernel.shm', 'kernel.msg', 'fs.mqueue.'];
const IPC_EXACT = ['kernel.sem'];

export function sysctlNamespace(key: string): 'net' | 'ipc' | undefined {
  if (key.startsWith('net.')) return 'net';
  if (IPC_EXACT.includes(key) || IPC_PREFIXES.some((p) => key.startsWith(p))) return 'ipc';
  return undefined;
}

/** Normalise "net/ipv4/ip_forward" to dots and reject what is not namespaced or not ours. */
export function validateSysctls(sysctls: Record<string, string>, ns: PodNamespaces, field: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [raw, value] of Object.entries(sysctls)) {
    const key = raw.replace(/\//g, '.');
    const where = `${field}["${raw}"]`;
    if (!/^[a-z0-9_.-]+$/i.test(key) || key.includes('..')) throw invalidArgument(`${where}: invalid sysctl name`);
    if (/[\n\0]/.test(value)) throw invalidArgument(`${where}: value must be one line`);
    const kind = sysctlNamespace(key);
    if (!kind) throw invalidArgument(`${where}: not a namespaced sysctl (allowed: net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*)`);
    if (kind === 'net' && ns.network === 'node') throw invalidArgument(`${where}: net.* sysctls are not allowed with host networking`);
    if (kind === 'ipc' && ns.ipc === 'node') throw invalidArgument(`${where}: IPC sysctls are not allowed with host IPC`);
    out[key] = value;
  }
  return out;
}
