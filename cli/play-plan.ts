// `crisp play`: a Kubernetes Pod manifest → the CRI calls that run it. This module is the pure part:
// manifest in, pod config and container configs out (unit-tested); play-command.ts executes the plan.
// Types only: the daemon shares this entry point and must not load client-node (~78 MiB resident).
import type { V1Pod, V1Container, V1Volume } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { NamespaceMode, Protocol, type ContainerConfig, type LinuxContainerResources, type PodSandboxConfig } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';

export const PLAY_LABEL = 'io.crisp.play';

export interface PlayPlan {
  name: string;
  namespace: string;
  pod: Input<PodSandboxConfig>;
  containers: { image: string; config: Input<ContainerConfig>; pullPolicy: string }[];
  /** Host directories to create first (emptyDir volumes). */
  emptyDirs: string[];
}

/** The first Pod in a YAML stream (a Deployment or other kind is refused). */
export function parsePodManifest(text: string): V1Pod {
  const docs = parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`bad YAML: ${d.errors[0]!.message}`);
    return d.toJS() as { kind?: string } | null;
  });
  const pod = docs.find((d) => d && d.kind === 'Pod');
  if (!pod) throw new Error(`no "kind: Pod" document found (kinds: ${docs.map((d) => d?.kind ?? '?').join(', ') || 'none'})`);
  return pod as V1Pod;
}

