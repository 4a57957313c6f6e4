// Runtime (capability) arguments: what the runtime knows per pod and hands to plugins that ask for it
// through their `capabilities` map. A plugin only ever sees the keys it declared.
import { invalidArgument } from '../common/errors.js';
import type { BandwidthLimits, DnsConfig, JsonObject, JsonValue, PodAttachment, PortMapping } from './types.js';

/** The capability args crisp can provide, keyed by the conventional capability names. */
export interface CapabilityArgs {
  portMappings?: PortMapping[];
  bandwidth?: BandwidthLimits;
  ipRanges?: { subnet: string }[][];
  dns?: DnsConfig;
}

// Burst the bandwidth plugin gets when only a rate is asked for: it refuses a rate without a burst.
const DEFAULT_BURST_BITS = 2 ** 31 - 1;

function validPort(n: number): boolean {
  return Number.isInteger(n) && n > 0 && n <= 65535;
}

function portMappings(pms: PortMapping[] | undefined): PortMapping[] | undefined {
  if (!pms) return undefined;
  const out: PortMapping[] = [];
  for (const pm of pms) {
    // hostPort 0 means "not published on the host" (kubelet sends these for plain containerPorts).
    if (pm.hostPort === 0) continue;
    if (!validPort(pm.hostPort) || !validPort(pm.containerPort)) {
      throw invalidArgument(`port mapping ${pm.hostPort}->${pm.containerPort}: ports must be 1-65535`);
    }
    const protocol = pm.protocol.toLowerCase();
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') {
      throw invalidArgument(`port mapping ${pm.hostPort}: unknown protocol ${JSON.stringify(pm.protocol)}`);
    }
    const m: PortMapping = { hostPort: pm.hostPort, containerPort: pm.containerPort, protocol };
    if (pm.hostIP) m.hostIP = pm.hostIP;
    out.push(m);
  }
  return out.length > 0 ? out : undefined;
}

function bandwidth(b: BandwidthLimits | undefined): BandwidthLimits | undefined {
  if (!b) return undefined;
  const out: BandwidthLimits = {};
  if (b.ingressRate) {
    out.ingressRate = b.ingressRate;
    out.ingressBurst = b.ingressBurst || DEFAULT_BURST_BITS;
  }
  if (b.egressRate) {
    out.egressRate = b.egressRate;
    out.egressBurst = b.egressBurst || DEFAULT_BURST_BITS;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function ipRanges(podCidr: string | undefined): { subnet: string }[][] | undefined {
  if (!podCidr) return undefined;
  const cidrs = podCidr.split(',').map((c) => c.trim()).filter((c) => c !== '');
  for (const c of cidrs) {
    if (!/^[0-9a-fA-F.:]+\/\d{1,3}$/.test(c)) throw invalidArgument(`pod CIDR ${JSON.stringify(c)} is not a CIDR`);
  }
  // One range set per CIDR: host-local hands out one address per range set (dual-stack = two sets).
  return cidrs.length > 0 ? cidrs.map((subnet) => [{ subnet }]) : undefined;
}

function dns(d: DnsConfig | undefined): DnsConfig | undefined {
  if (!d) return undefined;
  const out: DnsConfig = {};
  if (d.servers?.length) out.servers = [...d.servers];
  if (d.searches?.length) out.searches = [...d.searches];
  if (d.options?.length) out.options = [...d.options];
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Capability args for one pod; empty parts are left out so plugins see no noise. Throws INVALID_ARGUMENT. */
export function buildCapabilityArgs(att: Partial<PodAttachment>): CapabilityArgs {
  const args: CapabilityArgs = {};
  const pm = portMappings(att.portMappings);
  if (pm) args.portMappings = pm;
  const bw = bandwidth(att.bandwidth);
  if (bw) args.bandwidth = bw;
  const ranges = ipRanges(att.podCidr);
  if (ranges) args.ipRanges = ranges;
  const d = dns(att.dns);
  if (d) args.dns = d;
  return args;
}

/**
 * The `runtimeConfig` object for one plugin: only keys the plugin declared `true` in `capabilities`
 * and that we have a value for. Undefined when nothing is left (the key is then omitted).
 */
export function filterRuntimeConfig(capabilities: JsonValue | undefined, args: CapabilityArgs | JsonObject): JsonObject | undefined {
  if (typeof capabilities !== 'object' || capabilities === null || Array.isArray(capabilities)) return undefined;
  const all = args as Record<string, unknown>;
  const out: JsonObject = {};
  for (const [key, wanted] of Object.entries(capabilities)) {
    if (wanted !== true) continue;
    const v = all[key];
    if (v !== undefined) out[key] = v as JsonValue;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}
