// The tracing seam: what the rest of crisp calls to open spans. It imports nothing from OpenTelemetry:
// while tracing is off `tracer` is undefined and every helper is one check and a direct call, and the
// SDK (common/tracing-otel.ts) is loaded only by a daemon whose configuration turns tracing on.

/** Which traces are recorded: a root decision, and whether a caller's sampled flag overrides it. */
export interface SamplerSetting {
  root: 'always_on' | 'always_off' | 'ratio';
  /** For `ratio`: the fraction of new traces recorded. */
  ratio: number;
  /** A call that carries a trace context is recorded exactly when its caller recorded it. */
  parentBased: boolean;
}

export interface TracingSettings {
  /** Where spans are POSTed (OTLP/HTTP JSON), ".../v1/traces". */
  url: string;
  sampler: SamplerSetting;
  serviceName: string;
}

export type SpanAttributes = Record<string, string | number | boolean>;

export interface GrpcServerSpan<T> {
  /** The caller's W3C trace context headers ("traceparent", "tracestate"), continued when present. */
  incoming: (header: string) => string | undefined;
  attributes: SpanAttributes;
  /** Attributes learnt from the result, e.g. the id of what the call created. */
  resultAttributes?: (result: T) => SpanAttributes;
  /** The gRPC status code the caller will see for a failure. */
  codeOf: (err: unknown) => number;
}

export interface Tracer {
  /** A server span around one incoming gRPC call; spans opened while `run` runs are its children. */
  grpcServer<T>(name: string, span: GrpcServerSpan<T>, run: () => Promise<T>): Promise<T>;
  /**
   * A client span around one outgoing gRPC call, under the current span (none outside a traced call).
   * The trace context goes into `outgoing` (the call's metadata) so the peer can continue it.
   */
  grpcClient<T>(service: string, method: string, outgoing: Record<string, string>, run: () => Promise<T>): Promise<T>;
  /** An internal span under the current one (none outside a traced call). */
  child<T>(name: string, attributes: SpanAttributes, run: () => Promise<T>): Promise<T>;
}

/** Set once at daemon start when tracing is on; undefined otherwise. */
export let tracer: Tracer | undefined;

export function setTracer(t: Tracer | undefined): void {
  tracer = t;
}

/** Runs `run` in a child span of the current traced call, or just runs it. */
export function traced<T>(name: string, attributes: SpanAttributes, run: () => Promise<T>): Promise<T> {
  return tracer ? tracer.child(name, attributes, run) : run();
}
