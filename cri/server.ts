// The CRI gRPC server on its unix socket: safe socket set-up (a parent crisp creates is 0700, the
// socket 0660 root-owned, a stale socket replaced, a live one refused) and the two CRI services bound
// through the instrument layer.
import * as grpc from '@grpc/grpc-js';
import { chmodSync, unlinkSync } from 'node:fs';
import { RuntimeServiceName, ImageServiceName, type RuntimeServiceMethods, type ImageServiceMethods } from '../gen/runtime.v1.js';
import { bindService, type Handlers } from '../common/grpc-server.js';
import { claimSocketPath } from '../common/unix-socket.js';
import type { Instrument } from './instrument.js';

export function socketPath(endpoint: string): string {
  return endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
}

/** Claim the CRI socket path: a stale socket is replaced, a live one or a non-socket refused. */
export async function prepareSocket(path: string): Promise<void> {
  await claimSocketPath(path, 'the CRI socket', '--socket (config socket)');
}

export interface CriServer {
  server: grpc.Server;
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
  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
    // No channelz service is registered, so its per-call and per-message bookkeeping buys nothing.
    'grpc.enable_channelz': 0,
  });
  bindService<RuntimeServiceMethods>(server, RuntimeServiceName, runtime, instrument.intercept, instrument.mapError);
  bindService<ImageServiceMethods>(server, ImageServiceName, image, instrument.intercept, instrument.mapError);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
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
