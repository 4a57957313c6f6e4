// ListMetricDescriptors and ListPodSandboxMetrics (kubelet's PodAndContainerStatsFromCRI): cadvisor's
// container_* metrics, named and labelled as cadvisor and containerd name them (label keys "id" and
// "name", plus the metric's own dimensions), read from cgroupfs, /proc, the snapshotter's filesystem
// and the pod's network namespace. A value the host does not keep is left out, never sent as zero.
import { statfs } from 'node:fs/promises';
import {
  MetricType,
  type ListMetricDescriptorsResponse,
  type ListPodSandboxMetricsResponse,
  type Metric,
  type MetricDescriptor,
  type PodSandboxMetrics,
} from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import { nowNanos } from '../../common/time.js';
import type { ContainerRecord } from '../../sandbox/containers/types.js';
import type { PodRecord } from '../../sandbox/pods/types.js';
import { netnsInterfaces, type InterfaceUsage } from '../../sandbox/containers/stats.js';
import { cgroupfsPathOf } from '../../sandbox/cgroup-stats.js';
import { procsFileOf, sampleCgroup, sampleProcesses, type CgroupSample, type ProcessSample } from '../../sandbox/containers/metrics-sample.js';
import type { StatsDeps } from './stats.js';

const BASE = ['id', 'name'];
const { COUNTER, GAUGE } = MetricType;

interface Sample {
  rec: ContainerRecord;
  cgroup: CgroupSample;
  procs: ProcessSample;
  writable?: { bytes: number; inodes: number };
  fs?: { totalBytes: number; totalInodes: number; freeInodes: number };
}

/** One value of a metric: its own label values (after id and name) and the number. */
type Point = [labels: string[], value: number | undefined];

interface ContainerMetricDef {
  name: string;
  help: string;
  extraLabels?: string[];
  type: MetricType;
  /** Absent: a descriptor crisp lists but fills only where the host reports it (optional in critest). */
  points?: (s: Sample) => Point[];
}

const one = (value: number | undefined): Point[] => [[[], value]];
const seconds = (nanos: number | undefined) => (nanos === undefined ? undefined : Math.floor(nanos / 1e9));
const setOrUndefined = (n: number) => (n > 0 ? n : undefined);

