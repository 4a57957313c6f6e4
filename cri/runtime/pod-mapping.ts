// CRI pod sandbox messages ⇄ the sandbox domain: validation that names the offending field, and the
// status/list views built from a pod record.
import { isIP } from 'node:net';
import { isAbsolute, normalize, relative } from 'node:path';
import {
  NamespaceMode,
  PodSandboxState,
  Protocol,
  type NamespaceOption,
  type PodSandbox,
  type PodSandboxConfig,
  type PodSandboxFilter,
  type PodSandboxStatus,
  type LinuxContainerResources,
} from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import { invalidArgument } from '../../common/errors.js';
import type { PodRecord, PodSpec, PodNamespaces, PodResources } from '../../sandbox/pods/types.js';
import type { ResourceSpec } from '../../sandbox/containers/types.js';
import { toResourceSpec } from './container-mapping.js';
import { validateSysctls } from '../../sandbox/pods/sysctls.js';
import { checkCgroupfsPath, checkSystemdSlice, type CgroupDriver } from '../../sandbox/cgroups.js';
import { DEFAULT_SHM_SIZE } from '../../sandbox/pods/shm.js';
import type { PortProtocol } from '../../cni/index.js';

export interface PodMappingContext {
  handlers: string[];
  defaultHandler: string;
  cgroupDriver: CgroupDriver;
  podLogRoot: string;
}

const HOSTNAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/i;
const DNS_OPTION_RE = /^[a-z][a-z0-9-]*(:\d{1,4})?$/i;

function mode(value: NamespaceMode, field: string, allowed: NamespaceMode[]): NamespaceMode {
  if (!allowed.includes(value)) {
    throw invalidArgument(`${field}: mode ${NamespaceMode[value] ?? value} is not supported for a pod (allowed: ${allowed.map((m) => NamespaceMode[m]).join(', ')})`);
  }
  return value;
}

/** Kubernetes user-namespace rules: one mapping each, container id 0, ≥ 65536 ids, host ids above 65535. */
function userNamespace(opts: NamespaceOption['usernsOptions'] | undefined, field: string): PodNamespaces['userns'] {
  if (!opts || opts.mode === NamespaceMode.NODE) return undefined;
  if (opts.mode !== NamespaceMode.POD) throw invalidArgument(`${field}.mode: ${NamespaceMode[opts.mode] ?? opts.mode} is not supported (POD or NODE)`);
  const check = (maps: { hostId: number; containerId: number; length: number }[], which: 'uids' | 'gids') => {
    if (maps.length !== 1) throw invalidArgument(`${field}.${which}: exactly one mapping is required, got ${maps.length}`);
    const m = maps[0]!;
    if (m.containerId !== 0) throw invalidArgument(`${field}.${which}[0].container_id: must be 0`);
    if (m.length < 65536) throw invalidArgument(`${field}.${which}[0].length: must be at least 65536, got ${m.length}`);
    if (m.hostId < 65536) throw invalidArgument(`${field}.${which}[0].host_id: ${m.hostId} overlaps the host's own ids 0-65535`);
    if (m.hostId + m.length > 2 ** 32 - 1) throw invalidArgument(`${field}.${which}[0]: host_id + length exceeds the id space`);
    return [{ containerId: m.containerId, hostId: m.hostId, length: m.length }];
  };
  return { uids: check(opts.uids, 'uids'), gids: check(opts.gids, 'gids') };
}

/** A path under `root` (no traversal out of it). */
export function underRoot(path: string, root: string, field: string): string {
  if (!isAbsolute(path)) throw invalidArgument(`${field}: "${path}" must be an absolute path`);
  const n = normalize(path);
  const rel = relative(normalize(root), n);
  if (rel.startsWith('..') || isAbsolute(rel)) throw invalidArgument(`${field}: "${path}" is outside the pod log root ${root}`);
  return n;
}

const PROTOCOLS: Record<number, PortProtocol> = { [Protocol.TCP]: 'tcp', [Protocol.UDP]: 'udp', [Protocol.SCTP]: 'sctp' };

const CPUSET_RE = /^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$/;

/**
 * Pod-level resources (overhead, or the sum of the containers'): kubelet's numbers checked for sign
 * and range, zero meaning not set. -1 is allowed where the kernel reads it as "unlimited".
 */
