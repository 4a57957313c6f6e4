import type { ListPodSandboxRequest, ListPodSandboxResponse, PodSandbox } from '../../gen/runtime.v1.js';
import type { Encoded } from '../../common/grpc-server.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import { EncodedList } from './encoded-list.js';
import { matchesPodFilter, toCriPodSandbox } from './pod-mapping.js';

/** ListPodSandboxResponse.items is field 1; each pod's encoding is kept while its CRI view is unchanged. */
export const podList = new EncodedList<PodRecord, PodSandbox>('runtime.v1.PodSandbox', 1, toCriPodSandbox);

/** ListPodSandbox with id (prefix), state and label filters. */
export async function listPodSandbox(pods: PodController, req: ListPodSandboxRequest): Promise<Encoded<ListPodSandboxResponse>> {
  return podList.answer(pods.list().filter((p) => matchesPodFilter(p, req.filter)));
}
