// The OCI runtime spec of a container: image config + CRI request + the pod it joins, with
// Kubernetes/containerd semantics. Pure: everything that needs the filesystem (devices, the image's
// /etc/passwd, a Localhost seccomp file, host features) is resolved by the caller and passed in.
import { posix } from 'node:path';
import { invalidArgument, failedPrecondition, withContext } from '../../common/errors.js';
import type { ImageConfig, ImageConfigDetails } from '../../backend/registry/oci.js';
import type { IdMapping } from '../../native/nshelper.js';
import type { PodRecord } from '../pods/types.js';
import { ALL_CAPABILITIES, computeCapabilities } from './capabilities.js';
import { runtimeDefaultSeccomp } from './seccomp-default.js';
import {
  OCI_VERSION,
  type LinuxCapabilities,
  type LinuxDevice,
  type LinuxDeviceCgroup,
  type LinuxIdMapping,
  type LinuxNamespace,
  type LinuxResources,
  type LinuxSeccomp,
  type OciLinux,
  type OciMount,
  type OciProcess,
  type OciSpec,
} from './oci-types.js';
import type { ContainerSecurity, ContainerSpec, MountSpec, ResolvedUser, ResourceSpec } from './types.js';

/** What the host can do, probed once by the daemon. */
export interface OciHostFeatures {
  /** AppArmor enabled: profiles may be named (an unknown or disabled one makes the start fail). */
  apparmor: boolean;
  /** crisp's default profile is loaded (RuntimeDefault names it only then). */
  apparmorDefaultLoaded?: boolean;
  /** SELinux enforcing/permissive. ContainerSpec carries no SELinux labels, so nothing is emitted yet. */
  selinux: boolean;
  /** crispd's own /proc/self/oom_score_adj: lowering below it needs CAP_SYS_RESOURCE. */
  daemonOomScoreAdj: number;
  /** cgroup v2 unified hierarchy (not the hybrid layout, where runc works in v1 mode). */
  cgroupV2: boolean;
  /** The runtime understands the "rro" mount option (runc ≥ 1.2; runc 1.1.5 does not). */
  rroSupported?: boolean;
  /** The runtime takes uid/gid mappings on mounts (spec 1.1.0, runc ≥ 1.2). */
  idmappedMounts?: boolean;
  /**
   * Swap accounting (memsw on v1, memory.swap.max on v2). true: with a memory limit and no swap limit,
   * swap is pinned to the limit (no swap use), as containerd does. false: swap is never set (runc fails
   * on a missing memsw file). undefined: only an explicit swap limit is passed on.
   */
  swapAccounting?: boolean;
  /**
   * The hugetlb cgroup controller is there for runc (v1 and hybrid: a mounted hugetlb hierarchy; v2: listed
   * in the root's cgroup.controllers). false: hugepage limits are left out of the spec, as containerd and
   * CRI-O do — kubelet sends one per page size the machine has (limit 0 where the pod asked for none), and
   * runc fails every container start when it cannot write them. undefined: passed on.
   */
  hugetlb?: boolean;
  /** The daemon's effective capabilities: what privileged/ALL means here. Default: all Linux knows. */
  capabilities?: readonly string[];
  /** node's process.arch, for the seccomp architectures. Default: this host. */
  arch?: string;
  /**
   * The daemon's own hard RLIMIT_NOFILE (/proc/self/limits). Without CAP_SYS_RESOURCE runc cannot raise
   * a hard limit above it and the start fails, so the container's limit is clamped to it.
   */
  maxNofile?: number;
}

/** A device resolved by the caller (host node stat'ed), as it appears in the container. */
export interface DeviceInput {
  /** Path inside the container. */
  path: string;
  /** c, b, u or p */
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
  /** Subset of "rwm"; "" = rwm. */
  permissions: string;
}