function podResourceSpec(r: LinuxContainerResources, field: string): ResourceSpec {
  const atLeast = (value: number, min: number, name: string) => {
    if (value < min) throw invalidArgument(`${field}.${name}: ${value} is below ${min}`);
  };
  atLeast(r.cpuPeriod, 0, 'cpu_period');
  atLeast(r.cpuQuota, -1, 'cpu_quota');
  atLeast(r.cpuShares, 0, 'cpu_shares');
  atLeast(r.memoryLimitInBytes, 0, 'memory_limit_in_bytes');
  atLeast(r.memorySwapLimitInBytes, -1, 'memory_swap_limit_in_bytes');
  if (r.oomScoreAdj < -1000 || r.oomScoreAdj > 1000) throw invalidArgument(`${field}.oom_score_adj: ${r.oomScoreAdj} is outside -1000..1000`);
  for (const [name, v] of [['cpuset_cpus', r.cpusetCpus], ['cpuset_mems', r.cpusetMems]] as const) {
    if (v !== '' && !CPUSET_RE.test(v)) throw invalidArgument(`${field}.${name}: "${v}" is not a cpu/node list like 0-3,6`);
  }
  r.hugepageLimits.forEach((h, i) => {
    if (!h.pageSize) throw invalidArgument(`${field}.hugepage_limits[${i}].page_size is required`);
  });
  for (const k of Object.keys(r.unified)) if (!k) throw invalidArgument(`${field}.unified: an empty key is not a cgroup file`);
  return toResourceSpec(r);
}

/** A request's overhead and resources (each may be absent) as the pod's domain values. */
export function toPodResources(overhead: LinuxContainerResources | null | undefined, resources: LinuxContainerResources | null | undefined, field: string): PodResources {
  const prefix = field ? `${field}.` : '';
  return {
    ...(overhead ? { overhead: podResourceSpec(overhead, `${prefix}overhead`) } : {}),
    ...(resources ? { resources: podResourceSpec(resources, `${prefix}resources`) } : {}),
  };
}

export function toPodSpec(config: PodSandboxConfig | null, runtimeHandler: string, ctx: PodMappingContext): PodSpec {
  if (!config) throw invalidArgument('config is required');
  const md = config.metadata;
  if (!md) throw invalidArgument('config.metadata is required');
  for (const k of ['name', 'uid', 'namespace'] as const) {
    if (!md[k]) throw invalidArgument(`config.metadata.${k} is required`);
  }
  const handler = runtimeHandler || ctx.defaultHandler;
  if (!ctx.handlers.includes(handler)) {
    throw invalidArgument(`runtime_handler: "${runtimeHandler}" is not configured (configured: ${ctx.handlers.join(', ')})`);
  }

  const nsOpts = config.linux?.securityContext?.namespaceOptions;
  const field = 'config.linux.security_context.namespace_options';
  const namespaces: PodNamespaces = {
    network: mode(nsOpts?.network ?? NamespaceMode.POD, `${field}.network`, [NamespaceMode.POD, NamespaceMode.NODE]) === NamespaceMode.NODE ? 'node' : 'pod',
    ipc: mode(nsOpts?.ipc ?? NamespaceMode.POD, `${field}.ipc`, [NamespaceMode.POD, NamespaceMode.NODE]) === NamespaceMode.NODE ? 'node' : 'pod',
    pid: ({ [NamespaceMode.POD]: 'pod', [NamespaceMode.CONTAINER]: 'container', [NamespaceMode.NODE]: 'node' } as const)[
      mode(nsOpts?.pid ?? NamespaceMode.CONTAINER, `${field}.pid`, [NamespaceMode.POD, NamespaceMode.CONTAINER, NamespaceMode.NODE]) as 0 | 1 | 2
    ],
  };
  const userns = userNamespace(nsOpts?.usernsOptions, `${field}.userns_options`);
  if (userns) {
    if (namespaces.network === 'node') throw invalidArgument(`${field}.userns_options: a user namespace cannot be combined with host networking`);
    namespaces.userns = userns;
  }

  const hostname = config.hostname || md.name;
  if (hostname.length > 63 || !HOSTNAME_RE.test(hostname)) throw invalidArgument(`config.hostname: "${hostname}" is not a valid hostname`);

  let logDirectory = '';
  if (config.logDirectory) logDirectory = underRoot(config.logDirectory, ctx.podLogRoot, 'config.log_directory');

  let dns: PodSpec['dns'];
  if (config.dnsConfig) {
    const d = config.dnsConfig;
    d.servers.forEach((s, i) => {
      if (!isIP(s)) throw invalidArgument(`config.dns_config.servers[${i}]: "${s}" is not an IP address`);
    });
    d.searches.forEach((s, i) => {
      if (s.length > 253 || !HOSTNAME_RE.test(s.replace(/\.$/, ''))) throw invalidArgument(`config.dns_config.searches[${i}]: "${s}" is not a domain name`);
    });
    d.options.forEach((o, i) => {
      if (!DNS_OPTION_RE.test(o)) throw invalidArgument(`config.dns_config.options[${i}]: "${o}" is not a resolv.conf option`);
    });
    dns = { servers: d.servers, searches: d.searches, options: d.options };
  }

  const portMappings = config.portMappings
    .filter((p) => p.hostPort > 0)
    .map((p, i) => {
      const f = `config.port_mappings[${i}]`;
      if (p.hostPort > 65535) throw invalidArgument(`${f}.host_port: ${p.hostPort} is out of range`);
      if (p.containerPort < 1 || p.containerPort > 65535) throw invalidArgument(`${f}.container_port: ${p.containerPort} is out of range`);
      if (p.hostIp && !isIP(p.hostIp)) throw invalidArgument(`${f}.host_ip: "${p.hostIp}" is not an IP address`);
      const protocol = PROTOCOLS[p.protocol];
      if (!protocol) throw invalidArgument(`${f}.protocol: unknown protocol ${p.protocol}`);
      return { hostPort: p.hostPort, containerPort: p.containerPort, protocol, ...(p.hostIp ? { hostIP: p.hostIp } : {}) };
    });

  let cgroupParent = config.linux?.cgroupParent ?? '';
  if (cgroupParent) {
    cgroupParent =
      ctx.cgroupDriver === 'systemd'
        ? checkSystemdSlice(cgroupParent, 'config.linux.cgroup_parent')
        : checkCgroupfsPath(cgroupParent, 'config.linux.cgroup_parent');
  }

  return {
    metadata: { name: md.name, uid: md.uid, namespace: md.namespace, attempt: md.attempt },
    hostname,
    logDirectory,
    ...(dns ? { dns } : {}),
    portMappings,
    labels: config.labels,
    annotations: config.annotations,
    cgroupParent,
    sysctls: validateSysctls(config.linux?.sysctls ?? {}, namespaces, 'config.linux.sysctls'),
    namespaces,
    runtimeHandler: handler,
    privileged: config.linux?.securityContext?.privileged ?? false,
    shmSize: DEFAULT_SHM_SIZE,
    ...toPodResources(config.linux?.overhead, config.linux?.resources, 'config.linux'),
  };
}

