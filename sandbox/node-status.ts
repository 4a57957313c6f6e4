// What the node's runtime can say about itself: readiness of the runtime (containerd answers) and of
// the network (a valid CNI configuration exists), the runtime handlers and their features, and the pod
// CIDR kubelet hands down for CNI templating.
import type { ContainerdClient } from '../backend/containerd/client.js';
import { errorMessage } from '../common/errors.js';
import type { UsernsSupport } from './userns/probe.js';

export interface Condition {
  ready: boolean;
  reason: string;
  message: string;
}

export interface HandlerFeatures {
  name: string;
  recursiveReadOnlyMounts: boolean;
  userNamespaces: boolean;
}

export type CgroupDriver = 'systemd' | 'cgroupfs';

export interface NetworkReadiness {
  (): Promise<Condition>;
}

export interface NodeStatusOptions {
  containerd: ContainerdClient;
  containerdAddress: string;
  embedded: boolean;
  network: NetworkReadiness;
  handlers: () => HandlerFeatures[];
  cgroupDriver: CgroupDriver;
  /** What the start-up probe found for user-namespace pods (verbose info). */
  userns?: UsernsSupport;
}

export class NodeStatus {
  private podCidr = '';
  private nriPlugins: () => unknown[] = () => [];

  constructor(private readonly opts: NodeStatusOptions) {}

  async runtimeCondition(): Promise<Condition> {
    try {
      await this.opts.containerd.ping(2000);
      return { ready: true, reason: '', message: '' };
    } catch (err) {
      return { ready: false, reason: 'ContainerdUnavailable', message: errorMessage(err) };
    }
  }

  networkCondition(): Promise<Condition> {
    return this.opts.network();
  }

  handlers(): HandlerFeatures[] {
    return this.opts.handlers();
  }

  get cgroupDriver(): CgroupDriver {
    return this.opts.cgroupDriver;
  }

  /** NRI plugins for Status(verbose) (and so `crisp nri plugins`). */
  setNriPlugins(list: () => unknown[]): void {
    this.nriPlugins = list;
  }

  setPodCidr(cidr: string): void {
    this.podCidr = cidr;
  }

  getPodCidr(): string {
    return this.podCidr;
  }

  /** Details for Status(verbose). */
  async info(): Promise<Record<string, unknown>> {
    let containerd: unknown;
    try {
      containerd = await this.opts.containerd.ping(2000);
    } catch (err) {
      containerd = { error: errorMessage(err) };
    }
    return {
      containerd: { address: this.opts.containerdAddress, embedded: this.opts.embedded, ...(containerd as object) },
      cgroupDriver: this.opts.cgroupDriver,
      podCidr: this.podCidr,
      nri: { plugins: this.nriPlugins() },
      sandbox: { pauseContainer: false, pinnedNamespaces: ['net', 'ipc', 'uts'] },
      ...(this.opts.userns ? { userNamespaces: this.opts.userns } : {}),
    };
  }
}
