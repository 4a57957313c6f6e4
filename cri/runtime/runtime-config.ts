import { CgroupDriver, type RuntimeConfigResponse, type UpdateRuntimeConfigRequest, type UpdateRuntimeConfigResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { NodeStatus } from '../../sandbox/node-status.js';
import { invalidArgument } from '../../common/errors.js';
import { isCidr } from '../validate.js';

/** RuntimeConfig: the cgroup driver kubelet must match. */
export async function runtimeConfig(node: NodeStatus): Promise<Input<RuntimeConfigResponse>> {
  return { linux: { cgroupDriver: node.cgroupDriver === 'systemd' ? CgroupDriver.SYSTEMD : CgroupDriver.CGROUPFS } };
}

/** UpdateRuntimeConfig: remember the pod CIDR for CNI's ipRanges. An empty CIDR changes nothing. */
export async function updateRuntimeConfig(node: NodeStatus, req: UpdateRuntimeConfigRequest): Promise<Input<UpdateRuntimeConfigResponse>> {
  const cidr = req.runtimeConfig?.networkConfig?.podCidr ?? '';
  if (cidr === '') return {};
  for (const part of cidr.split(',')) {
    if (!isCidr(part.trim())) throw invalidArgument(`runtime_config.network_config.pod_cidr: "${part}" is not a CIDR`);
  }
  node.setPodCidr(cidr);
  return {};
}
