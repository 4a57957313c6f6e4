// Metrics observed where the work happens (pod start phases, CNI operations, NRI plugin calls, the
// embedded containerd's restarts, streaming sessions): declared here once, observed through the small
// functions below from sandbox/, cni/, nri/, backend/ and cri/streaming/, and served by crispd once
// `registerOperationMetrics` put them in its registry. They are process-wide, so the observation points
// need no registry handed down; a process that never registers them (a unit test, the CLI) only counts.
//
// Names follow containerd's CRI plugin where it has the same measurement (containerd_cri_* there,
// crisp_cri_* here): network_plugin_operations_{total,errors_total,duration_seconds} by operation_type
// (containerd's timer adds a second _seconds; this one does not). crisp_ for the rest.
import { Counter, Gauge, Histogram, type Metric, type Registry } from 'prom-client';

/** Where a pod's start time goes. RunPodSandbox: namespaces (pinning), cni (ADD), nri (RunPodSandbox
 *  to the plugins); StartContainer: containerd (task create and start: shim, runc, logger). */
export type PodStartPhase = 'namespaces' | 'cni' | 'nri' | 'containerd';

export type NetworkOperation = 'ADD' | 'DEL';

const LATENCY_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

const podStartPhase = new Histogram({
  name: 'crisp_pod_start_phase_duration_seconds',
  help: 'Time a pod start spends per phase: namespaces, cni, nri (RunPodSandbox), containerd (StartContainer task create and start); successful phases only',
  labelNames: ['phase'],
  buckets: LATENCY_BUCKETS,
  registers: [],
});
const networkOps = new Counter({
  name: 'crisp_cri_network_plugin_operations_total',
  help: 'CNI operations on pod networks by operation type (ADD, DEL)',
  labelNames: ['operation_type'],
  registers: [],
});
const networkOpErrors = new Counter({
  name: 'crisp_cri_network_plugin_operations_errors_total',
  help: 'Failed CNI operations on pod networks by operation type (ADD, DEL)',
  labelNames: ['operation_type'],
  registers: [],
});
const networkOpLatency = new Histogram({
  name: 'crisp_cri_network_plugin_operations_duration_seconds',
  help: 'Latency of CNI operations on pod networks (the whole network configuration list) by operation type, failed ones included',
  labelNames: ['operation_type'],
  buckets: LATENCY_BUCKETS,
  registers: [],
});
const nriCalls = new Counter({
  name: 'crisp_nri_plugin_calls_total',
  help: 'Calls crisp made to NRI plugins by plugin, method and result (ok, error, timeout)',
  labelNames: ['plugin', 'method', 'result'],
  registers: [],
});
const nriLatency = new Histogram({
  name: 'crisp_nri_plugin_call_duration_seconds',
  help: 'Latency of calls to NRI plugins by plugin and method, failed ones included',
  labelNames: ['plugin', 'method'],
  buckets: LATENCY_BUCKETS,
  registers: [],
});
const containerdRestarts = new Counter({
  name: 'crisp_containerd_restarts_total',
  help: 'Times crispd restarted its embedded containerd after the child died',
  registers: [],
});
const streamingActive = new Gauge({
  name: 'crisp_streaming_sessions_active',
  help: 'Streaming sessions open now by kind (exec, attach, portforward)',
  labelNames: ['kind'],
  registers: [],
});
const streamingTotal = new Counter({
  name: 'crisp_streaming_sessions_total',
  help: 'Streaming sessions opened by kind (exec, attach, portforward)',
  labelNames: ['kind'],
  registers: [],
});

const ALL: Metric[] = [podStartPhase, networkOps, networkOpErrors, networkOpLatency, nriCalls, nriLatency, containerdRestarts, streamingActive, streamingTotal];

/** Serve these metrics from `registry` (crispd's, once per daemon). Label sets known up front start at 0. */
export function registerOperationMetrics(registry: Registry): void {
  for (const m of ALL) registry.registerMetric(m);
  for (const phase of ['namespaces', 'cni', 'nri', 'containerd'] as const) podStartPhase.zero({ phase });
  for (const op of ['ADD', 'DEL'] as const) {
    networkOps.inc({ operation_type: op }, 0);
    networkOpErrors.inc({ operation_type: op }, 0);
    networkOpLatency.zero({ operation_type: op });
  }
  for (const kind of ['exec', 'attach', 'portforward']) {
    streamingActive.set({ kind }, 0);
    streamingTotal.inc({ kind }, 0);
  }
}

function seconds(startedAt: bigint): number {
  return Number(process.hrtime.bigint() - startedAt) / 1e9;
}

/** Runs `fn` and records its duration under `phase` when it succeeds. */
export async function timePodStartPhase<T>(phase: PodStartPhase, fn: () => Promise<T>): Promise<T> {
  const startedAt = process.hrtime.bigint();
  const out = await fn();
  podStartPhase.observe({ phase }, seconds(startedAt));
  return out;
}

/** A phase spanning several calls: call the returned function once the phase succeeded. */
export function startPodStartPhase(phase: PodStartPhase): () => void {
  const startedAt = process.hrtime.bigint();
  return () => podStartPhase.observe({ phase }, seconds(startedAt));
}

/** Runs a pod network operation, counting it, its failure and its latency. */
export async function timeNetworkOperation<T>(op: NetworkOperation, fn: () => Promise<T>): Promise<T> {
  const startedAt = process.hrtime.bigint();
  networkOps.inc({ operation_type: op });
  try {
    return await fn();
  } catch (err) {
    networkOpErrors.inc({ operation_type: op });
    throw err;
  } finally {
    networkOpLatency.observe({ operation_type: op }, seconds(startedAt));
  }
}

/** Runs one call to NRI plugin `plugin` ("NN-name"); `isTimeout` tells a timeout from other failures. */
export async function timeNriCall<T>(plugin: string, method: string, fn: () => Promise<T>, isTimeout: (err: unknown) => boolean): Promise<T> {
  const startedAt = process.hrtime.bigint();
  let result = 'ok';
  try {
    return await fn();
  } catch (err) {
    result = isTimeout(err) ? 'timeout' : 'error';
    throw err;
  } finally {
    nriCalls.inc({ plugin, method, result });
    nriLatency.observe({ plugin, method }, seconds(startedAt));
  }
}

export function countContainerdRestart(): void {
  containerdRestarts.inc();
}

/** Counts a streaming session of `kind` as open until `done` settles. */
export function trackStreamingSession(kind: string, done: Promise<unknown>): void {
  streamingTotal.inc({ kind });
  streamingActive.inc({ kind });
  // The session's own code reports how it ended; here only its end matters.
  void done.then(
    () => streamingActive.dec({ kind }),
    () => streamingActive.dec({ kind }),
  );
}
