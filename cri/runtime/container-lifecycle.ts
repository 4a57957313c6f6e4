// StartContainer, StopContainer, RemoveContainer, ReopenContainerLog: thin mappings onto the controller.
import type {
  StartContainerRequest,
  StartContainerResponse,
  StopContainerRequest,
  StopContainerResponse,
  RemoveContainerRequest,
  RemoveContainerResponse,
  ReopenContainerLogRequest,
  ReopenContainerLogResponse,
} from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { invalidArgument } from '../../common/errors.js';
import { requireString } from '../validate.js';

export async function startContainer(c: ContainerController, req: StartContainerRequest): Promise<Input<StartContainerResponse>> {
  await c.start(requireString(req.containerId, 'container_id'));
  return {};
}

/** StopContainer: idempotent; stopped and unknown containers are not an error (CRI). */
export async function stopContainer(c: ContainerController, req: StopContainerRequest): Promise<Input<StopContainerResponse>> {
  if (req.timeout < 0) throw invalidArgument('timeout must not be negative');
  await c.stop(requireString(req.containerId, 'container_id'), req.timeout);
  return {};
}

/** RemoveContainer: idempotent; running containers are killed first. */
export async function removeContainer(c: ContainerController, req: RemoveContainerRequest): Promise<Input<RemoveContainerResponse>> {
  await c.remove(requireString(req.containerId, 'container_id'));
  return {};
}

export async function reopenContainerLog(c: ContainerController, req: ReopenContainerLogRequest): Promise<Input<ReopenContainerLogResponse>> {
  await c.reopenLog(requireString(req.containerId, 'container_id'));
  return {};
}
