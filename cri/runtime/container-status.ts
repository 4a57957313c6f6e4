import type { Container, ContainerStatusRequest, ContainerStatusResponse, ListContainersRequest, ListContainersResponse } from '../../gen/runtime.v1.js';
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
  return { status: toCriContainerStatus(rec), info };
}

/** ListContainersResponse.containers is field 1; each container's encoding is kept while it is unchanged. */
const containerList = new EncodedList<ContainerRecord, Container>('runtime.v1.Container', 1, toCriContainer);

export async function listContainers(c: ContainerController, req: ListContainersRequest): Promise<Encoded<ListContainersResponse>> {
  return containerList.answer(c.list().filter((r) => matchesContainerFilter(r, req.filter)));
}