export interface OciSpecInput {
  /**
   * The runc v2 shim group (`io.containerd.runc.v2.group`) every container shares; undefined: the shim
   * groups by the pod id (`io.kubernetes.cri.sandbox-id`), one shim per pod.
   */
  shimGroup?: string;
  id: string;
  spec: ContainerSpec;
  pod: PodRecord;
  image: ImageConfig;
  /** The image's name for annotations (a tag or digest reference); default spec.image. */
  imageName?: string;
  user: ResolvedUser;
  /** Root path as runc sees it; containerd hands the rootfs over as mounts on "rootfs". */
  rootfsPath?: string;
  cgroupsPath: string;
  host: OciHostFeatures;
  /** The Localhost seccomp profile, loaded by the caller (required when seccomp is localhost). */
  seccompProfile?: LinuxSeccomp;
  /** For pidMode "target": /proc/<pid>/ns/pid of the target container's init. */
  targetPidNsPath?: string;
  /** CRI devices (or, privileged, every host device), resolved by the caller. */
  devices?: DeviceInput[];
  /** Bind the pod's /etc/hostname, /etc/hosts, /etc/resolv.conf (default true). */
  etcFiles?: boolean;
  /**
   * Bind sources to replace: original host path → the path to bind instead (user-namespace pods bind
   * idmapped mounts of their pod files and volumes). Applies to every bind mount whose source matches.
   */
  mountSourceOverrides?: Readonly<Record<string, string>>;
}

/** AppArmor profile applied for RuntimeDefault; the daemon must load it where AppArmor is enabled. */
export const APPARMOR_DEFAULT_PROFILE = 'crisp-default';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** containerd's default RLIMIT_NOFILE: high enough for servers, low enough to bound kernel memory. */
export const DEFAULT_NOFILE = 1048576;

