// Applies what NRI plugins asked for to OCI JSON, with no side effects: a merged ContainerAdjustment
// to a container's spec, and a ContainerUpdate to its LinuxResources. Removal markers ("-key") are
// handled before additions. The order of the steps follows the upstream reference applier
// (nri-protocol.md §8): annotations, env, args, hooks, CDI, devices, cgroups path, oom score, I/O
// priority, scheduler, seccomp, namespaces, sysctl, net devices, memory policy, resources, block I/O
// and RDT class, RDT, mounts (then sorted parents first), rlimits.
import { posix } from 'node:path';
import {
  IOPrioClass,
  LinuxSchedulerFlag,
  LinuxSchedulerPolicy,
  MpolFlag,
  MpolMode,
  type ContainerAdjustment,
  type ContainerUpdate,
  type LinuxResources as NriResources,
  type LinuxSeccomp as NriSeccomp,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import type { Input } from '../../common/proto-registry.js';
import type { LinuxResourcesJson, OciSpecJson } from '../nri-hooks.js';
import type {
  LinuxDevice,
  LinuxDeviceCgroup,
  LinuxNamespace,
  LinuxNamespaceType,
  LinuxSeccomp,
  OciHook,
  OciHooks,
  OciMount,
  PosixRlimit,
} from './oci-types.js';

/** CDI device names NRI plugins ask for; the container controller resolves them after the plugins ran. */
export const CDI_ANNOTATION = 'cdi.k8s.io/crisp-nri';
/** crisp has no block I/O class configuration; a requested class is recorded here for tooling. */
export const BLOCKIO_CLASS_ANNOTATION = 'io.crisp.nri/blockio-class';

// The OCI spec fields NRI can touch, including the ones oci-types.ts does not model (I/O priority,
// scheduler, RDT, memory policy, net devices, cgroup v1 kernel memory).
interface MemoryView {
  limit?: number;
  reservation?: number;
  swap?: number;
  kernel?: number;
  kernelTCP?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
  useHierarchy?: boolean;
}
interface CpuView {
  shares?: number;
  quota?: number;
  period?: number;
  realtimeRuntime?: number;
  realtimePeriod?: number;
  cpus?: string;
  mems?: string;
}
interface ResourcesView {
  devices?: LinuxDeviceCgroup[];
  memory?: MemoryView;
  cpu?: CpuView;
  pids?: { limit: number };
  hugepageLimits?: { pageSize: string; limit: number }[];
  unified?: Record<string, string>;
}
interface ProcessView {
  args?: string[];
  env?: string[];
  rlimits?: PosixRlimit[];
  oomScoreAdj?: number;
  ioPriority?: { class: string; priority: number };
  scheduler?: {
    policy: string;
    nice?: number;
    priority?: number;
    flags?: string[];
    runtime?: number;
    deadline?: number;
    period?: number;
  };
}
interface LinuxView {
  sysctl?: Record<string, string>;
  resources?: ResourcesView;
  cgroupsPath?: string;
  namespaces?: LinuxNamespace[];
  devices?: LinuxDevice[];
  seccomp?: LinuxSeccomp;
  intelRdt?: { closID?: string; schemata?: string[]; enableMonitoring?: boolean };
  memoryPolicy?: { mode: string; nodes: string; flags?: string[] };
  netDevices?: Record<string, { name?: string }>;
}
interface SpecView {
  process?: ProcessView;
  mounts?: OciMount[];
  hooks?: OciHooks;
  annotations?: Record<string, string>;
  linux?: LinuxView;
}

type Adjustment = Input<ContainerAdjustment>;
type StringMapInput = { [key: string]: string | null | undefined } | null | undefined;

/** "-key" → "key" (a removal), anything else → undefined. */
function removalKey(key: string): string | undefined {
  return key.startsWith('-') ? key.slice(1) : undefined;
}

function present<T>(items: readonly (T | null | undefined)[] | null | undefined): T[] {
  return (items ?? []).filter((x): x is T => x !== null && x !== undefined);
}

function processOf(spec: SpecView): ProcessView {
  return (spec.process ??= {});
}
function linuxOf(spec: SpecView): LinuxView {
  return (spec.linux ??= {});
}
function resourcesOf(spec: SpecView): ResourcesView {
  return (linuxOf(spec).resources ??= {});
}

/** Removals first, then sets, on a string map held at holder[field] (created only when needed). */
function adjustStringMap<K extends string>(holder: { [P in K]?: Record<string, string> }, field: K, changes: StringMapInput): void {
  const entries = Object.entries(changes ?? {});
  if (entries.length === 0) return;
  const map: Record<string, string> = { ...(holder[field] ?? {}) };
  for (const [k] of entries) {
    const key = removalKey(k);
    if (key !== undefined) delete map[key];
  }
  for (const [k, v] of entries) if (removalKey(k) === undefined) map[k] = v ?? '';
  holder[field] = map as { [P in K]?: Record<string, string> }[K];
}

function envKey(entry: string): string {
  const eq = entry.indexOf('=');
  return eq < 0 ? entry : entry.slice(0, eq);
}

function adjustEnv(spec: SpecView, env: Adjustment['env']): void {
  const changes = present(env);
  if (changes.length === 0) return;
  const proc = processOf(spec);
  let out = [...(proc.env ?? [])];
  const removed = new Set(changes.map((e) => removalKey(e.key ?? '')).filter((k): k is string => k !== undefined));
  out = out.filter((e) => !removed.has(envKey(e)));
  for (const e of changes) {
    const key = e.key ?? '';
    if (removalKey(key) !== undefined || key === '') continue;
    const entry = `${key}=${e.value ?? ''}`;
    const at = out.findIndex((x) => envKey(x) === key);
    if (at >= 0) out[at] = entry;
    else out.push(entry);
  }
  proc.env = out;
}

function adjustArgs(spec: SpecView, args: Adjustment['args']): void {
  let list = (args ?? []).map((a) => a ?? '');
  if (list.length === 0) return;
  // A leading "" only tells the merger to drop the previous owner; the rest replaces the args.
  if (list[0] === '') list = list.slice(1);
  if (list.length > 0) processOf(spec).args = list;
}

const HOOK_KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;

function hookToOci(h: NonNullable<NonNullable<Adjustment['hooks']>['prestart']>[number]): OciHook {
  const out: OciHook = { path: h?.path ?? '' };
  const args = present(h?.args);
  const env = present(h?.env);
  if (args.length) out.args = args;
  if (env.length) out.env = env;
  if (h?.timeout) out.timeout = h.timeout.value ?? 0;
  return out;
}

function adjustHooks(spec: SpecView, hooks: Adjustment['hooks']): void {
  if (!hooks) return;
  for (const kind of HOOK_KINDS) {
    const add = present(hooks[kind]);
    if (add.length === 0) continue;
    const all = (spec.hooks ??= {});
    all[kind] = [...(all[kind] ?? []), ...add.map(hookToOci)];
  }
}

function adjustCdiDevices(spec: SpecView, devices: Adjustment['CDIDevices']): void {
  const names = present(devices).map((d) => d.name ?? '').filter((n) => n !== '');
  if (names.length === 0) return;
  const annotations = (spec.annotations ??= {});
  const known = (annotations[CDI_ANNOTATION] ?? '').split(',').filter((n) => n !== '');
  for (const n of names) if (!known.includes(n)) known.push(n);
  annotations[CDI_ANNOTATION] = known.join(',');
}

type NriDevice = NonNullable<NonNullable<Adjustment['linux']>['devices']>[number];

function deviceToOci(d: NonNullable<NriDevice>): LinuxDevice {
  const out: LinuxDevice = { path: d.path ?? '', type: d.type ?? '', major: d.major ?? 0, minor: d.minor ?? 0 };
  if (d.fileMode) out.fileMode = d.fileMode.value ?? 0;
  if (d.uid) out.uid = d.uid.value ?? 0;
  if (d.gid) out.gid = d.gid.value ?? 0;
  return out;
}

function adjustDevices(spec: SpecView, devices: NriDevice[] | null | undefined): void {
  const changes = present(devices);
  if (changes.length === 0) return;
  const linux = linuxOf(spec);
  const removed = new Set(changes.map((d) => removalKey(d.path ?? '')).filter((k): k is string => k !== undefined));
  let out = (linux.devices ?? []).filter((d) => !removed.has(d.path));
  for (const d of changes) {
    if (removalKey(d.path ?? '') !== undefined) continue;
    const dev = deviceToOci(d);
    out = out.filter((x) => x.path !== dev.path);
    out.push(dev);
    // The device node alone is useless behind the default deny-all device cgroup: allow it too.
    const cgType = dev.type === 'b' ? 'b' : dev.type === 'c' || dev.type === 'u' ? 'c' : undefined;
    if (cgType) {
      const res = resourcesOf(spec);
      const rules = (res.devices ??= []);
      const exists = rules.some((r) => r.allow && r.type === cgType && r.major === dev.major && r.minor === dev.minor && r.access === 'rwm');
      if (!exists) rules.push({ allow: true, type: cgType, major: dev.major, minor: dev.minor, access: 'rwm' });
    }
  }
  linux.devices = out;
}

function adjustIoPriority(spec: SpecView, prio: NonNullable<Adjustment['linux']>['ioPriority']): void {
  if (!prio) return;
  const cls = prio.class ?? IOPrioClass.IOPRIO_CLASS_NONE;
  if (cls === IOPrioClass.IOPRIO_CLASS_NONE) {
    if (spec.process) delete spec.process.ioPriority;
    return;
  }
  processOf(spec).ioPriority = { class: IOPrioClass[cls], priority: prio.priority ?? 0 };
}

function adjustScheduler(spec: SpecView, sched: NonNullable<Adjustment['linux']>['scheduler']): void {
  if (!sched) return;
  const policy = sched.policy ?? LinuxSchedulerPolicy.SCHED_NONE;
  if (policy === LinuxSchedulerPolicy.SCHED_NONE) {
    if (spec.process) delete spec.process.scheduler;
    return;
  }
  const out: NonNullable<ProcessView['scheduler']> = { policy: LinuxSchedulerPolicy[policy] };
  if (sched.nice) out.nice = sched.nice;
  if (sched.priority) out.priority = sched.priority;
  const flags = present(sched.flags).map((f) => LinuxSchedulerFlag[f]);
  if (flags.length) out.flags = flags;
  if (sched.runtime) out.runtime = sched.runtime;
  if (sched.deadline) out.deadline = sched.deadline;
  if (sched.period) out.period = sched.period;
  processOf(spec).scheduler = out;
}

/** NRI's seccomp policy in OCI form (actions and operators are the same strings). */
export function seccompToOci(s: Input<NriSeccomp>): LinuxSeccomp {
  const out = { defaultAction: s.defaultAction ?? '' } as LinuxSeccomp;
  if (s.defaultErrno) out.defaultErrnoRet = s.defaultErrno.value ?? 0;
  const archs = present(s.architectures);
  if (archs.length) out.architectures = archs;
  const flags = present(s.flags);
  if (flags.length) out.flags = flags;
  if (s.listenerPath) out.listenerPath = s.listenerPath;
  if (s.listenerMetadata) out.listenerMetadata = s.listenerMetadata;
  const syscalls = present(s.syscalls);
  if (syscalls.length) {
    out.syscalls = syscalls.map((sc) => {
      const call = { names: present(sc.names), action: sc.action ?? '' } as NonNullable<LinuxSeccomp['syscalls']>[number];
      if (sc.errnoRet) call.errnoRet = sc.errnoRet.value ?? 0;
      const args = present(sc.args);
      if (args.length) {
        call.args = args.map((a) => {
          const arg = { index: a.index ?? 0, value: a.value ?? 0, op: a.op ?? '' } as NonNullable<typeof call.args>[number];
          if (a.valueTwo) arg.valueTwo = a.valueTwo;
          return arg;
        });
      }
      return call;
    });
  }
  return out;
}

function adjustNamespaces(spec: SpecView, namespaces: NonNullable<Adjustment['linux']>['namespaces']): void {
  const changes = present(namespaces);
  if (changes.length === 0) return;
  const linux = linuxOf(spec);
  const removed = new Set(changes.map((n) => removalKey(n.type ?? '')).filter((k): k is string => k !== undefined));
  let out = (linux.namespaces ?? []).filter((n) => !removed.has(n.type));
  for (const n of changes) {
    const type = n.type ?? '';
    if (removalKey(type) !== undefined || type === '') continue;
    out = out.filter((x) => x.type !== type);
    const ns: LinuxNamespace = { type: type as LinuxNamespaceType };
    if (n.path) ns.path = n.path;
    out.push(ns);
  }
  linux.namespaces = out;
}

function adjustNetDevices(spec: SpecView, devices: NonNullable<Adjustment['linux']>['netDevices']): void {
  const entries = Object.entries(devices ?? {});
  if (entries.length === 0) return;
  const linux = linuxOf(spec);
  const map = { ...(linux.netDevices ?? {}) };
  for (const [k] of entries) {
    const key = removalKey(k);
    if (key !== undefined) delete map[key];
  }
  for (const [k, v] of entries) {
    if (removalKey(k) !== undefined) continue;
    map[k] = v?.name ? { name: v.name } : {};
  }
  linux.netDevices = map;
}

function adjustMemoryPolicy(spec: SpecView, policy: NonNullable<Adjustment['linux']>['memoryPolicy']): void {
  if (!policy) return;
  const out: NonNullable<LinuxView['memoryPolicy']> = {
    mode: MpolMode[policy.mode ?? MpolMode.MPOL_DEFAULT],
    nodes: policy.nodes ?? '',
  };
  const flags = present(policy.flags).map((f) => MpolFlag[f]);
  if (flags.length) out.flags = flags;
  linuxOf(spec).memoryPolicy = out;
}

type Wrapper<T> = { value?: T | null } | null | undefined;

function setWrapped<O, K extends keyof O>(target: O, key: K, w: Wrapper<O[K]>, zero: O[K]): void {
  if (w) target[key] = w.value ?? zero;
}

/** Writes every field an NRI LinuxResources sets into OCI resources (in place). */
function mergeResources(target: ResourcesView, r: Input<NriResources>): void {
  if (r.memory) {
    const m = r.memory;
    const out = (target.memory ??= {});
    setWrapped(out, 'limit', m.limit, 0);
    setWrapped(out, 'reservation', m.reservation, 0);
    setWrapped(out, 'swap', m.swap, 0);
    setWrapped(out, 'kernel', m.kernel, 0);
    setWrapped(out, 'kernelTCP', m.kernelTcp, 0);
    setWrapped(out, 'swappiness', m.swappiness, 0);
    setWrapped(out, 'disableOOMKiller', m.disableOomKiller, false);
    setWrapped(out, 'useHierarchy', m.useHierarchy, false);
  }
  if (r.cpu) {
    const c = r.cpu;
    const out = (target.cpu ??= {});
    setWrapped(out, 'shares', c.shares, 0);
    setWrapped(out, 'quota', c.quota, 0);
    setWrapped(out, 'period', c.period, 0);
    setWrapped(out, 'realtimeRuntime', c.realtimeRuntime, 0);
    setWrapped(out, 'realtimePeriod', c.realtimePeriod, 0);
    if (c.cpus) out.cpus = c.cpus;
    if (c.mems) out.mems = c.mems;
  }
  for (const h of present(r.hugepageLimits)) {
    const limits = (target.hugepageLimits ??= []);
    const entry = { pageSize: h.pageSize ?? '', limit: h.limit ?? 0 };
    const at = limits.findIndex((x) => x.pageSize === entry.pageSize);
    if (at >= 0) limits[at] = entry;
    else limits.push(entry);
  }
  adjustStringMap(target, 'unified', r.unified);
  // Device cgroup rules are appended in order (later rules win in the kernel's evaluation).
  for (const d of present(r.devices)) {
    const rule: LinuxDeviceCgroup = { allow: d.allow ?? false };
    if (d.type) rule.type = d.type;
    if (d.major) rule.major = d.major.value ?? 0;
    if (d.minor) rule.minor = d.minor.value ?? 0;
    if (d.access) rule.access = d.access;
    (target.devices ??= []).push(rule);
  }
  if (r.pids) target.pids = { limit: r.pids.limit ?? 0 };
}

function adjustRdt(spec: SpecView, rdt: NonNullable<Adjustment['linux']>['rdt']): void {
  if (!rdt) return;
  const linux = linuxOf(spec);
  if (rdt.remove) delete linux.intelRdt;
  if (!rdt.closId && !rdt.schemata && !rdt.enableMonitoring) return;
  const out = (linux.intelRdt ??= {});
  if (rdt.closId) out.closID = rdt.closId.value ?? '';
  if (rdt.schemata) out.schemata = present(rdt.schemata.value);
  if (rdt.enableMonitoring) out.enableMonitoring = rdt.enableMonitoring.value ?? false;
}

function mountDepth(destination: string): number {
  return posix.normalize(destination).split('/').filter((p) => p !== '').length;
}

function adjustMounts(spec: SpecView, mounts: Adjustment['mounts']): void {
  const changes = present(mounts);
  if (changes.length === 0) return;
  const removed = new Set(changes.map((m) => removalKey(m.destination ?? '')).filter((k): k is string => k !== undefined));
  let out = (spec.mounts ?? []).filter((m) => !removed.has(m.destination));
  let added = false;
  for (const m of changes) {
    const dest = m.destination ?? '';
    if (removalKey(dest) !== undefined || dest === '') continue;
    const mount: OciMount = { destination: dest };
    if (m.type) mount.type = m.type;
    if (m.source) mount.source = m.source;
    const options = present(m.options);
    if (options.length) mount.options = options;
    out = out.filter((x) => x.destination !== dest);
    out.push(mount);
    added = true;
  }
  // Parents before children, so a mount under another one is not hidden by it (stable sort).
  if (added) out.sort((a, b) => mountDepth(a.destination) - mountDepth(b.destination));
  spec.mounts = out;
}

function adjustRlimits(spec: SpecView, rlimits: Adjustment['rlimits']): void {
  const changes = present(rlimits);
  if (changes.length === 0) return;
  const proc = processOf(spec);
  const out = [...(proc.rlimits ?? [])];
  for (const r of changes) {
    const entry: PosixRlimit = { type: r.type ?? '', hard: r.hard ?? 0, soft: r.soft ?? 0 };
    const at = out.findIndex((x) => x.type === entry.type);
    if (at >= 0) out[at] = entry;
    else out.push(entry);
  }
  proc.rlimits = out;
}

/** The spec with the adjustment applied; `spec` itself is not modified. */
export function applyContainerAdjustment(spec: OciSpecJson, adj: Adjustment | null | undefined): OciSpecJson {
  const out = structuredClone(spec) as SpecView;
  if (!adj) return out as OciSpecJson;
  adjustStringMap(out, 'annotations', adj.annotations);
  adjustEnv(out, adj.env);
  adjustArgs(out, adj.args);
  adjustHooks(out, adj.hooks);
  adjustCdiDevices(out, adj.CDIDevices);
  const linux = adj.linux;
  if (linux) {
    adjustDevices(out, linux.devices);
    if (linux.cgroupsPath) linuxOf(out).cgroupsPath = linux.cgroupsPath;
    if (linux.oomScoreAdj) processOf(out).oomScoreAdj = linux.oomScoreAdj.value ?? 0;
    adjustIoPriority(out, linux.ioPriority);
    adjustScheduler(out, linux.scheduler);
    if (linux.seccompPolicy) linuxOf(out).seccomp = seccompToOci(linux.seccompPolicy);
    adjustNamespaces(out, linux.namespaces);
    if (Object.keys(linux.sysctl ?? {}).length > 0) adjustStringMap(linuxOf(out), 'sysctl', linux.sysctl);
    adjustNetDevices(out, linux.netDevices);
    adjustMemoryPolicy(out, linux.memoryPolicy);
    const res = linux.resources;
    if (res) {
      mergeResources(resourcesOf(out), res);
      if (res.blockioClass) (out.annotations ??= {})[BLOCKIO_CLASS_ANNOTATION] = res.blockioClass.value ?? '';
      // The RDT class is the resctrl group (CLOS) the container joins.
      if (res.rdtClass) (linuxOf(out).intelRdt ??= {}).closID = res.rdtClass.value ?? '';
    }
    adjustRdt(out, linux.rdt);
  }
  adjustMounts(out, adj.mounts);
  adjustRlimits(out, adj.rlimits);
  return out as OciSpecJson;
}

/**
 * The resources with a plugin's update applied (fields it sets replace, hugepage limits by page
 * size, unified keys by key, device rules appended); `resources` itself is not modified. Block I/O
 * and RDT classes have no place in OCI LinuxResources and are ignored here.
 */
export function applyContainerUpdate(resources: LinuxResourcesJson, update: Input<ContainerUpdate> | null | undefined): LinuxResourcesJson {
  const out = structuredClone(resources) as ResourcesView;
  const r = update?.linux?.resources;
  if (r) mergeResources(out, r);
  return out as LinuxResourcesJson;
}

/** NRI LinuxResources as OCI LinuxResources JSON (only the fields that are set). */
export function nriResourcesToOci(r: Input<NriResources> | null | undefined): LinuxResourcesJson {
  const out: ResourcesView = {};
  if (r) mergeResources(out, r);
  return out as LinuxResourcesJson;
}
