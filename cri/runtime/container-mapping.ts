// CRI container messages ⇄ the sandbox domain: validation naming the field, status and list views.
import {
  ContainerState,
  MountPropagation,
  NamespaceMode,
  SecurityProfile_ProfileType,
  Signal,
  SupplementalGroupsPolicy,
  type Container,
  type ContainerConfig,
  type ContainerFilter,
  type ContainerStatus,
  type LinuxContainerResources,
  type Mount,
  type SecurityProfile,
} from '../../gen/runtime.v1.js';
import { isAbsolute, normalize } from 'node:path';
import type { Input } from '../../common/proto-registry.js';
import { invalidArgument } from '../../common/errors.js';
import { checkedResourceSpec } from './resource-checks.js';
import type { ContainerRecord, ContainerSpec, ImageVolumeSpec, MountSpec, ResourceSpec, SecurityProfileSpec } from '../../sandbox/containers/types.js';

const PROPAGATION: Record<number, MountSpec['propagation']> = {
  [MountPropagation.PROPAGATION_PRIVATE]: 'private',
  [MountPropagation.PROPAGATION_HOST_TO_CONTAINER]: 'rslave',
  [MountPropagation.PROPAGATION_BIDIRECTIONAL]: 'rshared',
};

function profile(p: SecurityProfile | null | undefined, legacy: string, field: string): SecurityProfileSpec | undefined {
  if (p) {
    const kind = ({
      [SecurityProfile_ProfileType.RuntimeDefault]: 'runtime-default',
      [SecurityProfile_ProfileType.Unconfined]: 'unconfined',
      [SecurityProfile_ProfileType.Localhost]: 'localhost',
    } as const)[p.profileType as 0 | 1 | 2];
    if (!kind) throw invalidArgument(`${field}.profile_type: unknown ${p.profileType}`);
    if (kind === 'localhost' && !p.localhostRef) throw invalidArgument(`${field}.localhost_ref is required for Localhost`);
    return { kind, localhostRef: p.localhostRef };
  }
  // The deprecated string form: "runtime/default", "unconfined", "localhost/<path>".
  if (!legacy) return undefined;
  if (legacy === 'unconfined') return { kind: 'unconfined', localhostRef: '' };
  if (legacy === 'runtime/default' || legacy === 'docker/default') return { kind: 'runtime-default', localhostRef: '' };
  if (legacy.startsWith('localhost/')) return { kind: 'localhost', localhostRef: legacy.slice('localhost/'.length) };
  throw invalidArgument(`${field}: unknown profile "${legacy}"`);
}

export function toResourceSpec(r: LinuxContainerResources | null | undefined): ResourceSpec {
  return {
    cpuPeriod: r?.cpuPeriod ?? 0,
    cpuQuota: r?.cpuQuota ?? 0,
    cpuShares: r?.cpuShares ?? 0,
    memoryLimitInBytes: r?.memoryLimitInBytes ?? 0,
    memorySwapLimitInBytes: r?.memorySwapLimitInBytes ?? 0,
    oomScoreAdj: r?.oomScoreAdj ?? 0,
    cpusetCpus: r?.cpusetCpus ?? '',
    cpusetMems: r?.cpusetMems ?? '',
    hugepageLimits: (r?.hugepageLimits ?? []).map((h) => ({ pageSize: h.pageSize, limit: h.limit })),
    unified: r?.unified ?? {},
  };
}

/** An image volume: read-only always (kubelet never asks otherwise), a sub path that stays inside. */
function imageVolume(m: Mount, i: number): ImageVolumeSpec {
  const field = `config.mounts[${i}]`;
  if (!m.readonly) throw invalidArgument(`${field}.readonly: an image volume is always read-only; readonly must be true`);
  const subPath = m.imageSubPath;
  if (subPath) {
    if (isAbsolute(subPath) || subPath.includes('\0') || normalize(subPath).split('/').includes('..')) {
      throw invalidArgument(`${field}.image_sub_path: "${subPath}" must be a relative path inside the image`);
    }
  }
  return { image: m.image!.image, subPath: subPath ? normalize(subPath) : '' };
}

