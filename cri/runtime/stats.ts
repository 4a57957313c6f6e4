// ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats: cgroup counters (v1 or v2;
// a counter the host does not keep is absent, never zero), available memory against the limit, swap,
// pressure stall information where the kernel has it, the writable layer, the pod's network.
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
  PsiStats,
} from '../../gen/runtime.v1.js';
import type { Input } from '../../common/proto-registry.js';
import type { ContainerController } from '../../sandbox/containers/controller.js';
import type { PodController } from '../../sandbox/pods/controller.js';
import { netnsInterfaces, type CpuRate } from '../../sandbox/containers/stats.js';
import { sampleCgroup, type CgroupSample, type Psi, type PsiLine } from '../../sandbox/containers/metrics-sample.js';
import { cgroupfsPathOf } from '../../sandbox/cgroup-stats.js';
import { nowNanos } from '../../common/time.js';
import { requireString } from '../validate.js';

const u64 = (value: number) => ({ value });
/** A counter the host keeps, or nothing (absent, never zero). */
const opt = (value: number | undefined) => (value === undefined ? null : { value: Math.max(0, Math.floor(value)) });

function psiStats(p: Psi | undefined): Input<PsiStats> | null {
  if (!p) return null;
  const data = (l: PsiLine | undefined) => (l ? { Total: l.total, Avg10: l.avg10, Avg60: l.avg60, Avg300: l.avg300 } : null);
  return { Full: data(p.full), Some: data(p.some) };
}

/** CPU, memory, swap and io of one cgroup sample; `limit` is the memory limit kubelet set, if any. */
function usageOf(s: CgroupSample, timestamp: number, nanoCores: number | undefined, limit: number | undefined) {
  const available = limit !== undefined && s.memoryWorkingSet !== undefined ? Math.max(0, limit - s.memoryWorkingSet) : undefined;
  return {
    cpu: { timestamp, usageCoreNanoSeconds: opt(s.cpuUsageNanos), usageNanoCores: opt(nanoCores), psi: psiStats(s.psi?.cpu) },
    memory: {
      timestamp,
      workingSetBytes: opt(s.memoryWorkingSet),
      availableBytes: opt(available),
      usageBytes: opt(s.memoryUsage),
      rssBytes: opt(s.memoryRss),
      pageFaults: opt(s.pgfault),
      majorPageFaults: opt(s.pgmajfault),
      psi: psiStats(s.psi?.memory),
    },
    swap: {
      timestamp,
      swapUsageBytes: opt(s.memorySwap),
      swapAvailableBytes: opt(s.swapLimit !== undefined && s.memorySwap !== undefined ? Math.max(0, s.swapLimit - s.memorySwap) : undefined),
    },
    io: { timestamp, psi: psiStats(s.psi?.io) },
  };
}

async function sample(rate: CpuRate, key: string, cgroupsPath: string) {
  const s = await sampleCgroup(cgroupfsPathOf(cgroupsPath));
  const timestamp = nowNanos();
  const nanoCores = s.cpuUsageNanos === undefined ? undefined : rate.sample(key, timestamp, s.cpuUsageNanos);
  return { s, timestamp, nanoCores };
}

async function oneContainer(c: ContainerController, id: string, mountpoint: string): Promise<Input<ContainerStats>> {
  const rec = c.get(id);
  const attributes = { id: rec.id, metadata: rec.spec.metadata, labels: rec.spec.labels, annotations: rec.spec.annotations };
  const { s, timestamp, nanoCores } = await sample(c.cpuRate, rec.id, rec.cgroupsPath);
  const writable = await c.writableLayerUsage(rec.id).catch(() => undefined);
  return {
    attributes,
    ...usageOf(s, timestamp, nanoCores, rec.spec.resources.memoryLimitInBytes || s.memoryLimit),
    writableLayer: { timestamp, fsId: { mountpoint }, usedBytes: opt(writable?.bytes), inodesUsed: opt(writable?.inodes) },
  };
}

/** A container whose counters could not be read is still listed, with its attributes only. */
async function containerOrAttributes(c: ContainerController, id: string, mountpoint: string): Promise<Input<ContainerStats>> {
  try {
    return await oneContainer(c, id, mountpoint);
  } catch {
    const rec = c.get(id);
    return { attributes: { id: rec.id, metadata: rec.spec.metadata, labels: rec.spec.labels, annotations: rec.spec.annotations } };
  }
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
  return { stats: await Promise.all(recs.map((r) => containerOrAttributes(d.containers, r.id, mount))) };
}

async function onePod(d: StatsDeps, id: string, mount: string): Promise<Input<PodSandboxStats>> {
  const pod = d.pods.get(id);
  const { s, timestamp, nanoCores } = await sample(d.containers.cpuRate, `pod:${pod.id}`, pod.cgroup.path);
  const running = d.containers.byPod(pod.id).filter((c) => c.state === 'running');
  const containers = await Promise.all(running.map((c) => containerOrAttributes(d.containers, c.id, mount)));
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
      ...usageOf(s, timestamp, nanoCores, s.memoryLimit),
      ...(network ? { network } : {}),
      process: { timestamp, processCount: opt(s.processes) },
      containers,
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
  // A pod whose counters cannot be read is still listed, with its attributes only.
  const stats = await Promise.all(
    pods.map((p) =>
      onePod(d, p.id, mount).catch(() => ({ attributes: { id: p.id, metadata: p.spec.metadata, labels: p.spec.labels, annotations: p.spec.annotations } })),
    ),
  );
  return { stats };
}
