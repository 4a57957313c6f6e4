// The CRI gRPC server on its unix socket: safe socket set-up (a parent crisp creates is 0700, the
// socket 0660 root-owned, a stale socket replaced, a live one refused) and the two CRI services bound
// through the instrument layer.
import { chmodSync, unlinkSync } from 'node:fs';
import { RuntimeServiceName, ImageServiceName, type RuntimeServiceMethods, type ImageServiceMethods } from '../gen/runtime.v1.js';
import { GrpcServer, bindService, type Handlers } from '../common/grpc-server.js';
import { claimSocketPath, unixSocketPath } from '../common/unix-socket.js';
import type { Instrument } from './instrument.js';

export function socketPath(endpoint: string): string {
  return unixSocketPath(endpoint);
}

/** Claim the CRI socket path: a stale socket is replaced, a live one or a non-socket refused. */
export async function prepareSocket(path: string): Promise<void> {
  await claimSocketPath(path, 'the CRI socket', '--socket (config socket)');
}

export interface CriServer {
  server: GrpcServer;
  path: string;
  /** Stop accepting, let running calls finish (bounded by the caller), then close. */
  shutdown(): Promise<void>;
  forceShutdown(): void;
}

/** Serve CRI on `path`; the caller has run prepareSocket(path) first. */
export async function startCriServer(
  path: string,
  instrument: Instrument,
  runtime: Handlers<RuntimeServiceMethods>,
  image: Handlers<ImageServiceMethods>,
): Promise<CriServer> {
  const server = new GrpcServer({ maxReceiveMessageLength: 16 * 1024 * 1024, maxSendMessageLength: 16 * 1024 * 1024 });
  bindService<RuntimeServiceMethods>(server, RuntimeServiceName, runtime, instrument.intercept, instrument.mapError);
  bindService<ImageServiceMethods>(server, ImageServiceName, image, instrument.intercept, instrument.mapError);
  await server.listen(path);
  chmodSync(path, 0o660);
  return {
    server,
    path,
    shutdown: () =>
      new Promise<void>((resolve) => {
        server.tryShutdown(() => {
          try {
            unlinkSync(path);
          } catch {
            // already gone
          }
          resolve();
        });
      }),
    forceShutdown: () => {
      server.forceShutdown();
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    },
  };
}
