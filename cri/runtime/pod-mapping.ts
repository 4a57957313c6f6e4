// CRI pod sandbox messages ⇄ the sandbox domain: validation that names the offending field, and the
// status/list views built from a pod record.
import { isIP } from 'node:net';
import { hostname as nodeHostname } from 'node:os';
import { realpathSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, normalize, relative } from 'node:path';
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
import { checkedResourceSpec } from './resource-checks.js';
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

/** The kernel's limit for sethostname(2) (__NEW_UTS_LEN). */
const HOSTNAME_MAX_BYTES = 64;
// Whitespace or control characters would split a line of /etc/hosts or /etc/resolv.conf into two.
const LINE_BREAKING = {
  test: (value: string): boolean => [...value].some((ch) => /\s/.test(ch) || ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f),
};

function mode(value: NamespaceMode, field: string, allowed: NamespaceMode[]): NamespaceMode {
  if (!allowed.includes(value)) {
    throw invalidArgument(`${field}: mode ${NamespaceMode[value] ?? value} is not supported for a pod (allowed: ${allowed.map((m) => NamespaceMode[m]).join(', ')})`);
  }
  return value;
}

/** The kernel's limit on extents in one uid_map or gid_map (since Linux 4.15). */
const MAX_ID_EXTENTS = 340;
const ID_SPACE = 2 ** 32;

/**
 * The mappings of a user-namespace pod, checked only against what the kernel (extent count, 32-bit
 * ranges, no overlap on either side) and runc (container id 0 mapped) accept: the ranges themselves
 * are kubelet's choice, not crisp's.
 */
function userNamespace(opts: NamespaceOption['usernsOptions'] | undefined, field: string): PodNamespaces['userns'] {
  if (!opts || opts.mode === NamespaceMode.NODE) return undefined;
  if (opts.mode !== NamespaceMode.POD) throw invalidArgument(`${field}.mode: ${NamespaceMode[opts.mode] ?? opts.mode} is not supported (POD or NODE)`);
  const check = (maps: { hostId: number; containerId: number; length: number }[], which: 'uids' | 'gids') => {
    if (maps.length === 0 || maps.length > MAX_ID_EXTENTS) {
      throw invalidArgument(`${field}.${which}: between 1 and ${MAX_ID_EXTENTS} mappings are required, got ${maps.length}`);
    }
    maps.forEach((m, i) => {
      const f = `${field}.${which}[${i}]`;
      if (m.length < 1) throw invalidArgument(`${f}.length: must be at least 1`);
      if (m.containerId + m.length > ID_SPACE) throw invalidArgument(`${f}: container_id + length exceeds the 32-bit id space`);
      if (m.hostId + m.length > ID_SPACE) throw invalidArgument(`${f}: host_id + length exceeds the 32-bit id space`);
    });
    const overlap = (side: 'containerId' | 'hostId') => {
      const sorted = [...maps].sort((a, b) => a[side] - b[side]);
      for (let i = 1; i < sorted.length; i++) {
        const prev = sorted[i - 1]!;
        if (sorted[i]![side] < prev[side] + prev.length) {
          throw invalidArgument(`${field}.${which}: the ${side === 'hostId' ? 'host_id' : 'container_id'} ranges of two mappings overlap`);
        }
      }
    };
    overlap('containerId');
    overlap('hostId');
    if (!maps.some((m) => m.containerId === 0)) throw invalidArgument(`${field}.${which}: container id 0 must be mapped (runc needs a root user)`);
    return maps.map((m) => ({ containerId: m.containerId, hostId: m.hostId, length: m.length }));
  };
  return { uids: check(opts.uids, 'uids'), gids: check(opts.gids, 'gids') };
}

/**
 * A pod log directory: any absolute path, as containerd and CRI-O accept; with an operator-set
 * `root` (config `pod_log_root`), only paths below it.
 */
export function podLogDirectory(path: string, root: string, field: string): string {
  if (!isAbsolute(path)) throw invalidArgument(`${field}: "${path}" must be an absolute path`);
  if (path.includes('\0')) throw invalidArgument(`${field}: the path contains a NUL byte`);
  const n = normalize(path);
  if (!root) return n;
  const outside = () => invalidArgument(`${field}: "${path}" is outside the pod log root ${root} (config pod_log_root)`);
  if (!isBelow(normalize(root), n)) throw outside();
  // A symlink below the root (a pod log dir is writable by whoever owns the pod's logs) must not lead
  // out of it: the part of the path that exists is checked with its links resolved.
  if (!isBelow(realpathOrSelf(root), realpathOfExisting(n))) throw outside();
  return n;
}

function isBelow(root: string, path: string): boolean {
  const rel = relative(root, path);
  return !(rel === '..' || rel.startsWith('../') || isAbsolute(rel));
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path; // a root that does not exist yet has no links to resolve
  }
}

/** `path` with its deepest existing ancestor's links resolved (the rest does not exist to be a link). */
function realpathOfExisting(path: string): string {
  let existing = path;
  const rest: string[] = [];
  for (;;) {
    try {
      return join(realpathSync(existing), ...rest);
    } catch {
      // not there (or not reachable): resolve one level up
      const parent = dirname(existing);
      if (parent === existing) return path;
      rest.unshift(basename(existing));
      existing = parent;
    }
  }
}

const PROTOCOLS: Record<number, PortProtocol> = { [Protocol.TCP]: 'tcp', [Protocol.UDP]: 'udp', [Protocol.SCTP]: 'sctp' };

/** A request's overhead and resources (each may be absent) as the pod's domain values. */
export function toPodResources(overhead: LinuxContainerResources | null | undefined, resources: LinuxContainerResources | null | undefined, field: string): PodResources {
  const prefix = field ? `${field}.` : '';
  return {
    ...(overhead ? { overhead: checkedResourceSpec(overhead, `${prefix}overhead`) } : {}),
    ...(resources ? { resources: checkedResourceSpec(resources, `${prefix}resources`) } : {}),
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

  // Empty means the node's hostname, as for containerd and CRI-O; an explicit one is checked only
  // against what the kernel and the pod's /etc files can hold.
  const hostname = config.hostname || nodeHostname();
  if (Buffer.byteLength(hostname) > HOSTNAME_MAX_BYTES) {
    throw invalidArgument(`config.hostname: "${hostname}" is ${Buffer.byteLength(hostname)} bytes; the kernel allows at most ${HOSTNAME_MAX_BYTES}`);
  }
  if (LINE_BREAKING.test(hostname)) throw invalidArgument(`config.hostname: ${JSON.stringify(hostname)} contains whitespace or control characters`);

  let logDirectory = '';
  if (config.logDirectory) logDirectory = podLogDirectory(config.logDirectory, ctx.podLogRoot, 'config.log_directory');

  let dns: PodSpec['dns'];
  if (config.dnsConfig) {
    const d = config.dnsConfig;
    d.servers.forEach((s, i) => {
      if (!isIP(s)) throw invalidArgument(`config.dns_config.servers[${i}]: "${s}" is not an IP address`);
    });
    d.searches.forEach((s, i) => {
      if (!s || LINE_BREAKING.test(s)) throw invalidArgument(`config.dns_config.searches[${i}]: ${JSON.stringify(s)} is empty or contains whitespace or control characters`);
    });
    d.options.forEach((o, i) => {
      if (!o || LINE_BREAKING.test(o)) throw invalidArgument(`config.dns_config.options[${i}]: ${JSON.stringify(o)} is empty or contains whitespace or control characters`);
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