/** Kernel files that leak host information or reach host state; hidden unless privileged. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/acpi',
  '/proc/asound',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS: readonly string[] = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

/** Annotation keys containerd sets, so NRI plugins and tools recognise crisp's containers. */
export const CriAnnotation = {
  containerType: 'io.kubernetes.cri.container-type',
  containerName: 'io.kubernetes.cri.container-name',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

/** The device nodes every container may use (what runc allows by default). */
const DEFAULT_DEVICE_RULES: readonly LinuxDeviceCgroup[] = [
  { allow: true, type: 'c', access: 'm' }, // mknod any char device (opening it is still denied)
  { allow: true, type: 'b', access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // pts/*, also behind /dev/console
];

// ---- process ------------------------------------------------------------------------------------

/**
 * Kubernetes command semantics: command replaces the image's Entrypoint, args replace its Cmd, and a
 * command without args drops the image's Cmd too.
 */
export function processArgs(spec: Pick<ContainerSpec, 'command' | 'args'>, image: ImageConfigDetails | undefined): string[] {
  const entrypoint = image?.Entrypoint ?? [];
  const cmd = image?.Cmd ?? [];
  let args: string[];
  if (spec.command.length > 0) args = [...spec.command, ...spec.args];
  else if (spec.args.length > 0) args = [...entrypoint, ...spec.args];
  else args = [...entrypoint, ...cmd];
  if (args.length === 0) throw invalidArgument('no command specified: the request has no command or args and the image no Entrypoint or Cmd');
  return args;
}

const envKey = (e: string): string => {
  const i = e.indexOf('=');
  return i < 0 ? e : e.slice(0, i);
};

/** Image Env, then the CRI envs (replacing the image's value in place), then defaults for what is missing. */
export function processEnv(
  image: ImageConfigDetails | undefined,
  envs: { key: string; value: string }[],
  defaults: { hostname?: string; home?: string; tty?: boolean },
): string[] {
  const out: string[] = [];
  const index = new Map<string, number>();
  const put = (entry: string) => {
    const k = envKey(entry);
    const at = index.get(k);
    if (at === undefined) {
      index.set(k, out.length);
      out.push(entry);
    } else out[at] = entry;
  };
  for (const e of image?.Env ?? []) put(e);
  for (const e of envs) put(`${e.key}=${e.value}`);
  const fill = (k: string, v: string | undefined) => {
    if (v !== undefined && v !== '' && !index.has(k)) put(`${k}=${v}`);
  };
  fill('PATH', DEFAULT_PATH);
  fill('HOSTNAME', defaults.hostname);
  fill('HOME', defaults.home);
  if (defaults.tty) fill('TERM', 'xterm');
  return out;
}

function workingDir(spec: ContainerSpec, image: ImageConfigDetails | undefined): string {
  if (spec.workingDir !== '') {
    if (!posix.isAbsolute(spec.workingDir)) throw invalidArgument(`working_dir "${spec.workingDir}" is not an absolute path`);
    return spec.workingDir;
  }
  const wd = image?.WorkingDir ?? '';
  return wd === '' ? '/' : posix.join('/', wd);
}

function apparmorProfile(sec: ContainerSecurity, host: OciHostFeatures): string | undefined {
  const p = sec.apparmor;
  if (p?.kind === 'localhost') {
    const name = p.localhostRef.replace(/^localhost\//, '');
    if (!host.apparmor) throw invalidArgument(`AppArmor profile "${name}" was requested, but AppArmor is not available on this host`);
    if (name === '') throw invalidArgument('a Localhost AppArmor profile needs a profile name');
    return name;
  }
  // Without AppArmor nothing can be named (runc would fail the start), and nothing needs to be.
  if (!host.apparmor) return undefined;
  if (p?.kind === 'unconfined') return 'unconfined';
  // Unset means RuntimeDefault, as in containerd (kubernetes#51746); privileged runs unconfined. A
  // profile that could not be loaded is never named (the start would fail).
  return sec.privileged || host.apparmorDefaultLoaded === false ? undefined : APPARMOR_DEFAULT_PROFILE;
}

function seccompFor(sec: ContainerSecurity, caps: LinuxCapabilities, input: OciSpecInput): LinuxSeccomp | undefined {
  if (sec.privileged) return undefined;
  const p = sec.seccomp;
  if (!p || p.kind === 'unconfined') return undefined;
  if (p.kind === 'runtime-default') {
    const opts: { capabilities: string[]; arch?: string } = { capabilities: caps.bounding ?? [] };
    if (input.host.arch !== undefined) opts.arch = input.host.arch;
    return runtimeDefaultSeccomp(opts);
  }
  if (!input.seccompProfile) throw invalidArgument(`Localhost seccomp profile "${p.localhostRef}" was not loaded`);
  return input.seccompProfile;
}

// ---- namespaces ---------------------------------------------------------------------------------

const toOciMappings = (m: IdMapping[]): LinuxIdMapping[] => m.map((x) => ({ containerID: x.containerId, hostID: x.hostId, size: x.length }));

interface NamespacePlan {
  namespaces: LinuxNamespace[];
  uidMappings?: LinuxIdMapping[];
  gidMappings?: LinuxIdMapping[];
}

/**
 * The pod's pinned net/ipc/uts (and user) namespaces are joined by path; a missing pin means the pod
 * uses the host's, so the namespace is left out. Mount is always new; cgroup too on v2 (on v1 runc would
 * still expose the host hierarchy, so a cgroup namespace buys nothing there).
 */
function namespacePlan(input: OciSpecInput): NamespacePlan {
  const { pod, spec, host } = input;
  const ns: LinuxNamespace[] = [];
  const plan: NamespacePlan = { namespaces: ns };
  if (pod.pins.user) {
    const userns = pod.spec.namespaces.userns;
    if (!userns) throw failedPrecondition(`pod ${pod.id} has a pinned user namespace but no uid/gid mappings`);
    ns.push({ type: 'user', path: pod.pins.user });
    // runc wants the mappings even when it only joins the namespace.
    plan.uidMappings = toOciMappings(userns.uids);
    plan.gidMappings = toOciMappings(userns.gids);
  }
  if (pod.pins.net) ns.push({ type: 'network', path: pod.pins.net });
  if (pod.pins.ipc) ns.push({ type: 'ipc', path: pod.pins.ipc });
  if (pod.pins.uts) ns.push({ type: 'uts', path: pod.pins.uts });
  switch (spec.security.pidMode) {
    case 'container':
      ns.push({ type: 'pid' });
      break;
    case 'pod':
      if (!pod.pins.pid) throw failedPrecondition(`pod ${pod.id} has no shared pid namespace (shareProcessNamespace) to join`);
      ns.push({ type: 'pid', path: pod.pins.pid });
      break;
    case 'target':
      if (!input.targetPidNsPath) throw invalidArgument(`pid namespace target "${spec.security.targetId}" was not resolved`);
      ns.push({ type: 'pid', path: input.targetPidNsPath });
      break;
    case 'node':
      break;
  }
  ns.push({ type: 'mount' });
  if (host.cgroupV2) ns.push({ type: 'cgroup' });
  return plan;
}

/** The annotation the runc v2 shim groups by before the pod id. */
const SHIM_GROUP_OVERRIDE = 'io.containerd.runc.v2.group';

// ---- mounts -------------------------------------------------------------------------------------

const cleanDest = (p: string): string => {
  const n = posix.normalize(p);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
};
const depth = (p: string): number => p.split('/').filter((x) => x !== '').length;

function defaultMounts(privileged: boolean): OciMount[] {
  const sysMode = privileged ? 'rw' : 'ro';
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', sysMode] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', sysMode] },
  ];
}

