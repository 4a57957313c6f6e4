// What plugins see: NRI PodSandbox and Container messages built from crisp's records and the
// container's OCI spec (the spec is the truth for args, env, mounts, hooks and linux settings, so
// a plugin sees the container as it will run, including earlier plugins' adjustments).
import {
  ContainerState,
  IOPrioClass,
  LinuxSchedulerFlag,
  LinuxSchedulerPolicy,
  SecurityProfile_ProfileType,
  type Container,
  type LinuxContainer,
  type LinuxResources,
  type LinuxSeccomp,
  type PodSandbox,
} from '../../gen/nri.pkg.api.v1alpha1.js';
import type { Input } from '../../common/proto-registry.js';
import type { LinuxResourcesJson, OciSpecJson } from '../../sandbox/nri-hooks.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import type { ContainerRecord, ContainerState as CrispContainerState, ResourceSpec } from '../../sandbox/containers/types.js';

type Json = Record<string, unknown>;

function obj(v: unknown): Json | undefined {
  return v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined;
}
function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
function strings(v: unknown): string[] {
  return arr(v).filter((x): x is string => typeof x === 'string');
}
function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(obj(v) ?? {})) if (typeof val === 'string') out[k] = val;
  return out;
}
function wrap(v: unknown): { value: number } | undefined {
  const n = num(v);
  return n === undefined ? undefined : { value: n };
}
function wrapBool(v: unknown): { value: boolean } | undefined {
  return typeof v === 'boolean' ? { value: v } : undefined;
}

/** Drops undefined members so the encoder leaves those fields out (presence carries meaning). */
function defined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as (keyof T)[]) if (o[k] === undefined) delete o[k];
  return o;
}

const STATE: Record<CrispContainerState, ContainerState> = {
  created: ContainerState.CONTAINER_CREATED,
  running: ContainerState.CONTAINER_RUNNING,
  exited: ContainerState.CONTAINER_STOPPED,
  unknown: ContainerState.CONTAINER_UNKNOWN,
};

/** OCI LinuxResources JSON in NRI form (only the fields the JSON sets). */
export function ociResourcesToNri(res: LinuxResourcesJson | undefined): Input<LinuxResources> {
  const r = obj(res) ?? {};
  const out: Input<LinuxResources> = {};
  const m = obj(r.memory);
  if (m) {
    out.memory = defined({
      limit: wrap(m.limit),
      reservation: wrap(m.reservation),
      swap: wrap(m.swap),
      kernel: wrap(m.kernel),
      kernelTcp: wrap(m.kernelTCP),
      swappiness: wrap(m.swappiness),
      disableOomKiller: wrapBool(m.disableOOMKiller),
      useHierarchy: wrapBool(m.useHierarchy),
    });
  }
  const c = obj(r.cpu);
  if (c) {
    out.cpu = defined({
      shares: wrap(c.shares),
      quota: wrap(c.quota),
      period: wrap(c.period),
      realtimeRuntime: wrap(c.realtimeRuntime),
      realtimePeriod: wrap(c.realtimePeriod),
      cpus: str(c.cpus),
      mems: str(c.mems),
    });
  }
  const huge = arr(r.hugepageLimits).map(obj).filter((h): h is Json => !!h);
  if (huge.length) out.hugepageLimits = huge.map((h) => ({ pageSize: str(h.pageSize) ?? '', limit: num(h.limit) ?? 0 }));
  const unified = stringMap(r.unified);
  if (Object.keys(unified).length) out.unified = unified;
  const devices = arr(r.devices).map(obj).filter((d): d is Json => !!d);
  if (devices.length) {
    out.devices = devices.map((d) =>
      defined({ allow: d.allow === true, type: str(d.type) ?? '', major: wrap(d.major), minor: wrap(d.minor), access: str(d.access) ?? '' }),
    );
  }
  const pids = obj(r.pids);
  if (pids && num(pids.limit) !== undefined) out.pids = { limit: num(pids.limit)! };
  return out;
}

/**
 * CRI resources (zero or empty = not set) in NRI form, as kubelet gave them: the pod-level values are
 * never applied to a cgroup, so unlike a container's they are not adjusted to the host.
 */
