import type { UpdatePodSandboxResourcesRequest, UpdatePodSandboxResourcesResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { requireString } from '../validate.js';
import { toPodResources } from './pod-mapping.js';

/**
 * UpdatePodSandboxResources (in-place pod resize): kubelet reports the pod's new overhead and
 * resources. NRI plugins may refuse (the pod then keeps its old values); unknown pods are NOT_FOUND,
 * pods that are not ready FAILED_PRECONDITION.
 */
export async function updatePodSandboxResources(pods: PodController, req: UpdatePodSandboxResourcesRequest): Promise<Input<UpdatePodSandboxResourcesResponse>> {
  const id = requireString(req.podSandboxId, 'pod_sandbox_id');
  await pods.updateResources(id, toPodResources(req.overhead, req.resources, ''));
  return {};
}
