// The one wrapper every CRI call passes through: readiness gate, debug log of the request, metrics,
// in-flight tracking for graceful shutdown, one warn (or error) line per failed call, and error → gRPC
// status mapping.
//
// Metrics: containerd's names for the same thing (go-grpc-prometheus, which containerd puts on the gRPC
// server its CRI plugin serves on): grpc_server_started_total, grpc_server_handled_total (by code) and
// grpc_server_handling_seconds (containerd's `grpc_histogram`), labelled grpc_service, grpc_method,
// grpc_type (+ grpc_code); and crisp_cri_request_duration_seconds, latency by method *and* code, which
// neither containerd nor CRI-O has.
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { CallInfo, CallStatus, Interceptor } from '../common/grpc-server.js';
import { status, statusName } from '../common/grpc-types.js';
import { CrispError, isGrpcError, errorMessage, isOutOfSpace } from '../common/errors.js';
import { tracer } from '../common/tracing.js';
import { traceCriCall } from './trace-call.js';
import { BoundCounter, BoundHistogram, type CounterSeries, type HistogramSeries } from './call-metrics.js';

export interface Instrument {
  intercept: Interceptor;
  mapError: (err: unknown) => CallStatus;
  /** Calls currently running. */
  inFlight(): number;
  /** Resolves when no call runs, or after `timeoutMs`. Returns the number still running. */
  drain(timeoutMs: number): Promise<number>;
  /** Refuse new calls from now on (UNAVAILABLE), e.g. while shutting down. */
  close(): void;
}

/**
 * Longest status message sent: errors quote the values they reject, and a 1 MiB id quoted whole would
 * make a grpc-message trailer the HTTP/2 peer refuses (the client then sees the connection drop).
 */
export const MAX_STATUS_DETAILS = 4096;

function capped(details: string): string {
  if (details.length <= MAX_STATUS_DETAILS) return details;
  return `${details.slice(0, MAX_STATUS_DETAILS)}… (${details.length} characters in all)`;
}

export function toStatus(err: unknown): CallStatus {
  // A full disk is the node's state, not crisp's bug: kubelet and operators look for RESOURCE_EXHAUSTED.
  if (isOutOfSpace(err)) return { code: status.RESOURCE_EXHAUSTED, details: capped(errorMessage(err)) };
  if (err instanceof CrispError) return { code: err.grpcCode, details: capped(err.message) };
  if (isGrpcError(err)) return { code: err.code, details: capped(err.details || err.message) };
  return { code: status.INTERNAL, details: capped(errorMessage(err)) };
}

/** Requests are logged without secrets: auth configs are replaced by a marker. */
const REDACTED = '[redacted]';

/**
 * What of a request may reach the debug log: registry credentials, environment values (they carry
 * Secrets) and the commands of exec calls (they may carry tokens on their command line) never do.
 */
export function loggable(request: unknown): unknown {
  if (typeof request !== 'object' || request === null) return request;
  const r = { ...(request as Record<string, unknown>) };
  if (r.auth) r.auth = REDACTED;
  if (Array.isArray(r.cmd)) r.cmd = r.cmd.length > 0 ? [r.cmd[0], `${REDACTED} (${r.cmd.length - 1} args)`] : r.cmd;
  const config = r.config as { envs?: { key: string }[] } | undefined;
  if (config && Array.isArray(config.envs)) r.config = { ...config, envs: config.envs.map((e) => ({ key: e.key, value: REDACTED })) };
  return r;
}

/** The CRI's only server-streaming method; every other one is unary. */
const SERVER_STREAMS = new Set(['GetContainerEvents']);

/** go-grpc-prometheus' default buckets, as containerd exposes them. */
const GRPC_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type GrpcLabels = {
  grpc_service: string;
  grpc_method: string;
  grpc_type: string;
};

