// The points where the sandbox layer hands pods and containers to the NRI host (nri/), which may
// change a container before it is created (adjustments) or its resources on update. The sandbox
// layer depends only on this interface; the default does nothing.
import type { PodRecord, PodResources } from './pods/types.js';
import type { ContainerRecord } from './containers/types.js';

/** The OCI runtime spec as JSON (what containerd stores). */
export type OciSpecJson = Record<string, unknown>;
/** OCI LinuxResources as JSON. */
export type LinuxResourcesJson = Record<string, unknown>;

export interface NriHooks {
  /** Before the pod is listed READY; a throw fails RunPodSandbox (crisp undoes the pod). */
  runPodSandbox(pod: PodRecord): Promise<void>;
  stopPodSandbox(pod: PodRecord): Promise<void>;
  removePodSandbox(pod: PodRecord): Promise<void>;
  /**
   * Before the pod's new overhead and resources are recorded (`pod` still has the old ones); a throw
   * fails UpdatePodSandboxResources and the pod keeps them.
   */
  updatePodSandbox(pod: PodRecord, update: PodResources): Promise<void>;
  /** After the new resources were recorded. */
  postUpdatePodSandbox(pod: PodRecord): Promise<void>;
  /** Returns the spec with every plugin's adjustment applied; a throw fails CreateContainer. */
  createContainer(pod: PodRecord, container: ContainerRecord, spec: OciSpecJson): Promise<OciSpecJson>;
  postCreateContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
  startContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
  postStartContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
  /** Returns the resources with plugin updates applied. */
  updateContainer(pod: PodRecord, container: ContainerRecord, resources: LinuxResourcesJson): Promise<LinuxResourcesJson>;
  postUpdateContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
  /** After the container stopped (exit or StopContainer). */
  stopContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
  removeContainer(pod: PodRecord, container: ContainerRecord): Promise<void>;
}

/** What the NRI host may ask of the runtime: the full state for Synchronize, and unsolicited updates. */
export interface NriRuntimeAccess {
  pods(): PodRecord[];
  containers(): ContainerRecord[];
  /** The OCI spec crisp created the container with (for Synchronize's container view). */
  containerSpec(id: string): Promise<OciSpecJson>;
  updateContainerResources(id: string, resources: LinuxResourcesJson): Promise<void>;
  /** Stop a container a plugin asked to evict. */
  evictContainer(id: string, reason: string): Promise<void>;
}

export const NO_NRI: NriHooks = {
  runPodSandbox: async () => undefined,
  stopPodSandbox: async () => undefined,
  removePodSandbox: async () => undefined,
  updatePodSandbox: async () => undefined,
  postUpdatePodSandbox: async () => undefined,
  createContainer: async (_p, _c, spec) => spec,
  postCreateContainer: async () => undefined,
  startContainer: async () => undefined,
  postStartContainer: async () => undefined,
  updateContainer: async (_p, _c, r) => r,
  postUpdateContainer: async () => undefined,
  stopContainer: async () => undefined,
  removeContainer: async () => undefined,
};
