import type { PodSandboxStatusRequest, PodSandboxStatusResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { nowNanos } from '../../common/time.js';
import { requireString } from '../validate.js';
import { toCriPodStatus } from './pod-mapping.js';
import { toCriContainerStatus } from './container-mapping.js';
import { withImageNames } from './container-status.js';

/**
 * PodSandboxStatus with the statuses of the pod's containers and the time they were taken (kubelet's
 * Evented PLEG trusts both); verbose info says how the pod is built (pins, cgroup, no pause container).
 */
export async function podSandboxStatus(pods: PodController, containers: ContainerController, req: PodSandboxStatusRequest): Promise<Input<PodSandboxStatusResponse>> {
  const pod = pods.get(requireString(req.podSandboxId, 'pod_sandbox_id'));
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      pauseContainer: false,
      pinnedNamespaces: pod.pins,
      pidNamespaceHolder: pod.pidInit !== undefined ? { pid: pod.pidInit, why: 'shareProcessNamespace needs a pid 1 for the pod' } : null,
      cgroup: pod.cgroup,
      shm: pod.shmPath ?? null,
      files: pod.files,
      ips: pod.ips,
      networkAttached: pod.networkAttached,
      userNamespace: pod.spec.namespaces.userns ? { ...pod.spec.namespaces.userns, mounts: pods.usernsInfo(pod) } : null,
      // Kubelet's pod-level resources as last given (RunPodSandbox or UpdatePodSandboxResources).
      overhead: pod.spec.overhead ?? null,
      resources: pod.spec.resources ?? null,
      notReadyReason: pod.notReadyReason ?? null,
      runtimeHandler: pod.spec.runtimeHandler,
    });
  }
  const timestamp = nowNanos();
  return { status: toCriPodStatus(pod), info, containersStatuses: await withImageNames(containers, containers.byPod(pod.id).map(toCriContainerStatus)), timestamp };
}
