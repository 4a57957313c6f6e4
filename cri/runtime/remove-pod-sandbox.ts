import type { RemovePodSandboxRequest, RemovePodSandboxResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { requireString } from '../validate.js';

/** RemovePodSandbox: idempotent; stops the pod first if needed. */
export async function removePodSandbox(pods: PodController, req: RemovePodSandboxRequest): Promise<Input<RemovePodSandboxResponse>> {
  await pods.remove(requireString(req.podSandboxId, 'pod_sandbox_id'));
  return {};
}