export function toContainerSpec(config: ContainerConfig | null): ContainerSpec {
  if (!config) throw invalidArgument('config is required');
  if (!config.metadata?.name) throw invalidArgument('config.metadata.name is required');
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/.test(config.metadata.name)) throw invalidArgument(`config.metadata.name: "${config.metadata.name}" is not a valid name`);
  if (!config.image?.image) throw invalidArgument('config.image.image is required');
  const sc = config.linux?.securityContext;
  const field = 'config.linux.security_context';
  if (sc?.runAsUser && sc.runAsUsername) throw invalidArgument(`${field}: run_as_user and run_as_username are mutually exclusive`);
  if (sc?.runAsGroup && !sc.runAsUser && !sc.runAsUsername) throw invalidArgument(`${field}.run_as_group needs run_as_user or run_as_username`);
  // Values are bytes on the wire (cri-api v0.35.7+: Secrets may hold any bytes); execve(2) takes
  // NUL-terminated strings, so a NUL is the one thing an environment cannot carry.
  const envs = config.envs.map((e, i) => {
    if (!e.key || e.key.includes('=') || e.key.includes('\0')) throw invalidArgument(`config.envs[${i}].key: ${JSON.stringify(e.key)} is not a valid variable name`);
    if (e.value.includes(0)) throw invalidArgument(`config.envs[${i}].value: contains a NUL byte, which no process environment can hold`);
    return { key: e.key, value: e.value.toString('utf8') };
  });
  const pidMode = sc?.namespaceOptions?.pid ?? NamespaceMode.CONTAINER;
  return {
    metadata: { name: config.metadata.name, attempt: config.metadata.attempt },
    image: config.image.image,
    ...(config.image.userSpecifiedImage ? { userSpecifiedImage: config.image.userSpecifiedImage } : {}),
    command: config.command,
    args: config.args,
    workingDir: config.workingDir,
    envs,
    mounts: config.mounts.map((m, i) => {
      const image = m.image?.image ? imageVolume(m, i) : undefined;
      const propagation = PROPAGATION[m.propagation];
      if (!propagation) throw invalidArgument(`config.mounts[${i}].propagation: unknown ${m.propagation}`);
      if (m.recursiveReadOnly && (!m.readonly || propagation !== 'private')) {
        throw invalidArgument(`config.mounts[${i}].recursive_read_only needs readonly and private propagation`);
      }
      return {
        containerPath: m.containerPath,
        hostPath: m.hostPath,
        readonly: m.readonly,
        recursiveReadOnly: m.recursiveReadOnly,
        propagation,
        selinuxRelabel: m.selinuxRelabel,
        uidMappings: m.uidMappings.map((x) => ({ containerId: x.containerId, hostId: x.hostId, length: x.length })),
        gidMappings: m.gidMappings.map((x) => ({ containerId: x.containerId, hostId: x.hostId, length: x.length })),
        ...(image ? { image } : {}),
      };
    }),
    devices: config.devices.map((d) => ({ containerPath: d.containerPath, hostPath: d.hostPath, permissions: d.permissions })),
    labels: config.labels,
    annotations: config.annotations,
    logPath: config.logPath,
    stdin: config.stdin,
    stdinOnce: config.stdinOnce,
    tty: config.tty,
    resources: config.linux?.resources ? checkedResourceSpec(config.linux.resources, 'config.linux.resources') : toResourceSpec(undefined),
    security: {
      capabilities: {
        add: sc?.capabilities?.addCapabilities ?? [],
        drop: sc?.capabilities?.dropCapabilities ?? [],
        addAmbient: sc?.capabilities?.addAmbientCapabilities ?? [],
      },
      privileged: sc?.privileged ?? false,
      ...(sc?.runAsUser ? { runAsUser: sc.runAsUser.value } : {}),
      ...(sc?.runAsGroup ? { runAsGroup: sc.runAsGroup.value } : {}),
      runAsUsername: sc?.runAsUsername ?? '',
      readonlyRootfs: sc?.readonlyRootfs ?? false,
      supplementalGroups: sc?.supplementalGroups ?? [],
      supplementalGroupsPolicy: sc?.supplementalGroupsPolicy === SupplementalGroupsPolicy.Strict ? 'strict' : 'merge',
      noNewPrivs: sc?.noNewPrivs ?? false,
      ...(sc && sc.maskedPaths.length > 0 ? { maskedPaths: sc.maskedPaths } : {}),
      ...(sc && sc.readonlyPaths.length > 0 ? { readonlyPaths: sc.readonlyPaths } : {}),
      ...optional('seccomp', profile(sc?.seccomp, sc?.seccompProfilePath ?? '', `${field}.seccomp`)),
      ...optional('apparmor', profile(sc?.apparmor, sc?.apparmorProfile ?? '', `${field}.apparmor`)),
      pidMode: ({ [NamespaceMode.POD]: 'pod', [NamespaceMode.CONTAINER]: 'container', [NamespaceMode.NODE]: 'node', [NamespaceMode.TARGET]: 'target' } as const)[
        pidMode as 0 | 1 | 2 | 3
      ],
      targetId: sc?.namespaceOptions?.targetId ?? '',
    },
    stopSignal: config.stopSignal === Signal.RUNTIME_DEFAULT ? '' : (Signal[config.stopSignal] ?? ''),
    cdiDevices: config.CDIDevices.map((d) => d.name),
  };
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

