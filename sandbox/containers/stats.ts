// Container and pod resource usage helpers: the CPU rate between samples, and the pod's network
// counters read inside its pinned network namespace (cgroup counters: metrics-sample.ts).
import { runChecked } from '../../native/spawner.js';

/** Remembers the previous CPU sample per key to turn cumulative time into a rate. */
export class CpuRate {
  private readonly last = new Map<string, { at: number; cpu: number }>();

  sample(key: string, at: number, cpu: number): number | undefined {
    const prev = this.last.get(key);
    this.last.set(key, { at, cpu });
    if (!prev || at <= prev.at) return undefined;
    return Math.max(0, Math.round(((cpu - prev.cpu) / (at - prev.at)) * 1e9));
  }

  forget(key: string): void {
    this.last.delete(key);
  }
}

export interface InterfaceUsage {
  name: string;
  rxBytes: number;
  rxPackets: number;
  rxErrors: number;
  rxDropped: number;
  txBytes: number;
  txPackets: number;
  txErrors: number;
  txDropped: number;
}

/** /proc/net/dev as seen inside `netns` (lo excluded). */
export async function netnsInterfaces(netns: string): Promise<InterfaceUsage[]> {
  const { stdout } = await runChecked('nsenter', [`--net=${netns}`, 'cat', '/proc/net/dev']);
  return parseProcNetDev(stdout).filter((i) => i.name !== 'lo');
}

export function parseProcNetDev(text: string): InterfaceUsage[] {
  const out: InterfaceUsage[] = [];
  for (const line of text.split('\n').slice(2)) {
    const [name, rest] = line.split(':');
    if (!name || !rest) continue;
    const f = rest.trim().split(/\s+/).map(Number);
    out.push({
      name: name.trim(),
      rxBytes: f[0] ?? 0,
      rxPackets: f[1] ?? 0,
      rxErrors: f[2] ?? 0,
      rxDropped: f[3] ?? 0,
      txBytes: f[8] ?? 0,
      txPackets: f[9] ?? 0,
      txErrors: f[10] ?? 0,
      txDropped: f[11] ?? 0,
    });
  }
  return out;
}