function criNamespaceOptions(ns: PodNamespaces): Input<NamespaceOption> {
  return {
    network: ns.network === 'node' ? NamespaceMode.NODE : NamespaceMode.POD,
    ipc: ns.ipc === 'node' ? NamespaceMode.NODE : NamespaceMode.POD,
    pid: ns.pid === 'node' ? NamespaceMode.NODE : ns.pid === 'pod' ? NamespaceMode.POD : NamespaceMode.CONTAINER,
    usernsOptions: ns.userns
      ? {
          mode: NamespaceMode.POD,
          uids: ns.userns.uids.map((m) => ({ hostId: m.hostId, containerId: m.containerId, length: m.length })),
          gids: ns.userns.gids.map((m) => ({ hostId: m.hostId, containerId: m.containerId, length: m.length })),
        }
      : { mode: NamespaceMode.NODE },
  };
}

const criState = (p: PodRecord) => (p.state === 'ready' ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY);

export function toCriPodStatus(p: PodRecord): Input<PodSandboxStatus> {
  const [first, ...rest] = p.ips;
  return {
    id: p.id,
    metadata: p.spec.metadata,
    state: criState(p),
    createdAt: p.createdAt,
    network: { ip: first?.ip ?? '', additionalIps: rest.map((i) => ({ ip: i.ip })) },
    linux: { namespaces: { options: criNamespaceOptions(p.spec.namespaces) } },
    labels: p.spec.labels,
    annotations: p.spec.annotations,
    runtimeHandler: p.spec.runtimeHandler,
  };
}

export function toCriPodSandbox(p: PodRecord): Input<PodSandbox> {
  return {
    id: p.id,
    metadata: p.spec.metadata,
    state: criState(p),
    createdAt: p.createdAt,
    labels: p.spec.labels,
    annotations: p.spec.annotations,
    runtimeHandler: p.spec.runtimeHandler,
  };
}

export function matchesPodFilter(p: PodRecord, f: PodSandboxFilter | null | undefined): boolean {
  if (!f) return true;
  if (f.id && !p.id.startsWith(f.id)) return false;
  if (f.state && criState(p) !== f.state.state) return false;
  for (const [k, v] of Object.entries(f.labelSelector)) if (p.spec.labels[k] !== v) return false;
  return true;
}