const CONTAINER_METRICS: ContainerMetricDef[] = [
  { name: 'container_cpu_usage_seconds_total', help: 'Cumulative cpu time consumed in seconds.', extraLabels: ['cpu'], type: COUNTER, points: (s) => [[['total'], seconds(s.cgroup.cpuUsageNanos)]] },
  { name: 'container_cpu_user_seconds_total', help: 'Cumulative user cpu time consumed in seconds.', type: COUNTER, points: (s) => one(seconds(s.cgroup.cpuUserNanos)) },
  { name: 'container_cpu_system_seconds_total', help: 'Cumulative system cpu time consumed in seconds.', type: COUNTER, points: (s) => one(seconds(s.cgroup.cpuSystemNanos)) },
  { name: 'container_cpu_cfs_periods_total', help: 'Number of elapsed enforcement period intervals.', type: COUNTER, points: (s) => one(s.cgroup.cfsPeriods) },
  { name: 'container_cpu_cfs_throttled_periods_total', help: 'Number of throttled period intervals.', type: COUNTER, points: (s) => one(s.cgroup.cfsThrottledPeriods) },
  { name: 'container_cpu_cfs_throttled_seconds_total', help: 'Total time duration the container has been throttled.', type: COUNTER, points: (s) => one(seconds(s.cgroup.cfsThrottledNanos)) },
  { name: 'container_memory_usage_bytes', help: 'Current memory usage in bytes, including all memory regardless of when it was accessed.', type: GAUGE, points: (s) => one(s.cgroup.memoryUsage) },
  { name: 'container_memory_working_set_bytes', help: 'Current working set in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memoryWorkingSet) },
  { name: 'container_memory_max_usage_bytes', help: 'Maximum memory usage recorded in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memoryMaxUsage ?? s.cgroup.memoryUsage) },
  { name: 'container_memory_cache', help: 'Number of bytes of page cache memory.', type: GAUGE, points: (s) => one(s.cgroup.memoryCache) },
  { name: 'container_memory_rss', help: 'Size of RSS in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memoryRss) },
  { name: 'container_memory_mapped_file', help: 'Size of memory mapped files in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memoryMappedFile) },
  { name: 'container_memory_kernel_usage', help: 'Size of kernel memory allocated in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memoryKernel) },
  { name: 'container_memory_swap', help: 'Container swap usage in bytes.', type: GAUGE, points: (s) => one(s.cgroup.memorySwap ?? 0) },
  { name: 'container_memory_failcnt', help: 'Number of memory usage hits limits.', type: COUNTER, points: (s) => one(s.cgroup.memoryFailcnt ?? 0) },
  {
    name: 'container_memory_failures_total',
    help: 'Cumulative count of memory allocation failures.',
    extraLabels: ['failure_type', 'scope'],
    type: COUNTER,
    points: (s) => [
      [['pgfault', 'container'], s.cgroup.pgfault],
      [['pgmajfault', 'container'], s.cgroup.pgmajfault],
      [['pgfault', 'hierarchy'], s.cgroup.pgfault],
      [['pgmajfault', 'hierarchy'], s.cgroup.pgmajfault],
    ],
  },
  { name: 'container_oom_events_total', help: 'Count of out of memory events observed for the container.', type: COUNTER, points: (s) => one(s.cgroup.oomEvents ?? 0) },
  { name: 'container_processes', help: 'Number of processes running inside the container.', type: GAUGE, points: (s) => one(s.cgroup.processes) },
  { name: 'container_threads', help: 'Number of threads running inside the container.', type: GAUGE, points: (s) => one(s.procs.threads) },
  { name: 'container_threads_max', help: 'Maximum number of threads allowed inside the container, 0 if unlimited.', type: GAUGE, points: (s) => one(s.cgroup.threadsMax ?? 0) },
  { name: 'container_file_descriptors', help: 'Number of open file descriptors for the container.', type: GAUGE, points: (s) => one(s.procs.fileDescriptors) },
  { name: 'container_sockets', help: 'Number of open sockets for the container.', type: GAUGE, points: (s) => one(s.procs.sockets) },
  { name: 'container_fs_usage_bytes', help: 'Number of bytes that are consumed by the container on this filesystem.', extraLabels: ['device'], type: GAUGE, points: (s) => [[['rootfs'], s.writable?.bytes]] },
  { name: 'container_fs_limit_bytes', help: 'Number of bytes that can be consumed by the container on this filesystem.', extraLabels: ['device'], type: GAUGE, points: (s) => [[['rootfs'], s.fs?.totalBytes]] },
  { name: 'container_fs_inodes_total', help: 'Number of available Inodes.', extraLabels: ['device'], type: GAUGE, points: (s) => [[['rootfs'], s.fs?.totalInodes]] },
  { name: 'container_fs_inodes_free', help: 'Number of available Inodes.', extraLabels: ['device'], type: GAUGE, points: (s) => [[['rootfs'], s.fs?.freeInodes]] },
  { name: 'container_fs_reads_bytes_total', help: 'Cumulative count of bytes read.', extraLabels: ['device'], type: COUNTER },
  { name: 'container_fs_reads_total', help: 'Cumulative count of reads completed.', extraLabels: ['device'], type: COUNTER },
  { name: 'container_fs_writes_bytes_total', help: 'Cumulative count of bytes written.', extraLabels: ['device'], type: COUNTER },
  { name: 'container_fs_writes_total', help: 'Cumulative count of writes completed.', extraLabels: ['device'], type: COUNTER },
  { name: 'container_blkio_device_usage_total', help: 'Blkio Device bytes usage.', extraLabels: ['device', 'major', 'minor', 'operation'], type: COUNTER },
  { name: 'container_last_seen', help: 'Last time a container was seen by the exporter.', type: GAUGE, points: () => one(Math.floor(Date.now() / 1000)) },
  { name: 'container_start_time_seconds', help: 'Start time of the container since unix epoch in seconds.', type: GAUGE, points: (s) => one(s.rec.startedAt ? Math.floor(s.rec.startedAt / 1e9) : undefined) },
  { name: 'container_spec_cpu_period', help: 'CPU period of the container.', type: GAUGE, points: (s) => one(s.rec.spec.resources.cpuPeriod || 100_000) },
  { name: 'container_spec_cpu_quota', help: 'CPU quota of the container.', type: GAUGE, points: (s) => one(setOrUndefined(s.rec.spec.resources.cpuQuota) ?? 0) },
  { name: 'container_spec_cpu_shares', help: 'CPU share of the container.', type: GAUGE, points: (s) => one(s.rec.spec.resources.cpuShares || 1024) },
  { name: 'container_spec_memory_limit_bytes', help: 'Memory limit for the container.', type: GAUGE, points: (s) => one(s.rec.spec.resources.memoryLimitInBytes) },
  { name: 'container_spec_memory_swap_limit_bytes', help: 'Memory swap limit for the container.', type: GAUGE, points: (s) => one(Math.max(0, s.rec.spec.resources.memorySwapLimitInBytes)) },
];

interface NetworkMetricDef {
  name: string;
  help: string;
  value: (i: InterfaceUsage) => number;
}

const NETWORK_METRICS: NetworkMetricDef[] = [
  { name: 'container_network_receive_bytes_total', help: 'Cumulative count of bytes received.', value: (i) => i.rxBytes },
  { name: 'container_network_receive_packets_total', help: 'Cumulative count of packets received.', value: (i) => i.rxPackets },
  { name: 'container_network_receive_errors_total', help: 'Cumulative count of errors encountered while receiving.', value: (i) => i.rxErrors },
  { name: 'container_network_receive_packets_dropped_total', help: 'Cumulative count of packets dropped while receiving.', value: (i) => i.rxDropped },
  { name: 'container_network_transmit_bytes_total', help: 'Cumulative count of bytes transmitted.', value: (i) => i.txBytes },
  { name: 'container_network_transmit_packets_total', help: 'Cumulative count of packets transmitted.', value: (i) => i.txPackets },
  { name: 'container_network_transmit_errors_total', help: 'Cumulative count of errors encountered while transmitting.', value: (i) => i.txErrors },
  { name: 'container_network_transmit_packets_dropped_total', help: 'Cumulative count of packets dropped while transmitting.', value: (i) => i.txDropped },
];

export function metricDescriptors(): Input<MetricDescriptor>[] {
  return [
    ...CONTAINER_METRICS.map((m) => ({ name: m.name, help: m.help, labelKeys: [...BASE, ...(m.extraLabels ?? [])] })),
    ...NETWORK_METRICS.map((m) => ({ name: m.name, help: m.help, labelKeys: [...BASE, 'interface'] })),
  ];
}

export async function listMetricDescriptors(): Promise<Input<ListMetricDescriptorsResponse>> {
  return { descriptors: metricDescriptors() };
}

function toMetrics(base: string[], timestamp: number, defs: ContainerMetricDef[], s: Sample): Input<Metric>[] {
  const out: Input<Metric>[] = [];
  for (const d of defs) {
    for (const [labels, value] of d.points?.(s) ?? []) {
      if (value === undefined || !Number.isFinite(value)) continue;
      out.push({ name: d.name, timestamp, metricType: d.type, labelValues: [...base, ...labels], value: { value: Math.max(0, Math.floor(value)) } });
    }
  }
  return out;
}

type FsTotals = NonNullable<Sample['fs']>;

async function sampleContainer(d: StatsDeps, rec: ContainerRecord, fs: FsTotals | undefined): Promise<Sample> {
  const cgroupPath = cgroupfsPathOf(rec.cgroupsPath);
  const [cgroup, procs, writable] = await Promise.all([
    sampleCgroup(cgroupPath),
    sampleProcesses(procsFileOf(cgroupPath)),
    // A snapshot containerd cannot measure right now leaves the fs usage out of this sample.
    d.containers.writableLayerUsage(rec.id).catch(() => undefined),
  ]);
  return { rec, cgroup, procs, ...(writable ? { writable } : {}), ...(fs ? { fs } : {}) };
}

/** The snapshotter filesystem's size and inodes: one statfs per listing, shared by every container. */
async function snapshotterFs(d: StatsDeps): Promise<FsTotals | undefined> {
  const root = await d.snapshotMount().catch(() => undefined);
  const st = root ? await statfs(root).catch(() => undefined) : undefined;
  return st ? { totalBytes: st.blocks * st.bsize, totalInodes: st.files, freeInodes: st.ffree } : undefined;
}

async function podMetrics(d: StatsDeps, pod: PodRecord, fs: FsTotals | undefined): Promise<Input<PodSandboxMetrics>> {
  const timestamp = nowNanos();
  const metrics: Input<Metric>[] = [];
  if (pod.pins.net) {
    // No pause process: the pinned network namespace is read directly.
    const ifaces = await netnsInterfaces(pod.pins.net).catch(() => [] as InterfaceUsage[]);
    for (const i of ifaces) {
      for (const m of NETWORK_METRICS) {
        metrics.push({ name: m.name, timestamp, metricType: COUNTER, labelValues: [pod.id, pod.spec.metadata.name, i.name], value: { value: m.value(i) } });
      }
    }
  }
  const containerMetrics = [];
  for (const rec of d.containers.byPod(pod.id).filter((c) => c.state === 'running')) {
    const sample = await sampleContainer(d, rec, fs);
    containerMetrics.push({ containerId: rec.id, metrics: toMetrics([rec.id, rec.spec.metadata.name], timestamp, CONTAINER_METRICS, sample) });
  }
  return { podSandboxId: pod.id, metrics, containerMetrics };
}

export async function listPodSandboxMetrics(d: StatsDeps): Promise<Input<ListPodSandboxMetricsResponse>> {
  const fs = await snapshotterFs(d);
  const pods = d.pods.list().filter((p) => p.state === 'ready');
  return { podMetrics: await Promise.all(pods.map((p) => podMetrics(d, p, fs))) };
}
