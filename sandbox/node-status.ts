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

const RUNTIME_CONDITION_MAX_AGE_MS = 1000;

export class NodeStatus {
  private podCidr = '';
  private nriPlugins: () => unknown[] = () => [];

  private runtimeCache: { at: number; value: Promise<Condition> } | undefined;

  constructor(private readonly opts: NodeStatusOptions) {}

  /**
   * RuntimeReady from a containerd ping, at most one per second: kubelet and monitoring poll Status
   * often, and an answer a second old is fresh enough (a containerd that dies shows within that).
   * Concurrent callers share one ping.
   */
  runtimeCondition(): Promise<Condition> {
    const now = Date.now();
    if (this.runtimeCache && now - this.runtimeCache.at < RUNTIME_CONDITION_MAX_AGE_MS) return this.runtimeCache.value;
    const value = this.opts.containerd.ping(2000).then(
      (): Condition => ({ ready: true, reason: '', message: '' }),
      (err: unknown): Condition => ({ ready: false, reason: 'ContainerdUnavailable', message: errorMessage(err) }),
    );
    this.runtimeCache = { at: now, value };
    return value;
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
