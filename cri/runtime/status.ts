import type { StatusRequest, StatusResponse } from '../../gen/runtime.v1.js';
import { codecFor, type Input } from '../../common/proto-registry.js';
import { Encoded } from '../../common/grpc-server.js';
import type { Condition, HandlerFeatures, NodeStatus } from '../../sandbox/node-status.js';

function response(runtime: Condition, network: Condition, handlers: HandlerFeatures[], info: Record<string, string>): Input<Response> {
  return {
    status: {
      conditions: [
        { type: 'RuntimeReady', status: runtime.ready, reason: runtime.reason, message: runtime.message },
        { type: 'NetworkReady', status: network.ready, reason: network.reason, message: network.message },
      ],
    },
    info,
    runtimeHandlers: handlers.map((h) => ({
      name: h.name,
      features: { recursiveReadOnlyMounts: h.recursiveReadOnlyMounts, userNamespaces: h.userNamespaces },
    })),
    features: { supplementalGroupsPolicy: true, userNamespacesHostNetwork: false },
  };
}

type Response = StatusResponse;

const sameCondition = (a: Condition, b: Condition) => a.ready === b.ready && a.reason === b.reason && a.message === b.message;

function sameHandlers(a: HandlerFeatures[], b: HandlerFeatures[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.name !== y.name || x.recursiveReadOnlyMounts !== y.recursiveReadOnlyMounts || x.userNamespaces !== y.userNamespaces) return false;
  }
  return true;
}

/** Status: RuntimeReady and NetworkReady with reasons, handlers with features, verbose info as JSON. */
export function statusHandler(node: NodeStatus): (req: StatusRequest) => Promise<Input<StatusResponse> | Encoded<StatusResponse>> {
  /**
   * The last non-verbose answer with what it was made from. Every call still reads the conditions as
   * before (the runtime's at most 1 s old, the network's from the CNI status cache); only the encoding is
   * reused, and only while they hold the same values, so an answer is never older than its inputs.
   */
  let last: { runtime: Condition; network: Condition; handlers: HandlerFeatures[]; answer: Encoded<StatusResponse> } | undefined;
  return async (req) => {
    const [runtime, network] = await Promise.all([node.runtimeCondition(), node.networkCondition()]);
    const handlers = node.handlers();
    if (req.verbose) return response(runtime, network, handlers, { config: JSON.stringify(await node.info()) });
    if (last && sameCondition(last.runtime, runtime) && sameCondition(last.network, network) && sameHandlers(last.handlers, handlers)) {
      return last.answer;
    }
    const answer = new Encoded<Response>(codecFor<Response>('runtime.v1.StatusResponse').encode(response(runtime, network, handlers, {})));
    last = { runtime, network, handlers, answer };
    return answer;
  };
}
