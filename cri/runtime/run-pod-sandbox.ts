import type { RunPodSandboxRequest, RunPodSandboxResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { toPodSpec, type PodMappingContext } from './pod-mapping.js';

/** RunPodSandbox: validate, then pin namespaces, network and files — no pause container. */
export async function runPodSandbox(pods: PodController, ctx: PodMappingContext, req: RunPodSandboxRequest): Promise<Input<RunPodSandboxResponse>> {
  const spec = toPodSpec(req.config, req.runtimeHandler, ctx);
  return { podSandboxId: await pods.run(spec) };
}
