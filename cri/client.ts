// A typed CRI client (what kubelet speaks), used by the CLI, the e2e tests and the benchmarks.
import { ServiceClient, unixChannel } from '../common/grpc-client.js';
import { RuntimeServiceName, ImageServiceName, type RuntimeServiceMethods, type ImageServiceMethods } from '../gen/runtime.v1.js';
import type { GrpcChannel } from '../common/grpc-channel.js';

export const DEFAULT_ENDPOINT = 'unix:///run/crisp/crisp.sock';

export class CriClient {
  readonly runtime: ServiceClient<RuntimeServiceMethods>;
  readonly image: ServiceClient<ImageServiceMethods>;
  private readonly channel: GrpcChannel;

  constructor(endpoint: string = DEFAULT_ENDPOINT, timeoutMs = 120_000) {
    this.channel = unixChannel(endpoint);
    const defaults = () => ({ metadata: {}, timeoutMs });
    this.runtime = new ServiceClient<RuntimeServiceMethods>(this.channel, RuntimeServiceName, defaults);
    this.image = new ServiceClient<ImageServiceMethods>(this.channel, ImageServiceName, defaults);
  }

  close(): void {
    this.channel.close();
  }
}