const PROPAGATION_OPTION: Record<MountSpec['propagation'], string> = { private: 'rprivate', rslave: 'rslave', rshared: 'rshared' };

function criMount(m: MountSpec, i: number, host: OciHostFeatures): OciMount {
  const field = `mounts[${i}] (${m.containerPath})`;
  if (!posix.isAbsolute(m.containerPath)) throw invalidArgument(`${field}: container_path must be absolute`);
  if (m.hostPath === '') throw invalidArgument(`${field}: host_path is empty`);
  const options = ['rbind', PROPAGATION_OPTION[m.propagation], m.readonly ? 'ro' : 'rw'];
  if (m.recursiveReadOnly) {
    if (!m.readonly) throw invalidArgument(`${field}: recursive_read_only needs readonly`);
    if (m.propagation !== 'private') throw invalidArgument(`${field}: recursive_read_only needs private propagation`);
    if (!host.rroSupported) throw invalidArgument(`${field}: recursive read-only mounts are not supported by this runtime (runc ≥ 1.2 needed)`);
    options.push('rro');
  }
  const mount: OciMount = { destination: cleanDest(m.containerPath), type: 'bind', source: m.hostPath, options };
  if (m.uidMappings.length > 0 || m.gidMappings.length > 0) {
    if (!host.idmappedMounts) throw invalidArgument(`${field}: idmapped mounts in the spec are not supported by this runtime (runc ≥ 1.2 needed)`);
    mount.uidMappings = toOciMappings(m.uidMappings);
    mount.gidMappings = toOciMappings(m.gidMappings);
  }
  return mount;
}

const bind = (destination: string, source: string, readonly: boolean): OciMount => ({
  destination,
  type: 'bind',
  source,
  options: ['rbind', 'rprivate', readonly ? 'ro' : 'rw'],
});

/**
 * Defaults, the pod's /dev/shm and /etc files, then the CRI mounts; a CRI mount replaces anything at
 * its destination (and a CRI /dev replaces everything under /dev). Sorted by depth, stable, so a
 * parent is mounted before what lands inside it.
 */
function buildMounts(input: OciSpecInput): OciMount[] {
  const { spec, pod, host } = input;
  const sec = spec.security;
  const cri = spec.mounts.map((m, i) => criMount(m, i, host));
  const taken = new Set(cri.map((m) => m.destination));
  const covered = (dest: string) => taken.has(dest) || (dest.startsWith('/dev/') && taken.has('/dev'));

  const out = defaultMounts(sec.privileged).filter((m) => !covered(m.destination));
  if (!covered('/dev/shm')) {
    if (pod.shmPath) out.push(bind('/dev/shm', pod.shmPath, false));
    // hostIPC shares the host's POSIX shared memory as well, as with docker --ipc=host and containerd.
    else if (pod.spec.namespaces.ipc === 'node') out.push(bind('/dev/shm', '/dev/shm', false));
    else out.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  }
  if (input.etcFiles !== false) {
    // Writable unless the root is read-only, as containerd does: some images rewrite /etc/hosts at start.
    const files: [string, string][] = [
      ['/etc/hostname', pod.files.hostname],
      ['/etc/hosts', pod.files.hosts],
      ['/etc/resolv.conf', pod.files.resolvConf],
    ];
    for (const [dest, src] of files) if (src && !covered(dest)) out.push(bind(dest, src, sec.readonlyRootfs));
  }
  out.push(...cri);
  const overrides = input.mountSourceOverrides ?? {};
  const withSources = out.map((m) => (m.type === 'bind' && m.source !== undefined && Object.hasOwn(overrides, m.source) ? { ...m, source: overrides[m.source]! } : m));
  return withSources.map((m, i) => ({ m, i, d: depth(m.destination) })).sort((a, b) => a.d - b.d || a.i - b.i).map((x) => x.m);
}

/** Bidirectional mounts need a shared rootfs to propagate back; host-to-container ones a slave one. */
function rootfsPropagation(mounts: OciMount[]): string | undefined {
  const opts = mounts.flatMap((m) => m.options ?? []);
  if (opts.includes('rshared')) return 'rshared';
  if (opts.includes('rslave')) return 'rslave';
  return undefined; // runc's default, rprivate
}

// ---- resources ----------------------------------------------------------------------------------

