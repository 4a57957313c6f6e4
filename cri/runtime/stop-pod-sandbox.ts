import type { StopPodSandboxRequest, StopPodSandboxResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { requireString } from '../validate.js';

/** StopPodSandbox: idempotent; a missing pod is not an error (CRI). */
export async function stopPodSandbox(pods: PodController, req: StopPodSandboxRequest): Promise<Input<StopPodSandboxResponse>> {
  await pods.stop(requireString(req.podSandboxId, 'pod_sandbox_id'));
  return {};
}