/** What the instrument counts for one method, bound once (the set of methods is fixed). */
interface MethodSeries {
  started: CounterSeries;
  handling: HistogramSeries;
  /** By gRPC status code: grpc_server_handled_total and crisp_cri_request_duration_seconds. */
  byCode: ({ handled: CounterSeries; duration: HistogramSeries } | undefined)[];
}

export function createInstrument(log: Logger, registry: Registry): Instrument {
  const histogram = new BoundHistogram(
    'crisp_cri_request_duration_seconds',
    'CRI request latency by method and gRPC status code',
    ['method', 'code'],
    [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registry,
  );
  const grpcLabels = ['grpc_service', 'grpc_method', 'grpc_type'] as const;
  const started = new BoundCounter('grpc_server_started_total', 'Total number of RPCs started on the server.', grpcLabels, registry);
  const handled = new BoundCounter(
    'grpc_server_handled_total',
    'Total number of RPCs completed on the server, regardless of success or failure.',
    [...grpcLabels, 'grpc_code'],
    registry,
  );
  const handling = new BoundHistogram(
    'grpc_server_handling_seconds',
    'Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.',
    grpcLabels,
    GRPC_BUCKETS,
    registry,
  );
  new Gauge({
    name: 'crisp_cri_requests_in_flight',
    help: 'CRI requests being handled now (GetContainerEvents streams included)',
    registers: [registry],
    collect() {
      this.set(running);
    },
  });
  const byPath = new Map<string, MethodSeries>();
  const methodSeries = (call: CallInfo): MethodSeries => {
    let m = byPath.get(call.path);
    if (!m) {
      const labels: GrpcLabels = {
        grpc_service: call.path.split('/')[1] ?? '',
        grpc_method: call.method,
        grpc_type: SERVER_STREAMS.has(call.method) ? 'server_stream' : 'unary',
      };
      m = { started: started.bind(labels), handling: handling.bind(labels), byCode: [] };
      byPath.set(call.path, m);
    }
    return m;
  };
  const codeSeries = (call: CallInfo, m: MethodSeries, code: number) => {
    let c = m.byCode[code];
    if (!c) {
      const codeName = statusName(code) ?? String(code);
      c = { handled: handled.bind({ ...m.started.labels, grpc_code: codeName }), duration: histogram.bind({ method: call.method, code: codeName }) };
      m.byCode[code] = c;
    }
    return c;
  };
  let running = 0;
  let closed = false;
  const idle: (() => void)[] = [];

  const intercept: Interceptor = async <T>(call: CallInfo, request: unknown, run: () => Promise<T>): Promise<T> => {
    if (closed) throw new CrispError('UNAVAILABLE', 'crispd is shutting down');
    running++;
    const startedAt = performance.now();
    const series = methodSeries(call);
    series.started.value++;
    let code: number = status.OK;
    if (log.isLevelEnabled('debug')) log.debug({ method: call.method, request: loggable(request) }, 'cri request');
    try {
      return await (tracer ? traceCriCall(tracer, call, request, run, toStatus) : run());
    } catch (err) {
      const failure = toStatus(err);
      code = failure.code ?? status.UNKNOWN;
      // One line per failed call, with the error: warn, or error for what is crisp's own fault.
      const level = code === status.INTERNAL || code === status.UNKNOWN ? 'error' : 'warn';
      log[level]({ method: call.method, code: statusName(code), err: failure.details }, 'cri request failed');
      throw err;
    } finally {
      const seconds = (performance.now() - startedAt) / 1000;
      const c = codeSeries(call, series, code);
      histogram.observe(c.duration, seconds);
      c.handled.value++;
      handling.observe(series.handling, seconds);
      running--;
      if (running === 0) for (const wake of idle.splice(0)) wake();
    }
  };

  return {
    intercept,
    mapError: toStatus,
    inFlight: () => running,
    close: () => {
      closed = true;
    },
    drain: async (timeoutMs) => {
      if (running === 0) return 0;
      await Promise.race([
        new Promise<void>((resolve) => idle.push(resolve)),
        new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
      ]);
      return running;
    },
  };
}
