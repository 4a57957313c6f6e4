// shareProcessNamespace pods: the one case a pauseless pod has a process — a tiny init (native helper)
// that holds the pod's pid namespace and reaps zombies, outliving crispd restarts.
import { startPidNamespace, stopPidNamespace } from '../../native/nshelper.js';

export async function startPodPidNamespace(nsDir: string, userns: string | undefined): Promise<{ pid: number; path: string }> {
  return startPidNamespace({ dir: nsDir, ...(userns ? { userns } : {}) });
}

export async function stopPodPidNamespace(nsDir: string, pid: number): Promise<void> {
  await stopPidNamespace({ dir: nsDir, pid });
}
