// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
import type {
  ContainerStats,
  ContainerStatsRequest,
  ContainerStatsResponse,
  ListContainerStatsRequest,
  ListContainerStatsResponse,
  PodSandboxStats,
  PodSandboxStatsRequest,
  PodSandboxStatsResponse,
  ListPodSandboxStatsRequest,
  ListPodSandboxStatsResponse,
} from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import type { UsageSample } from '../../sandbox/containers/stats.js';
import { cgroupUsage, netnsInterfaces } from '../../sandbox/containers/stats.js';
import { nowNanos } from '../../common/time.js';
import { requireString } from '../validate.js';

const u64 = (value: number) => ({ value });

function cpuMem(u: UsageSample) {
  return {
    cpu: {
      timestamp: u.timestamp,
      usageCoreNanoSeconds: u64(u.cpuUsageNanos),
      ...(u.nanoCores !== undefined ? { usageNanoCores: u64(u.nanoCores) } : {}),
    },
    memory: {
      timestamp: u.timestamp,
      workingSetBytes: u64(u.memoryWorkingSetBytes),
      usageBytes: u64(u.memoryUsageBytes),
      rssBytes: u64(u.memoryRssBytes),
      pageFaults: u64(u.pageFaults),
      majorPageFaults: u64(u.majorPageFaults),
    },
  };
}

async function oneContainer(c: ContainerController, id: string, mountpoint: string): Promise<Input<ContainerStats>> {
  const rec = c.get(id);
  const { usage, writable } = await c.stats(id);
  return {
    attributes: { id: rec.id, metadata: rec.spec.metadata, labels: rec.spec.labels, annotations: rec.spec.annotations },
    ...cpuMem(usage),
    writableLayer: { timestamp: writable.timestamp, fsId: { mountpoint }, usedBytes: u64(writable.bytes), inodesUsed: u64(writable.inodes) },
  };
}

export interface StatsDeps {
  containers: ContainerController;
  pods: PodController;
  /** The snapshotter directory, reported as the writable layers' filesystem. */
  snapshotMount: () => Promise<string>;
}

export async function containerStats(d: StatsDeps, req: ContainerStatsRequest): Promise<Input<ContainerStatsResponse>> {
  return { stats: await oneContainer(d.containers, requireString(req.containerId, 'container_id'), await d.snapshotMount()) };
}

export async function listContainerStats(d: StatsDeps, req: ListContainerStatsRequest): Promise<Input<ListContainerStatsResponse>> {
  const f = req.filter;
  const mount = await d.snapshotMount();
  const recs = d.containers
    .list()
    .filter((r) => r.state === 'running')
    .filter((r) => !f || ((!f.id || r.id.startsWith(f.id)) && (!f.podSandboxId || r.podId.startsWith(f.podSandboxId)) && Object.entries(f.labelSelector).every(([k, v]) => r.spec.labels[k] === v)));
  const stats = await Promise.all(recs.map((r) => oneContainer(d.containers, r.id, mount).catch(() => undefined)));
  return { stats: stats.filter((s): s is Input<ContainerStats> => s !== undefined) };
}

async function onePod(d: StatsDeps, id: string, mount: string): Promise<Input<PodSandboxStats>> {
  const pod = d.pods.get(id);
  const usage = await cgroupUsage(d.containers.cpuRate, `pod:${pod.id}`, pod.cgroup.path);
  const running = d.containers.byPod(pod.id).filter((c) => c.state === 'running');
  const containers = await Promise.all(running.map((c) => oneContainer(d.containers, c.id, mount).catch(() => undefined)));
  let network;
  if (pod.pins.net && pod.state === 'ready') {
    const ifaces = await netnsInterfaces(pod.pins.net).catch(() => []);
    const toCri = (i: (typeof ifaces)[number]) => ({ name: i.name, rxBytes: u64(i.rxBytes), rxErrors: u64(i.rxErrors), txBytes: u64(i.txBytes), txErrors: u64(i.txErrors) });
    const def = ifaces.find((i) => i.name === 'eth0') ?? ifaces[0];
    network = { timestamp: nowNanos(), defaultInterface: def ? toCri(def) : null, interfaces: ifaces.filter((i) => i !== def).map(toCri) };
  }
  return {
    attributes: { id: pod.id, metadata: pod.spec.metadata, labels: pod.spec.labels, annotations: pod.spec.annotations },
    linux: {
      ...cpuMem(usage),
      ...(network ? { network } : {}),
      process: { timestamp: usage.timestamp, processCount: u64(usage.processCount) },
      containers: containers.filter((s): s is Input<ContainerStats> => s !== undefined),
    },
  };
}

export async function podSandboxStats(d: StatsDeps, req: PodSandboxStatsRequest): Promise<Input<PodSandboxStatsResponse>> {
  return { stats: await onePod(d, requireString(req.podSandboxId, 'pod_sandbox_id'), await d.snapshotMount()) };
}

export async function listPodSandboxStats(d: StatsDeps, req: ListPodSandboxStatsRequest): Promise<Input<ListPodSandboxStatsResponse>> {
  const f = req.filter;
  const mount = await d.snapshotMount();
  const pods = d.pods
    .list()
    .filter((p) => p.state === 'ready')
    .filter((p) => !f || ((!f.id || p.id.startsWith(f.id)) && Object.entries(f.labelSelector).every(([k, v]) => p.spec.labels[k] === v)));
  const stats = await Promise.all(pods.map((p) => onePod(d, p.id, mount).catch(() => undefined)));
  return { stats: stats.filter((s): s is Input<PodSandboxStats> => s !== undefined) };
}
