// Processes behind a pod, for tests that look at shims and containers from the host.
import { readFileSync } from 'node:fs';
import type { Stack } from './stack.js';

/** The parent of `pid` (a container's init: its shim). */
export function parentPid(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('PPid:'))!;
  return Number(line.split(/\s+/)[1]);
}

/** The host pid of a container's init process, from ContainerStatus's verbose info. */
export async function containerPid(s: Stack, id: string): Promise<number> {
  const st = await s.d.client.runtime.unary('ContainerStatus', { containerId: id, verbose: true });
  return (JSON.parse(st.info.info!) as { pid: number }).pid;
}

/** StopPodSandbox then RemovePodSandbox. */
export async function removePod(s: Stack, podId: string): Promise<void> {
  await s.d.client.runtime.unary('StopPodSandbox', { podSandboxId: podId });
  await s.d.client.runtime.unary('RemovePodSandbox', { podSandboxId: podId });
}
