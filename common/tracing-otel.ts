// The OpenTelemetry side of the tracing seam (common/tracing.ts), loaded with a dynamic import only when
// tracing is on. The current span lives in an AsyncLocalStorage of this module (no global context
// manager or provider is registered); spans leave through a bounded queue to an OTLP/HTTP exporter
// sending JSON, and whatever is dropped is counted in crisp_tracing_spans_dropped_total.
import { AsyncLocalStorage } from 'node:async_hooks';
import { hostname } from 'node:os';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, defaultTextMapSetter, trace, type Context, type Span, type TextMapGetter } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOffSampler, AlwaysOnSampler, ParentBasedSampler, TraceIdRatioBasedSampler, TracerProvider, type Sampler } from '@opentelemetry/sdk-trace';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { Counter, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { SpanExportQueue } from './span-export-queue.js';
import { errorMessage } from './errors.js';
import type { GrpcServerSpan, SamplerSetting, SpanAttributes, Tracer, TracingSettings } from './tracing.js';

export interface ExportLimits {
  maxQueue: number;
  maxBatch: number;
  intervalMs: number;
  /** Bound of one export request, retries included. */
  exportTimeoutMs: number;
}

export const DEFAULT_EXPORT_LIMITS: ExportLimits = { maxQueue: 2048, maxBatch: 512, intervalMs: 1000, exportTimeoutMs: 10_000 };

export interface OtelTracingOptions {
  log: Logger;
  registry: Registry;
  version: string;
  limits?: Partial<ExportLimits>;
}

export interface OtelTracing {
  tracer: Tracer;
  queue: SpanExportQueue;
  /** Last export (bounded by `timeoutMs`), then stop. */
  shutdown(timeoutMs: number): Promise<void>;
}

/** gRPC codes that make a server span an error (the OpenTelemetry RPC conventions); the rest are the caller's doing. */
const SERVER_ERROR_CODES = new Set([2, 4, 12, 13, 14, 15]);
/** How often at most a warning says spans were dropped. */
const DROP_WARN_INTERVAL_MS = 60_000;

function sampler(s: SamplerSetting): Sampler {
  const root = s.root === 'always_on' ? new AlwaysOnSampler() : s.root === 'always_off' ? new AlwaysOffSampler() : new TraceIdRatioBasedSampler(s.ratio);
  return s.parentBased ? new ParentBasedSampler({ root }) : root;
}

function grpcCode(err: unknown): number {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : 2;
}

export function startOtelTracing(settings: TracingSettings, opts: OtelTracingOptions): OtelTracing {
  const limits = { ...DEFAULT_EXPORT_LIMITS, ...opts.limits };
  const dropped = new Counter({
    name: 'crisp_tracing_spans_dropped_total',
    help: 'Spans not delivered to the OTLP collector, by reason (queue_full, export_failed, shutdown)',
    labelNames: ['reason'],
    registers: [opts.registry],
  });
  const exported = new Counter({
    name: 'crisp_tracing_spans_exported_total',
    help: 'Spans the OTLP collector accepted',
    registers: [opts.registry],
  });
  let lastWarn = 0;
  let unreported = 0;
  const exporter = new OTLPTraceExporter({ url: settings.url, timeoutMillis: limits.exportTimeoutMs });
  const queue = new SpanExportQueue({
    exporter,
    maxQueue: limits.maxQueue,
    maxBatch: limits.maxBatch,
    intervalMs: limits.intervalMs,
    onExported: (n) => exported.inc(n),
    onDropped: (n, why) => {
      const reason = why === 'queue full' ? 'queue_full' : why === 'shutdown' ? 'shutdown' : 'export_failed';
      dropped.inc({ reason }, n);
      unreported += n;
      const now = Date.now();
      if (now - lastWarn >= DROP_WARN_INTERVAL_MS) {
        lastWarn = now;
        opts.log.warn({ dropped: unreported, reason: why, url: settings.url }, 'tracing: spans dropped (collector slow or unreachable)');
        unreported = 0;
      }
    },
  });
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ 'service.name': settings.serviceName, 'service.version': opts.version, 'host.name': hostname() }),
    sampler: sampler(settings.sampler),
    spanProcessors: [queue],
  });
  const otel = provider.getTracer('crisp', opts.version);
  const propagator = new W3CTraceContextPropagator();
  const current = new AsyncLocalStorage<Context>();

  /** Runs `run` with `span` current; ends it with the outcome. */
  async function within<T>(span: Span, ctx: Context, run: () => Promise<T>, onError: (err: unknown) => void, onResult?: (r: T) => void): Promise<T> {
    try {
      const result = await current.run(trace.setSpan(ctx, span), run);
      onResult?.(result);
      return result;
    } catch (err) {
      onError(err);
      throw err;
    } finally {
      span.end();
    }
  }

  const tracer: Tracer = {
    grpcServer<T>(name: string, s: GrpcServerSpan<T>, run: () => Promise<T>): Promise<T> {
      const getter: TextMapGetter<unknown> = { keys: () => ['traceparent', 'tracestate'], get: (_c, key) => s.incoming(key) };
      const parent = propagator.extract(ROOT_CONTEXT, undefined, getter);
      const [service, method] = name.split('/');
      const span = otel.startSpan(
        name,
        { kind: SpanKind.SERVER, attributes: { 'rpc.system': 'grpc', 'rpc.service': service ?? '', 'rpc.method': method ?? '', ...s.attributes } },
        parent,
      );
      return within(
        span,
        parent,
        run,
        (err) => {
          const code = s.codeOf(err);
          span.setAttribute('rpc.grpc.status_code', code);
          if (SERVER_ERROR_CODES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
        },
        (result) => {
          span.setAttribute('rpc.grpc.status_code', 0);
          if (s.resultAttributes) span.setAttributes(s.resultAttributes(result));
        },
      );
    },

    grpcClient<T>(service: string, method: string, outgoing: Record<string, string>, run: () => Promise<T>): Promise<T> {
      const parent = current.getStore();
      if (!parent || !trace.getSpan(parent)?.isRecording()) return run();
      const span = otel.startSpan(
        `${service}/${method}`,
        { kind: SpanKind.CLIENT, attributes: { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method } },
        parent,
      );
      propagator.inject(trace.setSpan(parent, span), outgoing, defaultTextMapSetter);
      return within(
        span,
        parent,
        run,
        (err) => {
          span.setAttribute('rpc.grpc.status_code', grpcCode(err));
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) });
        },
        () => span.setAttribute('rpc.grpc.status_code', 0),
      );
    },

    child<T>(name: string, attributes: SpanAttributes, run: () => Promise<T>): Promise<T> {
      const parent = current.getStore();
      if (!parent || !trace.getSpan(parent)?.isRecording()) return run();
      const span = otel.startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent);
      return within(span, parent, run, (err) => span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(err) }));
    },
  };

  return {
    tracer,
    queue,
    shutdown: async (timeoutMs) => {
      await queue.shutdown(timeoutMs);
      await provider.shutdown().catch(() => undefined /* the queue, its only processor, is already down */);
    },
  };
}
