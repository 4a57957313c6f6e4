import type { CreateContainerRequest, CreateContainerResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { requireString } from '../validate.js';
import { toContainerSpec } from './container-mapping.js';

/** CreateContainer: rootfs snapshot, OCI spec and containerd record; nothing runs yet. */
export async function createContainer(containers: ContainerController, req: CreateContainerRequest): Promise<Input<CreateContainerResponse>> {
  const podId = requireString(req.podSandboxId, 'pod_sandbox_id');
  return { containerId: await containers.create(podId, toContainerSpec(req.config)) };
}
