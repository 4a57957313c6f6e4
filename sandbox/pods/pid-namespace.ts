// shareProcessNamespace pods: the one case a pauseless pod has a process — a tiny init (native helper)
// that holds the pod's pid namespace and reaps zombies, outliving crispd restarts.
import { failedPrecondition } from '../../common/errors.js';

export async function startPodPidNamespace(_nsDir: string, _userns: string | undefined): Promise<{ pid: number; path: string }> {
  throw failedPrecondition('config.linux.security_context.namespace_options.pid: POD (shareProcessNamespace) is not supported yet');
}

export async function stopPodPidNamespace(_nsDir: string, _pid: number): Promise<void> {}