/**
 * CRI resources → OCI linux.resources (no devices). Zero means "not set", as in the CRI. Also used by
 * UpdateContainerResources.
 */
export function linuxResources(res: ResourceSpec, host: Pick<OciHostFeatures, 'cgroupV2' | 'swapAccounting' | 'hugetlb'>): LinuxResources {
  const out: LinuxResources = {};
  const cpu: NonNullable<LinuxResources['cpu']> = {};
  if (res.cpuShares > 0) cpu.shares = res.cpuShares;
  if (res.cpuQuota !== 0) cpu.quota = res.cpuQuota;
  if (res.cpuPeriod > 0) cpu.period = res.cpuPeriod;
  if (res.cpusetCpus !== '') cpu.cpus = res.cpusetCpus;
  if (res.cpusetMems !== '') cpu.mems = res.cpusetMems;
  if (Object.keys(cpu).length > 0) out.cpu = cpu;

  const memory: NonNullable<LinuxResources['memory']> = {};
  const limit = res.memoryLimitInBytes;
  const swap = res.memorySwapLimitInBytes;
  if (limit > 0) memory.limit = limit;
  if (host.swapAccounting !== false) {
    // OCI swap, like CRI's memory_swap_limit_in_bytes, is memory plus swap.
    if (swap > 0) {
      if (limit > 0 && swap < limit) throw invalidArgument(`memory_swap_limit_in_bytes (${swap}) is below memory_limit_in_bytes (${limit}); it counts memory plus swap`);
      memory.swap = swap;
    } else if (limit > 0 && host.swapAccounting === true) memory.swap = limit;
  }
  if (Object.keys(memory).length > 0) out.memory = memory;

  if (res.hugepageLimits.length > 0 && host.hugetlb !== false) out.hugepageLimits = res.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
  if (Object.keys(res.unified).length > 0) {
    if (!host.cgroupV2) throw invalidArgument(`unified cgroup settings (${Object.keys(res.unified).join(', ')}) need cgroup v2; this host runs cgroup v1`);
    out.unified = { ...res.unified };
  }
  return out;
}

/**
 * A container's resources after UpdateContainerResources: what the update sets (non-zero, non-empty, as in
 * linuxResources) replaces the current value, the rest stays, as it stays in the cgroup (an unset field
 * is not written there). containerd's CRI keeps its spec, and so its status, the same way.
 */
export function mergeResourceUpdate(current: ResourceSpec, update: ResourceSpec): ResourceSpec {
  return {
    cpuPeriod: update.cpuPeriod > 0 ? update.cpuPeriod : current.cpuPeriod,
    cpuQuota: update.cpuQuota !== 0 ? update.cpuQuota : current.cpuQuota,
    cpuShares: update.cpuShares > 0 ? update.cpuShares : current.cpuShares,
    memoryLimitInBytes: update.memoryLimitInBytes > 0 ? update.memoryLimitInBytes : current.memoryLimitInBytes,
    memorySwapLimitInBytes: update.memorySwapLimitInBytes > 0 ? update.memorySwapLimitInBytes : current.memorySwapLimitInBytes,
    // The process's OOM score is set once, at start: an update does not reach it.
    oomScoreAdj: current.oomScoreAdj,
    cpusetCpus: update.cpusetCpus || current.cpusetCpus,
    cpusetMems: update.cpusetMems || current.cpusetMems,
    hugepageLimits: byPageSize(current.hugepageLimits, update.hugepageLimits),
    unified: { ...current.unified, ...update.unified },
  };
}

/** Hugepage limits with `update`'s replacing `current`'s of the same page size. */
function byPageSize<T extends { pageSize?: unknown }>(current: T[], update: T[]): T[] {
  const pages = new Map(current.map((h) => [h.pageSize, h]));
  for (const h of update) pages.set(h.pageSize, h);
  return [...pages.values()];
}

/**
 * OCI linux.resources after an update (the request's or an NRI plugin's): each controller's settings
 * merged key by key, hugepage limits by page size; the update's value wins where both have one.
 */
