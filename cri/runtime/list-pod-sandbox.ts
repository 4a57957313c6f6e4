import type { ListPodSandboxRequest, ListPodSandboxResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { matchesPodFilter, toCriPodSandbox } from './pod-mapping.js';

/** ListPodSandbox with id (prefix), state and label filters. */
export async function listPodSandbox(pods: PodController, req: ListPodSandboxRequest): Promise<Input<ListPodSandboxResponse>> {
  return { items: pods.list().filter((p) => matchesPodFilter(p, req.filter)).map(toCriPodSandbox) };
}
