// The span of one CRI call (when tracing is on): named "runtime.v1.RuntimeService/RunPodSandbox",
// continuing the trace context kubelet sends as gRPC metadata, with the ids the call is about. Only ids,
// names and the image reference become attributes: never environment values, commands, credentials or
// annotations.
import type { CallInfo } from '../common/grpc-server.js';
import type { SpanAttributes, Tracer } from '../common/tracing.js';

type Fields = Record<string, unknown>;

function fields(v: unknown): Fields | undefined {
  return typeof v === 'object' && v !== null ? (v as Fields) : undefined;
}

function put(out: SpanAttributes, key: string, v: unknown): void {
  if (typeof v === 'string' && v !== '') out[key] = v;
}

function podMetadata(out: SpanAttributes, config: unknown): void {
  const md = fields(fields(config)?.metadata);
  put(out, 'k8s.pod.name', md?.name);
  put(out, 'k8s.namespace.name', md?.namespace);
  put(out, 'k8s.pod.uid', md?.uid);
}

/** What a CRI request says it is about. */
export function requestAttributes(method: string, request: unknown): SpanAttributes {
  const out: SpanAttributes = {};
  const r = fields(request);
  if (!r) return out;
  put(out, 'cri.pod_sandbox_id', r.podSandboxId);
  put(out, 'cri.container_id', r.containerId);
  if (method === 'RunPodSandbox') podMetadata(out, r.config);
  else if (r.sandboxConfig) podMetadata(out, r.sandboxConfig);
  if (method === 'CreateContainer') put(out, 'k8s.container.name', fields(fields(r.config)?.metadata)?.name);
  put(out, 'cri.image', fields(r.image)?.image);
  return out;
}

/** The ids a CRI call created (RunPodSandbox, CreateContainer) or resolved (PullImage). */
export function resultAttributes(result: unknown): SpanAttributes {
  const out: SpanAttributes = {};
  const r = fields(result);
  put(out, 'cri.pod_sandbox_id', r?.podSandboxId);
  put(out, 'cri.container_id', r?.containerId);
  put(out, 'cri.image_ref', r?.imageRef);
  return out;
}

/** `toStatus`: the instrument layer's error → status mapping, so the span has the code the caller gets. */
export function traceCriCall<T>(
  tracer: Tracer,
  call: CallInfo,
  request: unknown,
  run: () => Promise<T>,
  toStatus: (err: unknown) => { code?: number },
): Promise<T> {
  return tracer.grpcServer(
    call.path.slice(1),
    {
      incoming: (header) => {
        const v = call.metadata.get(header)[0];
        return typeof v === 'string' ? v : undefined;
      },
      attributes: requestAttributes(call.method, request),
      resultAttributes,
      codeOf: (err) => toStatus(err).code ?? 2,
    },
    run,
  );
}
