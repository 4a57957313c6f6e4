import type { UpdateContainerResourcesRequest, UpdateContainerResourcesResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { invalidArgument } from '../../common/errors.js';
import { requireString } from '../validate.js';
import { checkedResourceSpec } from './resource-checks.js';

/** UpdateContainerResources: applied to the running task's cgroup and remembered for status. */
export async function updateContainerResources(c: ContainerController, req: UpdateContainerResourcesRequest): Promise<Input<UpdateContainerResourcesResponse>> {
  const id = requireString(req.containerId, 'container_id');
  if (!req.linux) throw invalidArgument('linux is required');
  await c.updateResources(id, checkedResourceSpec(req.linux, 'linux'));
  return {};
}
