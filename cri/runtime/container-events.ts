// GetContainerEvents: a live stream of container lifecycle events with the pod's and its containers'
// status, as evented PLEG wants them. Events are queued per subscriber so a slow reader never blocks
// the daemon; a reader too far behind is cut off (kubelet then relists).
import { ContainerEventType, type ContainerEventResponse, type GetEventsRequest } from '../../gen/runtime.v1.js';
import type { ServerStream, CallInfo } from '../../common/grpc-server.js';
import type { ContainerController, ContainerEvent } from '../../sandbox/containers/controller.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { CrispError } from '../../common/errors.js';
import { toCriContainerStatus } from './container-mapping.js';
import { toCriPodStatus } from './pod-mapping.js';
import type { Input } from '../../common/proto-registry.js';

const KIND: Record<ContainerEvent['kind'], ContainerEventType> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

const MAX_BACKLOG = 10_000;

export async function getContainerEvents(
  containers: ContainerController,
  pods: PodController,
  _req: GetEventsRequest,
  stream: ServerStream<ContainerEventResponse>,
  call: CallInfo,
): Promise<void> {
  const queue: Input<ContainerEventResponse>[] = [];
  let wake: (() => void) | undefined;
  let overflow = false;
  const unsubscribe = containers.onEvent((e) => {
    if (queue.length >= MAX_BACKLOG) {
      overflow = true;
    } else {
      const pod = pods.store.get(e.container.podId);
      queue.push({
        containerId: e.container.id,
        containerEventType: KIND[e.kind],
        createdAt: e.at,
        podSandboxStatus: pod ? toCriPodStatus(pod) : null,
        containersStatuses: containers.byPod(e.container.podId).map(toCriContainerStatus),
      });
    }
    wake?.();
  });
  try {
    while (!call.signal.aborted) {
      if (overflow) throw new CrispError('RESOURCE_EXHAUSTED', `event reader fell ${MAX_BACKLOG} events behind; reconnect and relist`);
      const next = queue.shift();
      if (next) {
        await stream.write(next);
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        call.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
  }
}
