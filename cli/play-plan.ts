// `crisp play`: a Kubernetes Pod manifest → the CRI calls that run it. This module is the pure part:
// manifest in, pod config and container configs out (unit-tested); play-command.ts executes the plan.
// Types only: the daemon shares this entry point and must not load client-node (~78 MiB resident).
import type { V1Pod, V1Container, V1Volume } from '@kubernetes/client-node';
import { parseAllDocuments } from 'yaml';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { NamespaceMode, Protocol, type ContainerConfig, type LinuxContainerResources, type PodSandboxConfig } from '../gen/runtime.v1.js';
import type { Input } from '../common/proto-registry.js';

export const PLAY_LABEL = 'io.crisp.play';
/** Pod annotation: the log directory `play` made, which `play --down` removes. */
export const PLAY_LOG_DIR_ANNOTATION = 'io.crisp.play.log-directory';

export type RestartPolicy = 'Always' | 'OnFailure' | 'Never';

export interface PlannedContainer {
  name: string;
  image: string;
  config: Input<ContainerConfig>;
  pullPolicy: string;
  /** An init container with `restartPolicy: Always` (a native sidecar): started, not waited for. */
  sidecar?: boolean;
}

export interface PlayPlan {
  name: string;
  namespace: string;
  /** A fresh uid per `play` run: a replayed manifest gets its own log directory. */
  uid: string;
  pod: Input<PodSandboxConfig>;
  /** Run one after the other, each to completion (sidecars: started), before the app containers. */
  initContainers: PlannedContainer[];
  containers: PlannedContainer[];
  restartPolicy: RestartPolicy;
  logDirectory: string;
  /** This run's state directory (emptyDir volumes below it); `--down` removes `podStateDir`. */
  runDir: string;
  podStateDir: string;
  /** Host directories to create first (emptyDir volumes). */
  emptyDirs: string[];
}

/** The first Pod in a YAML stream (a Deployment or other kind is refused). */
export function parsePodManifest(text: string): V1Pod {
  const docs = parseAllDocuments(text).map((d) => {
    if (d.errors.length > 0) throw new Error(`bad YAML: ${d.errors[0]!.message.split('\n')[0]!.replace(/:$/, '')}`);
    return d.toJS() as unknown;
  });
  const kindOf = (d: unknown) => (d !== null && typeof d === 'object' && !Array.isArray(d) ? (d as { kind?: unknown }).kind : undefined);
  const pod = docs.find((d) => kindOf(d) === 'Pod');
  if (!pod) {
    const kinds = docs.filter((d) => d !== null && d !== undefined).map((d) => String(kindOf(d) ?? '(no kind)'));
    throw new Error(`no "kind: Pod" document found (${kinds.length ? `kinds: ${kinds.join(', ')}` : 'the file is empty'}); crisp play runs Pods only`);
  }
  return pod as V1Pod;
}

