import type { StatusRequest, StatusResponse } from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { NodeStatus } from '../../sandbox/node-status.js';

/** Status: RuntimeReady and NetworkReady with reasons, handlers with features, verbose info as JSON. */
export async function status(node: NodeStatus, req: StatusRequest): Promise<Input<StatusResponse>> {
  const [runtime, network] = await Promise.all([node.runtimeCondition(), node.networkCondition()]);
  const info: Record<string, string> = {};
  if (req.verbose) info.config = JSON.stringify(await node.info());
  return {
    status: {
      conditions: [
        { type: 'RuntimeReady', status: runtime.ready, reason: runtime.reason, message: runtime.message },
        { type: 'NetworkReady', status: network.ready, reason: network.reason, message: network.message },
      ],
    },
    info,
    runtimeHandlers: node.handlers().map((h) => ({
      name: h.name,
      features: { recursiveReadOnlyMounts: h.recursiveReadOnlyMounts, userNamespaces: h.userNamespaces },
    })),
    features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false },
  };
}
