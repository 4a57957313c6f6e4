// The one wrapper every CRI call passes through: readiness gate, debug log of the request, a latency
// histogram, in-flight tracking for graceful shutdown, and error → gRPC status mapping.
import * as grpc from '@grpc/grpc-js';
import { Histogram, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { CallInfo, Interceptor } from '../common/grpc-server.js';
import { CrispError, isGrpcError, errorMessage } from '../common/errors.js';

export interface Instrument {
  intercept: Interceptor;
  mapError: (err: unknown) => Partial<grpc.StatusObject>;
  /** Calls currently running. */
  inFlight(): number;
  /** Resolves when no call runs, or after `timeoutMs`. Returns the number still running. */
  drain(timeoutMs: number): Promise<number>;
  /** Refuse new calls from now on (UNAVAILABLE), e.g. while shutting down. */
  close(): void;
}

export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  if (err instanceof CrispError) return { code: err.grpcCode, details: err.message };
  if (isGrpcError(err)) return { code: err.code, details: err.details || err.message };
  return { code: grpc.status.INTERNAL, details: errorMessage(err) };
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

export function createInstrument(log: Logger, registry: Registry): Instrument {
  const histogram = new Histogram({
    name: 'crisp_cri_request_duration_seconds',
    help: 'CRI request latency by method and gRPC status code',
    labelNames: ['method', 'code'],
    buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [registry],
  });
  let running = 0;
  let closed = false;
  const idle: (() => void)[] = [];

  const intercept: Interceptor = async <T>(call: CallInfo, request: unknown, run: () => Promise<T>): Promise<T> => {
    if (closed) throw new CrispError('UNAVAILABLE', 'crispd is shutting down');
    running++;
    const started = process.hrtime.bigint();
    let code = grpc.status.OK;
    if (log.isLevelEnabled('debug')) log.debug({ method: call.method, request: loggable(request) }, 'cri request');
    try {
      return await run();
    } catch (err) {
      const status = toStatus(err);
      code = status.code ?? grpc.status.UNKNOWN;
      const level = code === grpc.status.INTERNAL || code === grpc.status.UNKNOWN ? 'error' : 'debug';
      log[level]({ method: call.method, code: grpc.status[code], err: status.details }, 'cri request failed');
      throw err;
    } finally {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      histogram.observe({ method: call.method, code: grpc.status[code] }, seconds);
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
