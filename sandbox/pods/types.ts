// Domain types of a pod (no gRPC types here): what was asked for, and what crisp made of it.
import type { PodIp, PortMapping, DnsConfig } from '../../cni/index.js';
import type { IdMapping } from '../../native/nshelper.js';
import type { ResourceSpec } from '../containers/types.js';

export type NamespaceMode = 'pod' | 'container' | 'node';

export interface PodNamespaces {
  network: 'pod' | 'node';
  pid: NamespaceMode;
  ipc: 'pod' | 'node';
  /** Set for user-namespace pods (mode POD). */
  userns?: { uids: IdMapping[]; gids: IdMapping[] };
}

export interface PodMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}

/** A validated RunPodSandbox request. */
export interface PodSpec {
  metadata: PodMetadata;
  hostname: string;
  logDirectory: string;
  dns?: DnsConfig;
  portMappings: PortMapping[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  cgroupParent: string;
  sysctls: Record<string, string>;
  namespaces: PodNamespaces;
  runtimeHandler: string;
  privileged: boolean;
  /** Size of the pod's /dev/shm in bytes. */
  shmSize: number;
  /** The runtime class overhead kubelet accounts for the pod (RunPodSandbox, then UpdatePodSandboxResources). */
  overhead?: ResourceSpec;
  /** The sum of the pod's container resources, as kubelet last gave it. */
  resources?: ResourceSpec;
}

/** The pod-level resources kubelet reports; absent means it gave none. */
export type PodResources = Pick<PodSpec, 'overhead' | 'resources'>;

export type PodState = 'ready' | 'notready';

/** Paths of the pinned namespaces (absent: the host's is used). */
export interface PinnedPaths {
  net?: string;
  ipc?: string;
  uts?: string;
  user?: string;
  /** The pod-wide pid namespace (shareProcessNamespace), held by a tiny init. */
  pid?: string;
}

export interface PodRecord {
  id: string;
  spec: PodSpec;
  state: PodState;
  /** Nanoseconds since the epoch. */
  createdAt: number;
  /** Persistent per-pod directory: record, hostname, hosts, resolv.conf. */
  dir: string;
  /** Runtime directory: pinned namespaces, shm. */
  runDir: string;
  pins: PinnedPaths;
  /** The pod's /dev/shm (a size-limited tmpfs), unless hostIPC. */
  shmPath?: string;
  files: { hostname: string; hosts: string; resolvConf: string };
  ips: PodIp[];
  /** Whether CNI ADD succeeded and DEL has not run yet. */
  networkAttached: boolean;
  /** The cgroup crisp created for the pod (cgroupfs path or systemd slice), if it created one. */
  cgroup: { path: string; created: boolean };
  /** pid of the pod's pid-namespace holder (shareProcessNamespace), if any. */
  pidInit?: number;
  /** Why the pod is NOTREADY, when crisp knows. */
  notReadyReason?: string;
}

/** The unique name kubelet's metadata gives a pod. */
export function podFullName(m: PodMetadata): string {
  return `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;
}
