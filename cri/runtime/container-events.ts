// GetContainerEvents: a live stream of container and pod sandbox lifecycle events, each with the pod's
// and its containers' status, as evented PLEG wants them (a sandbox event carries the pod id as its
// container id, as containerd sends it). Events are queued per subscriber so a slow reader never
// blocks the daemon; a reader too far behind is cut off (kubelet then relists).
import { ContainerEventType, type ContainerEventResponse, type GetEventsRequest } from '../../gen/runtime.v1.js';
import type { ServerStream, CallInfo } from '../../common/grpc-server.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import { CrispError } from '../../common/errors.js';
import { toCriContainerStatus } from './container-mapping.js';
import { withImageNames } from './container-status.js';
import { toCriPodStatus } from './pod-mapping.js';
import type { Input } from '../../common/proto-registry.js';

type Kind = 'created' | 'started' | 'stopped' | 'deleted';

const EVENT_TYPE: Record<Kind, ContainerEventType> = {
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
  const push = (id: string, kind: Kind, at: number, podId: string, pod: PodRecord | undefined) => {
    if (queue.length >= MAX_BACKLOG) {
      overflow = true;
    } else {
      queue.push({
        containerId: id,
        containerEventType: EVENT_TYPE[kind],
        createdAt: at,
        podSandboxStatus: pod ? toCriPodStatus(pod) : null,
        containersStatuses: containers.byPod(podId).map(toCriContainerStatus),
      });
    }
    wake?.();
  };
  const unsubscribe = [
    containers.onEvent((e) => push(e.container.id, e.kind, e.at, e.container.podId, pods.store.get(e.container.podId))),
    pods.onEvent((e) => push(e.pod.id, e.kind, e.at, e.pod.id, e.pod)),
  ];
  // One abort listener for the whole stream, not one per wait.
  const onAbort = () => wake?.();
  call.signal.addEventListener('abort', onAbort, { once: true });
  try {
    while (!call.signal.aborted) {
      if (overflow) throw new CrispError('RESOURCE_EXHAUSTED', `event reader fell ${MAX_BACKLOG} events behind; reconnect and relist`);
      const next = queue.shift();
      if (next) {
        // The statuses are as they were at the event; only their image names are looked up now.
        await stream.write({ ...next, containersStatuses: await withImageNames(containers, next.containersStatuses ?? []) });
        continue;
      }
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    call.signal.removeEventListener('abort', onAbort);
    for (const off of unsubscribe) off();
  }
}