/** Name and namespace: all `play --down` needs (a manifest play could not run can still be taken down). */
export function podIdentity(pod: V1Pod): { name: string; namespace: string } {
  const name = pod.metadata?.name;
  if (!name) throw new Error('metadata.name is required');
  return { name, namespace: pod.metadata?.namespace ?? 'default' };
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

const RESTART_POLICIES: readonly RestartPolicy[] = ['Always', 'OnFailure', 'Never'];

export function planPod(pod: V1Pod, opts: { logRoot: string; stateDir: string; uid?: string }): PlayPlan {
  const { name, namespace } = podIdentity(pod);
  const spec = pod.spec;
  if (!spec?.containers?.length) throw new Error('spec.containers must list at least one container');
  const restartPolicy = (spec.restartPolicy ?? 'Always') as RestartPolicy;
  if (!RESTART_POLICIES.includes(restartPolicy)) throw new Error(`spec.restartPolicy "${spec.restartPolicy}" (want Always, OnFailure or Never)`);
  const names = [...(spec.initContainers ?? []), ...spec.containers].map((c) => c.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new Error(`container name "${dup}" is used twice`);
  // Kubernetes gives every pod object a new uid; so does every `play` (a manifest's uid is ignored),
  // so a replayed manifest neither appends to the last run's logs nor finds its emptyDirs.
  // `play --down` finds the pod by its label, not its uid.
  const uid = opts.uid ?? randomUUID();
  const podStateDir = join(opts.stateDir, 'play', `${namespace}_${name}`);
  const runDir = join(podStateDir, uid);
  const logDirectory = join(opts.logRoot, `${namespace}_${name}_${uid}`);
  const volumes = new Map((spec.volumes ?? []).map((v) => [v.name, volumeSource(v, runDir)]));
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
  // kubelet's namespacesForPod: the pod's options, given to the pod and to every container alike.
  const namespaceOptions = {
    network: hostNetwork ? NamespaceMode.NODE : NamespaceMode.POD,
    pid: spec.hostPID ? NamespaceMode.NODE : spec.shareProcessNamespace ? NamespaceMode.POD : NamespaceMode.CONTAINER,
    ipc: spec.hostIPC ? NamespaceMode.NODE : NamespaceMode.POD,
  };
  const podConfig: Input<PodSandboxConfig> = {
    metadata: { name, namespace, uid, attempt: 0 },
    hostname: spec.hostname ?? name,
    logDirectory,
    portMappings,
    labels: { ...(pod.metadata?.labels ?? {}), [PLAY_LABEL]: `${namespace}_${name}` },
    annotations: { ...(pod.metadata?.annotations ?? {}), [PLAY_LOG_DIR_ANNOTATION]: logDirectory },
    dnsConfig: spec.dnsConfig ? { servers: spec.dnsConfig.nameservers ?? [], searches: spec.dnsConfig.searches ?? [], options: (spec.dnsConfig.options ?? []).map((o) => (o.value ? `${o.name}:${o.value}` : o.name ?? '')) } : null,
    linux: {
      securityContext: {
        namespaceOptions,
        ...(spec.securityContext?.runAsUser !== undefined ? { runAsUser: { value: spec.securityContext.runAsUser } } : {}),
        supplementalGroups: spec.securityContext?.supplementalGroups ?? [],
      },
      sysctls: Object.fromEntries((spec.securityContext?.sysctls ?? []).map((s) => [s.name, s.value])),
    },
  };
  const plan = (c: V1Container): PlannedContainer => {
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
          namespaceOptions,
        },
      },
    };
    if (!c.image) throw new Error(`container "${c.name}": image is required`);
    return { name: c.name, image: c.image, config, pullPolicy: c.imagePullPolicy ?? 'IfNotPresent' };
  };
  const initContainers = (spec.initContainers ?? []).map((c) => {
    const p = plan(c);
    if (c.restartPolicy !== undefined && c.restartPolicy !== 'Always') throw new Error(`init container "${c.name}": restartPolicy "${c.restartPolicy}" (only Always, for a sidecar, is allowed)`);
    return c.restartPolicy === 'Always' ? { ...p, sidecar: true } : p;
  });
  const containers = spec.containers.map(plan);
  const emptyDirs = [...volumes.values()].map((v) => v.emptyDir).filter((d): d is string => d !== undefined);
  return { name, namespace, uid, pod: podConfig, initContainers, containers, restartPolicy, logDirectory, runDir, podStateDir, emptyDirs };
}

/** The container config of restart number `attempt` (kubelet's `<name>/<attempt>.log` layout). */
export function withAttempt(c: PlannedContainer, attempt: number): Input<ContainerConfig> {
  return { ...c.config, metadata: { name: c.name, attempt }, logPath: `${c.name}/${attempt}.log` };
}

/** Whether an exited app container is restarted under the pod's restartPolicy (sidecars: always). */
export function shouldRestart(policy: RestartPolicy, exitCode: number, sidecar = false): boolean {
  if (sidecar) return true;
  return policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0);
}

/**
 * kubelet's crash-loop back-off: the first restart at once, then 10 s doubling up to 5 min; a container
 * that ran for 10 minutes starts over. Returns the delay before restart number `restarts + 1`.
 */
export function restartDelayMs(restarts: number, ranForMs: number): number {
  if (restarts === 0 || ranForMs >= 10 * 60_000) return 0;
  return Math.min(10_000 * 2 ** (restarts - 1), 300_000);
}

/**
 * Whether `dir` (a pod's log-directory annotation) is the one `play` made for this pod: absolute, and
 * named `<namespace>_<name>_<uid>` after the pod it belongs to. `play --down` removes nothing else.
 */
export function isPlayLogDirectory(dir: string | undefined, pod: { namespace: string; name: string; uid: string }): dir is string {
  if (!dir || !dir.startsWith('/') || dir.split('/').includes('..') || !pod.uid) return false;
  return dir.replace(/\/+$/, '').split('/').pop() === `${pod.namespace}_${pod.name}_${pod.uid}`;
}
