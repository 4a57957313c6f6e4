// Domain types of a container (no gRPC types): the validated CreateContainer request, and the
// persisted record of what crisp made of it.
import type { IdMapping } from '../../native/nshelper.js';

export type Propagation = 'private' | 'rslave' | 'rshared';

export interface MountSpec {
  containerPath: string;
  hostPath: string;
  readonly: boolean;
  /** Read-only all the way down (mount_setattr AT_RECURSIVE); requires readonly and private propagation. */
  recursiveReadOnly: boolean;
  propagation: Propagation;
  selinuxRelabel: boolean;
  uidMappings: IdMapping[];
  gidMappings: IdMapping[];
  /** An image volume (Kubernetes ImageVolume): the image's rootfs, read-only, instead of hostPath. */
  image?: ImageVolumeSpec;
}

export interface ImageVolumeSpec {
  /** The image as kubelet named it (a reference or an image id). */
  image: string;
  /** A directory inside the image to mount instead of its root ("" = the root). */
  subPath: string;
  /** The image id it resolved to at CreateContainer (what PullImage returned as image_ref). */
  imageRef?: string;
}

export interface DeviceSpec {
  containerPath: string;
  hostPath: string;
  /** Subset of "rwm". */
  permissions: string;
}

/** Zero / empty means "not set", as in CRI. */
export interface ResourceSpec {
  cpuPeriod: number;
  cpuQuota: number;
  cpuShares: number;
  memoryLimitInBytes: number;
  memorySwapLimitInBytes: number;
  oomScoreAdj: number;
  cpusetCpus: string;
  cpusetMems: string;
  hugepageLimits: { pageSize: string; limit: number }[];
  unified: Record<string, string>;
}

export interface SecurityProfileSpec {
  kind: 'runtime-default' | 'unconfined' | 'localhost';
  /** For localhost: the seccomp profile file (absolute path) or AppArmor profile name. */
  localhostRef: string;
}

export interface ContainerSecurity {
  capabilities: { add: string[]; drop: string[]; addAmbient: string[] };
  privileged: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  runAsUsername: string;
  readonlyRootfs: boolean;
  supplementalGroups: number[];
  supplementalGroupsPolicy: 'merge' | 'strict';
  noNewPrivs: boolean;
  /** Undefined: crisp's defaults (none when privileged). */
  maskedPaths?: string[];
  readonlyPaths?: string[];
  /** Undefined: unconfined (as Kubernetes without a profile). */
  seccomp?: SecurityProfileSpec;
  apparmor?: SecurityProfileSpec;
  /** The container's own pid namespace choice (POD = the pod's, CONTAINER = its own, NODE = host). */
  pidMode: 'pod' | 'container' | 'node' | 'target';
  /** For pidMode target: the container whose pid namespace to join. */
  targetId: string;
}

export interface ContainerSpec {
  metadata: { name: string; attempt: number };
  /** The image as the request named it (id, tag or digest). */
  image: string;
  /** The image as the user wrote it in the pod spec (kubelet's ImageSpec.user_specified_image). */
  userSpecifiedImage?: string;
  command: string[];
  args: string[];
  workingDir: string;
  envs: { key: string; value: string }[];
  mounts: MountSpec[];
  devices: DeviceSpec[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
  /** Relative to the pod's log directory; "" = no log. */
  logPath: string;
  stdin: boolean;
  stdinOnce: boolean;
  tty: boolean;
  resources: ResourceSpec;
  security: ContainerSecurity;
  /** Signal name ("SIGTERM") or "" for the image's or the runtime default. */
  stopSignal: string;
  cdiDevices: string[];
}

/** The process identity crisp resolved for the container's first process. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  additionalGids: number[];
  /** The user name when the image's /etc/passwd knows it. */
  username?: string;
  home?: string;
}

export type ContainerState = 'created' | 'running' | 'exited' | 'unknown';

export interface ContainerRecord {
  id: string;
  podId: string;
  spec: ContainerSpec;
  /** The image id (config digest) and the reference crisp resolved it from. */
  imageId: string;
  imageRef: string;
  state: ContainerState;
  createdAt: number;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: string;
  message: string;
  /** Absolute log path ("" = none). */
  logPath: string;
  pid: number;
  /** Persistent per-container directory. */
  dir: string;
  user: ResolvedUser;
  /** Signal the image asked for (StopSignal in its config), if any. */
  imageStopSignal: string;
  /** The snapshot key of the rootfs (= the container id). */
  snapshotKey: string;
  /** cgroupsPath as given to runc. */
  cgroupsPath: string;
}
