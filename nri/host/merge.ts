// Merging what several plugins answered to one event: their container adjustments (CreateContainer)
// and container updates (CreateContainer, UpdateContainer, StopContainer), with ownership checks so
// that two plugins setting the same field fail the operation with both names (nri-protocol.md §8).
// The merged adjustment keeps removal markers ("-key"), to be applied before the additions.
import {
  type ContainerAdjustment,
  type ContainerUpdate,
  type Hooks,
  type LinuxContainerAdjustment,
  type LinuxCPU,
  type LinuxMemory,
  type LinuxResources,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import { Field, Ownership, type Claim } from './owners.js';

const PKG = 'nri.pkg.api.v1alpha1';
const adjustmentCodec = codecFor<ContainerAdjustment>(`${PKG}.ContainerAdjustment`);
const updateCodec = codecFor<ContainerUpdate>(`${PKG}.ContainerUpdate`);
const linuxAdjustmentCodec = codecFor<LinuxContainerAdjustment>(`${PKG}.LinuxContainerAdjustment`);
const resourcesCodec = codecFor<LinuxResources>(`${PKG}.LinuxResources`);
const memoryCodec = codecFor<LinuxMemory>(`${PKG}.LinuxMemory`);
const cpuCodec = codecFor<LinuxCPU>(`${PKG}.LinuxCPU`);

function removalKey(key: string): string | undefined {
  return key.startsWith('-') ? key.slice(1) : undefined;
}

const MEMORY_FIELDS: [keyof LinuxMemory, Field][] = [
  ['limit', Field.MemLimit],
  ['reservation', Field.MemReservation],
  ['swap', Field.MemSwapLimit],
  ['kernel', Field.MemKernelLimit],
  ['kernelTcp', Field.MemTCPLimit],
  ['swappiness', Field.MemSwappiness],
  ['disableOomKiller', Field.MemDisableOomKiller],
  ['useHierarchy', Field.MemUseHierarchy],
];
const CPU_WRAPPED: [keyof LinuxCPU, Field][] = [
  ['shares', Field.CPUShares],
  ['quota', Field.CPUQuota],
  ['period', Field.CPUPeriod],
  ['realtimeRuntime', Field.CPURealtimeRuntime],
  ['realtimePeriod', Field.CPURealtimePeriod],
];

/** The ownership claims a LinuxResources makes (device cgroup rules are never owned). */
export function resourceClaims(r: LinuxResources): Claim[] {
  const claims: Claim[] = [];
  if (r.memory) for (const [k, field] of MEMORY_FIELDS) if (r.memory[k]) claims.push({ field });
  if (r.cpu) {
    for (const [k, field] of CPU_WRAPPED) if (r.cpu[k]) claims.push({ field });
    if (r.cpu.cpus) claims.push({ field: Field.CPUSetCPUs });
    if (r.cpu.mems) claims.push({ field: Field.CPUSetMems });
  }
  if (r.pids) claims.push({ field: Field.PidsLimit });
  for (const h of r.hugepageLimits) claims.push({ field: Field.HugepageLimits, key: h.pageSize });
  if (r.blockioClass) claims.push({ field: Field.BlockioClass });
  if (r.rdtClass) claims.push({ field: Field.RdtClass });
  for (const key of Object.keys(r.unified)) claims.push({ field: Field.CgroupsUnified, key });
  return claims;
}

/** Copies every field `r` sets into `target` (both in decoded NRI form). */
export function copyResources(target: LinuxResources, r: LinuxResources): void {
  if (r.memory) {
    const m = (target.memory ??= memoryCodec.normalize({}));
    for (const [k] of MEMORY_FIELDS) if (r.memory[k]) Object.assign(m, { [k]: r.memory[k] });
  }
  if (r.cpu) {
    const c = (target.cpu ??= cpuCodec.normalize({}));
    for (const [k] of CPU_WRAPPED) if (r.cpu[k]) Object.assign(c, { [k]: r.cpu[k] });
    if (r.cpu.cpus) c.cpus = r.cpu.cpus;
    if (r.cpu.mems) c.mems = r.cpu.mems;
  }
  if (r.pids) target.pids = r.pids;
  for (const h of r.hugepageLimits) {
    target.hugepageLimits = target.hugepageLimits.filter((x) => x.pageSize !== h.pageSize);
    target.hugepageLimits.push(h);
  }
  if (r.blockioClass) target.blockioClass = r.blockioClass;
  if (r.rdtClass) target.rdtClass = r.rdtClass;
  Object.assign(target.unified, r.unified);
  target.devices.push(...r.devices);
}

const HOOK_KINDS = ['prestart', 'createRuntime', 'createContainer', 'startContainer', 'poststart', 'poststop'] as const;

/**
 * Collects the adjustments of the plugins answering one CreateContainer, in call order. `add` throws
 * a ConflictError naming both plugins when a field is claimed twice.
 */
export class AdjustmentMerger {
  readonly merged: ContainerAdjustment;
  private readonly linux: LinuxContainerAdjustment;
  private readonly hooks: Hooks;
  private readonly resources: LinuxResources;

  constructor(
    readonly containerId: string,
    readonly owners: Ownership = new Ownership(),
  ) {
    this.merged = adjustmentCodec.normalize({ hooks: {}, linux: { resources: {} } });
    this.linux = this.merged.linux!;
    this.hooks = this.merged.hooks!;
    this.resources = this.linux.resources!;
  }

  add(input: Input<ContainerAdjustment> | null | undefined, plugin: string): void {
    if (!input) return;
    const adj = adjustmentCodec.normalize(input);
    const id = this.containerId;
    const m = this.merged;

    this.mergeMap(m.annotations, adj.annotations, Field.Annotations, plugin);
    m.mounts = this.mergeKeyed(m.mounts, adj.mounts, (x) => x.destination, Field.Mounts, plugin);
    m.env = this.mergeKeyed(m.env, adj.env, (x) => x.key, Field.Env, plugin);

    if (adj.hooks) {
      let any = false;
      for (const kind of HOOK_KINDS) {
        if (adj.hooks[kind].length === 0) continue;
        this.hooks[kind].push(...adj.hooks[kind]);
        any = true;
      }
      if (any) this.owners.accumulate(id, Field.OciHooks, plugin);
    }

    for (const r of adj.rlimits) {
      this.owners.claim(id, { field: Field.Rlimits, key: r.type }, plugin);
      m.rlimits.push(r);
    }
    for (const d of adj.CDIDevices) {
      this.owners.claim(id, { field: Field.CdiDevices, key: d.name }, plugin);
      m.CDIDevices.push(d);
    }
    if (adj.args.length > 0) {
      let args = adj.args;
      // A leading "" takes the args over from whoever set them before.
      if (args[0] === '') {
        this.owners.clear(id, { field: Field.Args }, plugin);
        args = args.slice(1);
      }
      this.owners.claim(id, { field: Field.Args }, plugin);
      m.args = args;
    }
    if (adj.linux) this.addLinux(adj.linux, plugin);
  }

  private addLinux(l: LinuxContainerAdjustment, plugin: string): void {
    const id = this.containerId;
    const out = this.linux;
    out.devices = this.mergeKeyed(out.devices, l.devices, (d) => d.path, Field.Devices, plugin);
    if (l.resources) {
      this.owners.claimAll(id, resourceClaims(l.resources), plugin);
      copyResources(this.resources, l.resources);
    }
    const simple = <K extends keyof LinuxContainerAdjustment>(key: K, field: Field, set: boolean): void => {
      if (!set) return;
      this.owners.claim(id, { field }, plugin);
      out[key] = l[key];
    };
    simple('cgroupsPath', Field.CgroupsPath, l.cgroupsPath !== '');
    simple('oomScoreAdj', Field.OomScoreAdj, l.oomScoreAdj !== null);
    simple('ioPriority', Field.IoPriority, l.ioPriority !== null);
    simple('seccompPolicy', Field.SeccompPolicy, l.seccompPolicy !== null);
    simple('scheduler', Field.LinuxSched, l.scheduler !== null);
    simple('memoryPolicy', Field.MemoryPolicy, l.memoryPolicy !== null);
    out.namespaces = this.mergeKeyed(out.namespaces, l.namespaces, (n) => n.type, Field.Namespace, plugin);
    this.mergeMap(out.sysctl, l.sysctl, Field.Sysctl, plugin);
    this.mergeMap(out.netDevices, l.netDevices, Field.LinuxNetDevices, plugin);
    if (l.rdt) {
      const rdt = (out.rdt ??= linuxAdjustmentCodec.normalize({ rdt: {} }).rdt!);
      if (l.rdt.remove) {
        for (const field of [Field.RdtClosID, Field.RdtSchemata, Field.RdtEnableMonitoring]) this.owners.clear(id, { field }, plugin);
        rdt.remove = true;
        rdt.closId = null;
        rdt.schemata = null;
        rdt.enableMonitoring = null;
      }
      const parts: [keyof typeof rdt & ('closId' | 'schemata' | 'enableMonitoring'), Field][] = [
        ['closId', Field.RdtClosID],
        ['schemata', Field.RdtSchemata],
        ['enableMonitoring', Field.RdtEnableMonitoring],
      ];
      for (const [key, field] of parts) {
        if (!l.rdt[key]) continue;
        this.owners.claim(id, { field }, plugin);
        Object.assign(rdt, { [key]: l.rdt[key] });
      }
    }
  }

  /** Keyed map field (annotations, sysctl, net devices): removals, then claims and sets. */
  private mergeMap<V>(target: Record<string, V>, changes: Record<string, V>, field: Field, plugin: string): void {
    const id = this.containerId;
    const entries = Object.entries(changes);
    for (const [k, v] of entries) {
      const key = removalKey(k);
      if (key === undefined) continue;
      this.owners.clear(id, { field, key }, plugin);
      delete target[key];
      target[k] = v;
    }
    for (const [k, v] of entries) {
      if (removalKey(k) !== undefined) continue;
      this.owners.claim(id, { field, key: k }, plugin);
      target[k] = v;
    }
  }

  /** Keyed list field (mounts, env, devices, namespaces): removals, then claims and additions. */
  private mergeKeyed<T>(target: T[], changes: T[], keyOf: (t: T) => string, field: Field, plugin: string): T[] {
    const id = this.containerId;
    let out = target;
    for (const c of changes) {
      const key = removalKey(keyOf(c));
      if (key === undefined) continue;
      this.owners.clear(id, { field, key }, plugin);
      out = out.filter((x) => keyOf(x) !== key && keyOf(x) !== keyOf(c));
      out.push(c);
    }
    for (const c of changes) {
      const key = keyOf(c);
      if (removalKey(key) !== undefined) continue;
      this.owners.claim(id, { field, key }, plugin);
      out = out.filter((x) => keyOf(x) !== key);
      out.push(c);
    }
    return out;
  }
}

/** An update a plugin sent that was dropped because of ignore_failure. */
export interface IgnoredUpdate {
  plugin: string;
  containerId: string;
  reason: string;
}

/**
 * Merges container updates per container id, with the same ownership checks on resource fields.
 * The merged ignore_failure is the AND of the contributions; a conflicting update is dropped (and
 * reported) if it asked for ignore_failure, otherwise it fails the operation.
 */
export class UpdateMerger {
  private readonly byId = new Map<string, ContainerUpdate>();
  readonly ignored: IgnoredUpdate[] = [];

  constructor(
    readonly owners: Ownership = new Ownership(),
    private readonly opts: { creating?: string } = {},
  ) {}

  add(updates: readonly Input<ContainerUpdate>[] | null | undefined, plugin: string): void {
    for (const raw of updates ?? []) {
      const u = updateCodec.normalize(raw);
      const id = u.containerId;
      if (!id) throw new Error(`plugin "${plugin}" sent a container update without a container id`);
      if (id === this.opts.creating) throw new Error(`plugin "${plugin}" tried to update container ${id} while it is being created`);
      const res = u.linux?.resources ?? null;
      try {
        if (res) this.owners.claimAll(id, resourceClaims(res), plugin);
      } catch (err) {
        if (!u.ignoreFailure) throw err;
        this.ignored.push({ plugin, containerId: id, reason: (err as Error).message });
        continue;
      }
      let merged = this.byId.get(id);
      if (!merged) {
        merged = updateCodec.normalize({ containerId: id, linux: { resources: {} }, ignoreFailure: u.ignoreFailure });
        this.byId.set(id, merged);
      } else {
        merged.ignoreFailure = merged.ignoreFailure && u.ignoreFailure;
      }
      if (res) copyResources(merged.linux!.resources!, res);
    }
  }

  get(id: string): ContainerUpdate | undefined {
    return this.byId.get(id);
  }

  /** Merged updates in the order their containers first appeared, optionally without one id. */
  list(except?: string): ContainerUpdate[] {
    return [...this.byId.values()].filter((u) => u.containerId !== except);
  }
}

/** A fresh, empty decoded LinuxResources (for building requests). */
export function emptyResources(): LinuxResources {
  return resourcesCodec.normalize({});
}
