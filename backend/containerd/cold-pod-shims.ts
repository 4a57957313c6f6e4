// Pods whose shims containerd starts itself (warm_pod_shims off, or an external containerd): nothing is
// started ahead, but a removed pod's group socket is checked, since a containerd 2 shim leaves it
// behind (group-socket.ts).
import type { Logger } from '../../common/logger.js';
import type { PodShims } from '../../sandbox/pods/pod-shims.js';
import { groupSocketPath, waitSocketGone } from './group-socket.js';

export interface ColdPodShimsOptions {
  containerdAddress: string;
  namespace: string;
  log: Logger;
}

export class ColdPodShims implements PodShims {
  readonly warmsAhead = false;

  constructor(private readonly opts: ColdPodShimsOptions) {}

  warm(): void {
    // containerd starts the shim with the pod's first container.
  }

  ready(): Promise<void> {
    return Promise.resolve();
  }

  retire(): Promise<void> {
    // containerd ends the shim with the pod's last task.
    return Promise.resolve();
  }

  async forget(podId: string): Promise<void> {
    await waitSocketGone(groupSocketPath(this.opts.containerdAddress, this.opts.namespace, podId), this.opts.log);
  }

  recover(): Promise<void> {
    // Nothing of crisp's own to find: every shim is containerd's.
    return Promise.resolve();
  }
}