const STATE: Record<ContainerRecord['state'], ContainerState> = {
  created: ContainerState.CONTAINER_CREATED,
  running: ContainerState.CONTAINER_RUNNING,
  exited: ContainerState.CONTAINER_EXITED,
  unknown: ContainerState.CONTAINER_UNKNOWN,
};

export function toCriContainer(c: ContainerRecord): Input<Container> {
  return {
    id: c.id,
    podSandboxId: c.podId,
    metadata: c.spec.metadata,
    image: { image: c.spec.image, userSpecifiedImage: c.spec.userSpecifiedImage ?? '' },
    imageRef: c.imageRef,
    imageId: c.imageId,
    state: STATE[c.state],
    createdAt: c.createdAt,
    labels: c.spec.labels,
    annotations: c.spec.annotations,
  };
}

export function toCriContainerStatus(c: ContainerRecord): Input<ContainerStatus> {
  const r = c.spec.resources;
  const sig = Signal[c.imageStopSignal as keyof typeof Signal] as Signal | undefined;
  return {
    id: c.id,
    metadata: c.spec.metadata,
    state: STATE[c.state],
    createdAt: c.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    exitCode: c.exitCode,
    image: { image: c.spec.image, userSpecifiedImage: c.spec.userSpecifiedImage ?? '' },
    imageRef: c.imageRef,
    imageId: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: c.spec.labels,
    annotations: c.spec.annotations,
    mounts: c.spec.mounts.map((m) => ({
      ...(m.image ? { image: { image: m.image.image, imageRef: m.image.imageRef ?? '' }, imageSubPath: m.image.subPath } : {}),
      containerPath: m.containerPath,
      hostPath: m.hostPath,
      readonly: m.readonly,
      recursiveReadOnly: m.recursiveReadOnly,
      selinuxRelabel: m.selinuxRelabel,
      propagation: { private: 0, rslave: 1, rshared: 2 }[m.propagation],
    })),
    logPath: c.logPath,
    resources: { linux: { ...r } },
    user: { linux: { uid: c.user.uid, gid: c.user.gid, supplementalGroups: [...new Set([c.user.gid, ...c.user.additionalGids])] } },
    stopSignal: sig ?? Signal.SIGTERM,
  };
}

export function matchesContainerFilter(c: ContainerRecord, f: ContainerFilter | null | undefined): boolean {
  if (!f) return true;
  if (f.id && !c.id.startsWith(f.id)) return false;
  if (f.podSandboxId && !c.podId.startsWith(f.podSandboxId)) return false;
  if (f.state && STATE[c.state] !== f.state.state) return false;
  for (const [k, v] of Object.entries(f.labelSelector)) if (c.spec.labels[k] !== v) return false;
  return true;
}