export function mergeLinuxResources(current: Record<string, unknown>, update: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...current };
  for (const [key, value] of Object.entries(update)) {
    const old = current[key];
    if (key === 'hugepageLimits' && Array.isArray(old) && Array.isArray(value)) out[key] = byPageSize(old as { pageSize?: unknown }[], value as { pageSize?: unknown }[]);
    else if (isPlainObject(old) && isPlainObject(value)) out[key] = { ...old, ...value };
    else out[key] = value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** NRI plugins may set hugepage limits too: they are left out like the request's own (see OciHostFeatures.hugetlb). */
export function dropUnsupportedHugepages(resources: Record<string, unknown> | undefined, host: Pick<OciHostFeatures, 'hugetlb'>): void {
  if (resources && host.hugetlb === false) delete resources.hugepageLimits;
}

function deviceRules(devices: DeviceInput[], privileged: boolean): LinuxDeviceCgroup[] {
  if (privileged) return [{ allow: true, access: 'rwm' }];
  return [
    { allow: false, access: 'rwm' },
    ...DEFAULT_DEVICE_RULES.map((r) => ({ ...r })),
    ...devices.map((d) => ({ allow: true, type: d.type, major: d.major, minor: d.minor, access: d.permissions || 'rwm' })),
  ];
}

// ---- the spec -----------------------------------------------------------------------------------

/** The container's OCI spec. Errors are typed (INVALID_ARGUMENT, FAILED_PRECONDITION) and name the container. */
export function buildOciSpec(input: OciSpecInput): OciSpec {
  try {
    return build(input);
  } catch (err) {
    throw withContext(`container ${input.spec.metadata.name} (${input.id.slice(0, 12)}): building the OCI spec`, err);
  }
}

function build(input: OciSpecInput): OciSpec {
  const { spec, pod, host, user } = input;
  const sec = spec.security;
  const image = input.image.config;

  const caps = computeCapabilities(sec, host.capabilities ?? ALL_CAPABILITIES);
  // The primary gid goes into the supplementary list as well (containerd's fix for CVE-2023-25173):
  // otherwise a process could setgroups() it away and slip past "group denied" permission bits.
  const additionalGids = [...new Set([user.gid, ...user.additionalGids])];
  const nofile = host.maxNofile !== undefined && host.maxNofile > 0 ? Math.min(DEFAULT_NOFILE, host.maxNofile) : DEFAULT_NOFILE;
  const proc: OciProcess = {
    terminal: spec.tty,
    user: { uid: user.uid, gid: user.gid, additionalGids },
    args: processArgs(spec, image),
    env: processEnv(image, spec.envs, { hostname: pod.spec.hostname, home: user.home, tty: spec.tty }),
    cwd: workingDir(spec, image),
    capabilities: caps,
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: nofile, soft: nofile }],
    noNewPrivileges: sec.noNewPrivs,
    oomScoreAdj: Math.min(1000, Math.max(spec.resources.oomScoreAdj, host.daemonOomScoreAdj)),
  };
  const apparmor = apparmorProfile(sec, host);
  if (apparmor !== undefined) proc.apparmorProfile = apparmor;

  const mounts = buildMounts(input);
  const ns = namespacePlan(input);
  const devices = input.devices ?? [];
  const linux: OciLinux = {};
  if (ns.uidMappings) linux.uidMappings = ns.uidMappings;
  if (ns.gidMappings) linux.gidMappings = ns.gidMappings;
  linux.namespaces = ns.namespaces;
  linux.devices = devices.map((d) => {
    const dev: LinuxDevice = { path: d.path, type: d.type, major: d.major, minor: d.minor };
    if (d.fileMode !== undefined) dev.fileMode = d.fileMode;
    if (d.uid !== undefined) dev.uid = d.uid;
    if (d.gid !== undefined) dev.gid = d.gid;
    return dev;
  });
  linux.resources = { devices: deviceRules(devices, sec.privileged), ...linuxResources(spec.resources, host) };
  linux.cgroupsPath = input.cgroupsPath;
  // No linux.sysctl: the pod wrote its namespaced sysctls into the pinned namespaces when it was
  // created, and every container joins those; repeating them here would only re-write the same values.
  const seccomp = seccompFor(sec, caps, input);
  if (seccomp) linux.seccomp = seccomp;
  const propagation = rootfsPropagation(mounts);
  if (propagation) linux.rootfsPropagation = propagation;
  if (!sec.privileged) {
    const masked = sec.maskedPaths ?? DEFAULT_MASKED_PATHS;
    const readonly = sec.readonlyPaths ?? DEFAULT_READONLY_PATHS;
    if (masked.length > 0) linux.maskedPaths = [...masked];
    if (readonly.length > 0) linux.readonlyPaths = [...readonly];
  }

  const oci: OciSpec = {
    ociVersion: OCI_VERSION,
    process: proc,
    root: { path: input.rootfsPath ?? 'rootfs', readonly: sec.readonlyRootfs },
    mounts,
    annotations: {
      ...spec.annotations,
      [CriAnnotation.containerType]: 'container',
      [CriAnnotation.containerName]: spec.metadata.name,
      [CriAnnotation.sandboxId]: pod.id,
      ...(input.shimGroup ? { [SHIM_GROUP_OVERRIDE]: input.shimGroup } : {}),
      [CriAnnotation.sandboxName]: pod.spec.metadata.name,
      [CriAnnotation.sandboxNamespace]: pod.spec.metadata.namespace,
      [CriAnnotation.sandboxUid]: pod.spec.metadata.uid,
      [CriAnnotation.imageName]: input.imageName ?? spec.image,
    },
    linux,
  };
  // Only with a uts namespace of the pod's own (not the host's, with hostNetwork).
  if (pod.pins.uts && pod.spec.hostname !== '') oci.hostname = pod.spec.hostname;
  return oci;
}

