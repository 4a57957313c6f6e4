// Typed containerd API client: one gRPC channel, one typed view per service, the namespace header on
// every call and the lease header where a caller asks for it.
import type { GrpcChannel } from '../../common/grpc-channel.js';
import { ServiceClient, unixChannel, type CallOptions } from '../../common/grpc-client.js';
import { unavailable, errorMessage } from '../../common/errors.js';
import type { MethodTable } from '../../common/grpc-types.js';
import { type VersionMethods, VersionName } from '../../gen/containerd.services.version.v1.js';
import { type IntrospectionMethods, IntrospectionName } from '../../gen/containerd.services.introspection.v1.js';
import { type NamespacesMethods, NamespacesName } from '../../gen/containerd.services.namespaces.v1.js';
import { type ContentMethods, ContentName } from '../../gen/containerd.services.content.v1.js';
import { type ImagesMethods, ImagesName } from '../../gen/containerd.services.images.v1.js';
import { type SnapshotsMethods, SnapshotsName } from '../../gen/containerd.services.snapshots.v1.js';
import { type DiffMethods, DiffName } from '../../gen/containerd.services.diff.v1.js';
import { type LeasesMethods, LeasesName } from '../../gen/containerd.services.leases.v1.js';
import { type ContainersMethods, ContainersName } from '../../gen/containerd.services.containers.v1.js';
import { type TasksMethods, TasksName } from '../../gen/containerd.services.tasks.v1.js';
import { type EventsMethods, EventsName } from '../../gen/containerd.services.events.v1.js';

export const NAMESPACE_HEADER = 'containerd-namespace';
export const LEASE_HEADER = 'containerd-lease';

export interface ContainerdClientOptions {
  address: string;
  namespace: string;
  /** Default deadline of unary calls, in milliseconds. */
  timeoutMs: number;
}

export interface ContainerdVersion {
  version: string;
  revision: string;
}

export class ContainerdClient {
  readonly version: ServiceClient<VersionMethods>;
  readonly introspection: ServiceClient<IntrospectionMethods>;
  readonly namespaces: ServiceClient<NamespacesMethods>;
  readonly content: ServiceClient<ContentMethods>;
  readonly images: ServiceClient<ImagesMethods>;
  readonly snapshots: ServiceClient<SnapshotsMethods>;
  readonly diff: ServiceClient<DiffMethods>;
  readonly leases: ServiceClient<LeasesMethods>;
  readonly containers: ServiceClient<ContainersMethods>;
  readonly tasks: ServiceClient<TasksMethods>;
  readonly events: ServiceClient<EventsMethods>;
  private readonly channel: GrpcChannel;

  constructor(readonly options: ContainerdClientOptions) {
    this.channel = unixChannel(options.address);
    const defaults = () => ({ metadata: { [NAMESPACE_HEADER]: options.namespace }, timeoutMs: options.timeoutMs });
    const view = <M extends MethodTable<M>>(name: string) => new ServiceClient<M>(this.channel, name, defaults);
    this.version = view<VersionMethods>(VersionName);
    this.introspection = view<IntrospectionMethods>(IntrospectionName);
    this.namespaces = view<NamespacesMethods>(NamespacesName);
    this.content = view<ContentMethods>(ContentName);
    this.images = view<ImagesMethods>(ImagesName);
    this.snapshots = view<SnapshotsMethods>(SnapshotsName);
    this.diff = view<DiffMethods>(DiffName);
    this.leases = view<LeasesMethods>(LeasesName);
    this.containers = view<ContainersMethods>(ContainersName);
    this.tasks = view<TasksMethods>(TasksName);
    this.events = view<EventsMethods>(EventsName);
  }

  /** Call options that attach a lease to the call. */
  static withLease(leaseId: string, opts: CallOptions = {}): CallOptions {
    return { ...opts, metadata: { ...opts.metadata, [LEASE_HEADER]: leaseId } };
  }

  /** The daemon's version, or UNAVAILABLE naming the address. */
  async ping(timeoutMs = 2000): Promise<ContainerdVersion> {
    try {
      const v = await this.version.unary('Version', {}, { timeoutMs });
      return { version: v.version, revision: v.revision };
    } catch (err) {
      throw unavailable(`containerd at ${this.options.address} is not answering: ${errorMessage(err)}`, err);
    }
  }

  /** How many connections to containerd were made so far; a change during a call means containerd restarted (or the connection dropped) meanwhile. */
  connectionCount(): number {
    return this.channel.connections;
  }

  close(): void {
    this.channel.close();
  }
}