export function criResourcesToNri(r: ResourceSpec): Input<LinuxResources> {
  const set = (n: number) => (n !== 0 ? { value: n } : undefined);
  const out: Input<LinuxResources> = {};
  const cpu = defined({
    shares: set(r.cpuShares),
    quota: set(r.cpuQuota),
    period: set(r.cpuPeriod),
    cpus: r.cpusetCpus || undefined,
    mems: r.cpusetMems || undefined,
  });
  if (Object.keys(cpu).length > 0) out.cpu = cpu;
  const memory = defined({ limit: set(r.memoryLimitInBytes), swap: set(r.memorySwapLimitInBytes) });
  if (Object.keys(memory).length > 0) out.memory = memory;
  if (r.hugepageLimits.length > 0) out.hugepageLimits = r.hugepageLimits.map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
  if (Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
  return out;
}

function seccompToNri(s: Json): Input<LinuxSeccomp> {
  return defined({
    defaultAction: str(s.defaultAction) ?? '',
    defaultErrno: wrap(s.defaultErrnoRet),
    architectures: strings(s.architectures),
    flags: strings(s.flags),
    listenerPath: str(s.listenerPath) ?? '',
    listenerMetadata: str(s.listenerMetadata) ?? '',
    syscalls: arr(s.syscalls)
      .map(obj)
      .filter((x): x is Json => !!x)
      .map((sc) =>
        defined({
          names: strings(sc.names),
          action: str(sc.action) ?? '',
          errnoRet: wrap(sc.errnoRet),
          args: arr(sc.args)
            .map(obj)
            .filter((x): x is Json => !!x)
            .map((a) => ({ index: num(a.index) ?? 0, value: num(a.value) ?? 0, valueTwo: num(a.valueTwo) ?? 0, op: str(a.op) ?? '' })),
        }),
      ),
  });
}

function enumValue<E extends Record<string, string | number>>(e: E, name: unknown): E[keyof E] | undefined {
  return typeof name === 'string' && typeof e[name] === 'number' ? (e[name] as E[keyof E]) : undefined;
}

function linuxContainer(rec: ContainerRecord, linux: Json, process: Json): Input<LinuxContainer> {
  const out: Input<LinuxContainer> = {
    namespaces: arr(linux.namespaces)
      .map(obj)
      .filter((n): n is Json => !!n)
      .map((n) => ({ type: str(n.type) ?? '', path: str(n.path) ?? '' })),
    devices: arr(linux.devices)
      .map(obj)
      .filter((d): d is Json => !!d)
      .map((d) =>
        defined({
          path: str(d.path) ?? '',
          type: str(d.type) ?? '',
          major: num(d.major) ?? 0,
          minor: num(d.minor) ?? 0,
          fileMode: wrap(d.fileMode),
          uid: wrap(d.uid),
          gid: wrap(d.gid),
        }),
      ),
    resources: ociResourcesToNri(obj(linux.resources)),
    cgroupsPath: str(linux.cgroupsPath) ?? rec.cgroupsPath,
    sysctl: stringMap(linux.sysctl),
  };
  const oom = num(process.oomScoreAdj);
  if (oom !== undefined) out.oomScoreAdj = { value: oom };
  const prio = obj(process.ioPriority);
  const prioClass = prio ? enumValue(IOPrioClass, prio.class) : undefined;
  if (prio && prioClass !== undefined) out.ioPriority = { class: prioClass, priority: num(prio.priority) ?? 0 };
  const seccomp = rec.spec.security.seccomp;
  if (seccomp) {
    const type = { 'runtime-default': SecurityProfile_ProfileType.RUNTIME_DEFAULT, unconfined: SecurityProfile_ProfileType.UNCONFINED, localhost: SecurityProfile_ProfileType.LOCALHOST }[seccomp.kind];
    out.seccompProfile = { profileType: type, localhostRef: seccomp.localhostRef };
  }
  const policy = obj(linux.seccomp);
  if (policy) out.seccompPolicy = seccompToNri(policy);
  const net = obj(linux.netDevices);
  if (net) {
    out.netDevices = Object.fromEntries(Object.entries(net).map(([k, v]) => [k, { name: str(obj(v)?.name) ?? '' }]));
  }
  const sched = obj(process.scheduler);
  const policyValue = sched ? enumValue(LinuxSchedulerPolicy, sched.policy) : undefined;
  if (sched && policyValue !== undefined) {
    out.scheduler = {
      policy: policyValue,
      nice: num(sched.nice) ?? 0,
      priority: num(sched.priority) ?? 0,
      flags: strings(sched.flags)
        .map((f) => enumValue(LinuxSchedulerFlag, f))
        .filter((f): f is LinuxSchedulerFlag => f !== undefined),
      runtime: num(sched.runtime) ?? 0,
      deadline: num(sched.deadline) ?? 0,
      period: num(sched.period) ?? 0,
    };
  }
  const rdt = obj(linux.intelRdt);
  if (rdt) {
    out.rdt = defined({
      closId: str(rdt.closID) !== undefined ? { value: str(rdt.closID)! } : undefined,
      schemata: Array.isArray(rdt.schemata) ? { value: strings(rdt.schemata) } : undefined,
      enableMonitoring: wrapBool(rdt.enableMonitoring),
    });
  }
  return out;
}

function hooksOf(spec: Json): Input<Container>['hooks'] {
  const hooks = obj(spec.hooks);
  if (!hooks) return undefined;
  const kind = (k: string) =>
    arr(hooks[k])
      .map(obj)
      .filter((h): h is Json => !!h)
      .map((h) => defined({ path: str(h.path) ?? '', args: strings(h.args), env: strings(h.env), timeout: wrap(h.timeout) }));
  return {
    prestart: kind('prestart'),
    createRuntime: kind('createRuntime'),
    createContainer: kind('createContainer'),
    startContainer: kind('startContainer'),
    poststart: kind('poststart'),
    poststop: kind('poststop'),
  };
}

/** "registry/repo@sha256:…" → the digest part, else "". */
function repoDigest(ref: string): string {
  const at = ref.indexOf('@');
  return at >= 0 ? ref.slice(at + 1) : '';
}

/**
 * The NRI view of a container. `spec` is the container's OCI spec (as created, or as adjusted so
 * far during CreateContainer); without it only the record's own fields are filled in.
 */
export function containerMessage(rec: ContainerRecord, spec: OciSpecJson | undefined): Input<Container> {
  const s = obj(spec) ?? {};
  const process = obj(s.process) ?? {};
  const user = obj(process.user);
  const msg: Input<Container> = {
    id: rec.id,
    podSandboxId: rec.podId,
    name: rec.spec.metadata.name,
    state: STATE[rec.state],
    labels: rec.spec.labels,
    annotations: spec ? stringMap(s.annotations) : rec.spec.annotations,
    args: spec ? strings(process.args) : [...rec.spec.command, ...rec.spec.args],
    env: spec ? strings(process.env) : rec.spec.envs.map((e) => `${e.key}=${e.value}`),
    mounts: arr(s.mounts)
      .map(obj)
      .filter((m): m is Json => !!m)
      .map((m) => ({ destination: str(m.destination) ?? '', type: str(m.type) ?? '', source: str(m.source) ?? '', options: strings(m.options) })),
    hooks: hooksOf(s),
    linux: linuxContainer(rec, obj(s.linux) ?? {}, process),
    pid: rec.pid,
    rlimits: arr(process.rlimits)
      .map(obj)
      .filter((r): r is Json => !!r)
      .map((r) => ({ type: str(r.type) ?? '', hard: num(r.hard) ?? 0, soft: num(r.soft) ?? 0 })),
    createdAt: rec.createdAt,
    startedAt: rec.startedAt,
    finishedAt: rec.finishedAt,
    exitCode: rec.exitCode,
    statusReason: rec.reason,
    statusMessage: rec.message,
    CDIDevices: rec.spec.cdiDevices.map((name) => ({ name })),
    user: user
      ? { uid: num(user.uid) ?? 0, gid: num(user.gid) ?? 0, additionalGids: arr(user.additionalGids).filter((g): g is number => typeof g === 'number') }
      : { uid: rec.user.uid, gid: rec.user.gid, additionalGids: rec.user.additionalGids },
    image: { name: rec.imageRef || rec.spec.image, digest: repoDigest(rec.imageRef), configDigest: rec.imageId },
  };
  if (!msg.hooks) delete msg.hooks;
  return msg;
}

/** The NRI view of a pod: identity, metadata, cgroup parent, pinned namespaces and kubelet's pod resources. */
export function podMessage(pod: PodRecord): Input<PodSandbox> {
  const pins = pod.pins;
  const namespaces = (
    [
      ['network', pins.net],
      ['ipc', pins.ipc],
      ['uts', pins.uts],
      ['user', pins.user],
      ['pid', pins.pid],
    ] as const
  )
    .filter(([, path]) => !!path)
    .map(([type, path]) => ({ type, path: path! }));
  return {
    id: pod.id,
    name: pod.spec.metadata.name,
    uid: pod.spec.metadata.uid,
    namespace: pod.spec.metadata.namespace,
    labels: pod.spec.labels,
    annotations: pod.spec.annotations,
    runtimeHandler: pod.spec.runtimeHandler,
    linux: {
      ...(pod.spec.overhead ? { podOverhead: criResourcesToNri(pod.spec.overhead) } : {}),
      ...(pod.spec.resources ? { podResources: criResourcesToNri(pod.spec.resources) } : {}),
      cgroupParent: pod.cgroup.path || pod.spec.cgroupParent,
      cgroupsPath: pod.cgroup.path || pod.spec.cgroupParent,
      namespaces,
    },
    pid: pod.pidInit ?? 0,
    ips: pod.ips.map((ip) => ip.ip),
  };
}