// ---- stop signal --------------------------------------------------------------------------------

const LINUX_SIGNALS: readonly string[] = [
  '', 'SIGHUP', 'SIGINT', 'SIGQUIT', 'SIGILL', 'SIGTRAP', 'SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGKILL', 'SIGUSR1',
  'SIGSEGV', 'SIGUSR2', 'SIGPIPE', 'SIGALRM', 'SIGTERM', 'SIGSTKFLT', 'SIGCHLD', 'SIGCONT', 'SIGSTOP',
  'SIGTSTP', 'SIGTTIN', 'SIGTTOU', 'SIGURG', 'SIGXCPU', 'SIGXFSZ', 'SIGVTALRM', 'SIGPROF', 'SIGWINCH',
  'SIGIO', 'SIGPWR', 'SIGSYS',
];
const SIGNAL_ALIASES: Record<string, string> = { SIGIOT: 'SIGABRT', SIGCLD: 'SIGCHLD', SIGPOLL: 'SIGIO' };
/** glibc's SIGRTMIN (two real-time signals are taken by the threading library) and SIGRTMAX. */
const RTMIN = 34;
const RTMAX = 64;

/** "term", "SIGTERM", "15" → "SIGTERM"; "RTMIN+3", "37" → "SIGRTMIN+3". Unknown → INVALID_ARGUMENT. */
export function normaliseSignal(sig: string): string {
  const s = sig.trim().toUpperCase();
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    if (n >= 1 && n < LINUX_SIGNALS.length) return LINUX_SIGNALS[n];
    if (n >= RTMIN && n <= RTMAX) return n === RTMIN ? 'SIGRTMIN' : `SIGRTMIN+${n - RTMIN}`;
    throw invalidArgument(`unknown signal "${sig}"`);
  }
  const name = s.startsWith('SIG') ? s : `SIG${s}`;
  if (LINUX_SIGNALS.includes(name) && name !== '') return name;
  if (SIGNAL_ALIASES[name]) return SIGNAL_ALIASES[name];
  const rt = /^SIGRT(MIN|MAX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const off = rt[3] === undefined ? 0 : Number(rt[3]) * (rt[2] === '-' ? -1 : 1);
    const n = (rt[1] === 'MIN' ? RTMIN : RTMAX) + off;
    if (n >= RTMIN && n <= RTMAX) return n === RTMIN ? 'SIGRTMIN' : `SIGRTMIN+${n - RTMIN}`;
  }
  throw invalidArgument(`unknown signal "${sig}"`);
}

/** The signal number of a name normaliseSignal accepts (real-time ones included). */
export function signalNumberOf(sig: string): number {
  const name = normaliseSignal(sig);
  const i = LINUX_SIGNALS.indexOf(name);
  if (i > 0) return i;
  return name === 'SIGRTMIN' ? RTMIN : RTMIN + Number(name.slice('SIGRTMIN+'.length));
}

/** CRI stop_signal, else the image's StopSignal, else SIGTERM; normalised to a name. */
export function stopSignalFor(spec: Pick<ContainerSpec, 'stopSignal'>, image: ImageConfig | ImageConfigDetails | undefined): string {
  const details = image && 'rootfs' in image ? image.config : (image as ImageConfigDetails | undefined);
  const sig = spec.stopSignal.trim() || details?.StopSignal?.trim() || 'SIGTERM';
  return normaliseSignal(sig);
}
