// The network crisp writes when the node has none: a bridge with host-local IPAM plus portmap, the
// same shape containerd and CRI-O ship. Names, subnet and paths are parameters so tests (and several
// runtimes on one host) never collide.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { invalidArgument } from '../common/errors.js';
import { writeFileAtomic } from '../common/atomic-file.js';
import { validateNetworkConfig } from './config.js';
import type { JsonObject, NetworkConfigList, PluginConf } from './types.js';

export interface DefaultConflistOptions {
  /** Network name; default "crisp". */
  name?: string;
  /** Linux bridge device, at most 15 characters. */
  bridge: string;
  /**
   * Static subnet(s) for host-local, one per family. Leave it out to take the pod CIDR per ADD through
   * the ipRanges capability instead (host-local would otherwise use both and hand out two addresses).
   */
  subnet?: string | string[];
  /** host-local's allocation store; default host-local's own (/var/lib/cni/networks). */
  dataDir?: string;
  /** Default routes; default: one per subnet family, or 0.0.0.0/0 when the subnet comes at ADD time. */
  routes?: string[];
  cniVersion?: string;
  mtu?: number;
  /** Masquerade pod traffic leaving the node; default true. */
  ipMasq?: boolean;
  /** Let a pod reach itself through a service/host port; default true. */
  hairpinMode?: boolean;
  /** Add the bandwidth plugin (bandwidth capability); default false. */
  bandwidth?: boolean;
}

export function defaultConflist(opts: DefaultConflistOptions): NetworkConfigList {
  if (!/^[a-zA-Z0-9_.-]{1,15}$/.test(opts.bridge)) throw invalidArgument(`default conflist: bridge name ${JSON.stringify(opts.bridge)} is not a valid device name`);
  const subnets = opts.subnet === undefined ? [] : Array.isArray(opts.subnet) ? opts.subnet : [opts.subnet];
  const routes = opts.routes ?? (subnets.length > 0 ? [...new Set(subnets.map((s) => (s.includes(':') ? '::/0' : '0.0.0.0/0')))] : ['0.0.0.0/0']);

  const ipam: JsonObject = { type: 'host-local', routes: routes.map((dst) => ({ dst })) };
  if (subnets.length > 0) ipam.ranges = subnets.map((subnet) => [{ subnet }]);
  if (opts.dataDir) ipam.dataDir = opts.dataDir;

  const bridge: PluginConf = {
    type: 'bridge',
    bridge: opts.bridge,
    isGateway: true,
    ipMasq: opts.ipMasq ?? true,
    hairpinMode: opts.hairpinMode ?? true,
    ipam,
  };
  if (subnets.length === 0) bridge.capabilities = { ipRanges: true };
  if (opts.mtu !== undefined) bridge.mtu = opts.mtu;

  const plugins: PluginConf[] = [bridge, { type: 'portmap', capabilities: { portMappings: true }, snat: true }];
  if (opts.bandwidth) plugins.push({ type: 'bandwidth', capabilities: { bandwidth: true } });

  const list = { cniVersion: opts.cniVersion ?? '1.0.0', name: opts.name ?? 'crisp', plugins };
  // Same rules as files read from the conf dir, so a bad option fails here and not at the first pod.
  return validateNetworkConfig('(default conflist)', list);
}

/** Write a conflist atomically (readers never see half a file), creating the conf dir if needed. */
export async function writeConflist(file: string, list: NetworkConfigList): Promise<void> {
  if (!file.endsWith('.conflist')) throw invalidArgument(`${file}: a network config list file must end in .conflist`);
  await mkdir(dirname(file), { recursive: true, mode: 0o755 });
  await writeFileAtomic(file, JSON.stringify(list, null, 2) + '\n', 0o644);
}