/** Kubernetes quantity → bytes / millicores. */
export function parseQuantity(q: string | number): number {
  if (typeof q === 'number') return q;
  const m = /^([0-9.]+)([a-zA-Z]*)$/.exec(q.trim());
  if (!m) throw new Error(`bad quantity "${q}"`);
  const n = Number(m[1]);
  const unit = m[2]!;
  const bin: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  const dec: Record<string, number> = { '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, m: 1e-3 };
  const f = bin[unit] ?? dec[unit];
  if (f === undefined) throw new Error(`bad quantity unit "${unit}" in "${q}"`);
  return n * f;
}

function resources(c: V1Container): Input<LinuxContainerResources> | null {
  const limits = c.resources?.limits ?? {};
  const requests = c.resources?.requests ?? {};
  const out: Input<LinuxContainerResources> = {};
  if (limits.memory !== undefined) out.memoryLimitInBytes = Math.round(parseQuantity(limits.memory));
  const cpuLimit = limits.cpu !== undefined ? parseQuantity(limits.cpu) : undefined;
  if (cpuLimit !== undefined) {
    out.cpuPeriod = 100_000;
    out.cpuQuota = Math.max(1000, Math.round(cpuLimit * 100_000));
  }
  const cpuRequest = requests.cpu !== undefined ? parseQuantity(requests.cpu) : cpuLimit;
  if (cpuRequest !== undefined) out.cpuShares = Math.max(2, Math.round(cpuRequest * 1024));
  return Object.keys(out).length > 0 ? out : null;
}

function volumeSource(v: V1Volume, podDir: string): { hostPath: string; emptyDir?: string } {
  if (v.hostPath?.path) return { hostPath: v.hostPath.path };
  if (v.emptyDir) {
    const dir = join(podDir, 'volumes', v.name);
    return { hostPath: dir, emptyDir: dir };
  }
  throw new Error(`volume "${v.name}": only hostPath and emptyDir volumes are supported by crisp play`);
}

export function planPod(pod: V1Pod, opts: { logRoot: string; stateDir: string }): PlayPlan {
  const name = pod.metadata?.name;
  if (!name) throw new Error('metadata.name is required');
  const namespace = pod.metadata?.namespace ?? 'default';
  const spec = pod.spec;
  if (!spec?.containers?.length) throw new Error('spec.containers must list at least one container');
  // A stable uid per name+namespace, so `play --down` finds what `play` made.
  const uid = pod.metadata?.uid ?? createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 32);
  const podDir = join(opts.stateDir, 'play', `${namespace}_${name}`);
  const logDirectory = join(opts.logRoot, `${namespace}_${name}_${uid}`);
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, volumeSource(v, podDir)]));
  const portMappings = spec.containers.flatMap((c) =>
    (c.ports ?? [])
      .filter((p) => p.hostPort)
      .map((p) => ({
        protocol: p.protocol === 'UDP' ? Protocol.UDP : p.protocol === 'SCTP' ? Protocol.SCTP : Protocol.TCP,
        containerPort: p.containerPort,
        hostPort: p.hostPort!,
        hostIp: p.hostIP ?? '',
      })),
  );
  const hostNetwork = spec.hostNetwork === true;
  const podConfig: Input<PodSandboxConfig> = {
    metadata: { name, namespace, uid, attempt: 0 },
    hostname: spec.hostname ?? name,
    logDirectory,
    portMappings,
    labels: { ...(pod.metadata?.labels ?? {}), [PLAY_LABEL]: `${namespace}_${name}` },
    annotations: pod.metadata?.annotations ?? {},
    dnsConfig: spec.dnsConfig ? { servers: spec.dnsConfig.nameservers ?? [], searches: spec.dnsConfig.searches ?? [], options: (spec.dnsConfig.options ?? []).map((o) => (o.value ? `${o.name}:${o.value}` : o.name ?? '')) } : null,
    linux: {
      securityContext: {
        namespaceOptions: {
          network: hostNetwork ? NamespaceMode.NODE : NamespaceMode.POD,
          pid: spec.hostPID ? NamespaceMode.NODE : spec.shareProcessNamespace ? NamespaceMode.POD : NamespaceMode.CONTAINER,
          ipc: spec.hostIPC ? NamespaceMode.NODE : NamespaceMode.POD,
        },
        ...(spec.securityContext?.runAsUser !== undefined ? { runAsUser: { value: spec.securityContext.runAsUser } } : {}),
        supplementalGroups: spec.securityContext?.supplementalGroups ?? [],
      },
      sysctls: Object.fromEntries((spec.securityContext?.sysctls ?? []).map((s) => [s.name, s.value])),
    },
  };
  const containers = spec.containers.map((c) => {
    const sc = c.securityContext;
    const podSc = spec.securityContext;
    const runAsUser = sc?.runAsUser ?? podSc?.runAsUser;
    const runAsGroup = sc?.runAsGroup ?? podSc?.runAsGroup;
    const config: Input<ContainerConfig> = {
      metadata: { name: c.name, attempt: 0 },
      image: { image: c.image ?? '' },
      command: c.command ?? [],
      args: c.args ?? [],
      workingDir: c.workingDir ?? '',
      envs: (c.env ?? []).filter((e) => e.value !== undefined).map((e) => ({ key: e.name, value: Buffer.from(e.value!) })),
      mounts: (c.volumeMounts ?? []).map((m) => {
        const v = volumes.get(m.name);
        if (!v) throw new Error(`container "${c.name}": volumeMount "${m.name}" names no volume`);
        return { containerPath: m.mountPath, hostPath: v.hostPath, readonly: m.readOnly ?? false };
      }),
      labels: { [PLAY_LABEL]: `${namespace}_${name}` },
      annotations: {},
      logPath: `${c.name}/0.log`,
      stdin: c.stdin ?? false,
      stdinOnce: c.stdinOnce ?? false,
      tty: c.tty ?? false,
      linux: {
        resources: resources(c),
        securityContext: {
          privileged: sc?.privileged ?? false,
          readonlyRootfs: sc?.readOnlyRootFilesystem ?? false,
          ...(runAsUser !== undefined ? { runAsUser: { value: runAsUser } } : {}),
          ...(runAsGroup !== undefined && runAsUser !== undefined ? { runAsGroup: { value: runAsGroup } } : {}),
          capabilities: { addCapabilities: sc?.capabilities?.add ?? [], dropCapabilities: sc?.capabilities?.drop ?? [] },
          noNewPrivs: sc?.allowPrivilegeEscalation === false,
          supplementalGroups: podSc?.supplementalGroups ?? [],
        },
      },
    };
    return { image: c.image ?? '', config, pullPolicy: c.imagePullPolicy ?? 'IfNotPresent' };
  });
  const emptyDirs = [...volumes.values()].map((v) => v.emptyDir).filter((d): d is string => d !== undefined);
  return { name, namespace, pod: podConfig, containers, emptyDirs };
}
