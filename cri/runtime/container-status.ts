import type { Container, ContainerStatus, ContainerStatusRequest, ContainerStatusResponse, ListContainersRequest, ListContainersResponse } from '../../gen/runtime.v1.js';
import type { ContainerRecord } from '../../sandbox/containers/types.js';
import type { Encoded } from '../../common/grpc-server.js';
import { EncodedList } from './encoded-list.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import { requireString } from '../validate.js';
import { matchesContainerFilter, toCriContainer, toCriContainerStatus } from './container-mapping.js';

/** ContainerStatus; verbose info carries the OCI spec, pid and where the log goes. */
export async function containerStatus(c: ContainerController, req: ContainerStatusRequest): Promise<Input<ContainerStatusResponse>> {
  const rec = c.get(requireString(req.containerId, 'container_id'));
  const info: Record<string, string> = {};
  if (req.verbose) {
    info.info = JSON.stringify({
      pid: rec.pid,
      sandboxID: rec.podId,
      runtimeSpec: await c.ociSpec(rec.id).catch(() => null),
      snapshotKey: rec.snapshotKey,
      cgroupsPath: rec.cgroupsPath,
      logging: rec.logPath ? 'shim-side logger (crisp-logger)' : 'console log only (no log_path), bounded, for attach',
      consoleLog: rec.logPath ? null : c.outputLog(rec).logPath,
    });
  }
  const [status] = await withImageNames(c, [toCriContainerStatus(rec)]);
  return { status: status!, info };
}

/**
 * Container statuses name their image by its first tag where it still has one, as containerd's CRI
 * does: kubelet creates containers by image id and shows this name in the pod's status. Without a tag
 * (or when the images cannot be read) the image stays as the container was created with it.
 */
export async function withImageNames(c: ContainerController, statuses: Input<ContainerStatus>[]): Promise<Input<ContainerStatus>[]> {
  return Promise.all(
    statuses.map(async (s) => {
      const tag = await c.imageTag(s.imageId ?? '').catch(() => undefined); // unreadable images: the name it was created with
      return tag ? { ...s, image: { ...s.image, image: tag } } : s;
    }),
  );
}

/** ListContainersResponse.containers is field 1; each container's encoding is kept while it is unchanged. */
const containerList = new EncodedList<ContainerRecord, Container>('runtime.v1.Container', 1, toCriContainer);

export async function listContainers(c: ContainerController, req: ListContainersRequest): Promise<Encoded<ListContainersResponse>> {
  return containerList.answer(c.list().filter((r) => matchesContainerFilter(r, req.filter)));
}
