// The CRI gRPC server on its unix socket: safe socket set-up (0700 parent, 0660 socket, stale socket
// replaced, a live one refused) and the two CRI services bound through the instrument layer.
import * as grpc from '@grpc/grpc-js';
import { connect } from 'node:net';
import { chmodSync, mkdirSync, unlinkSync, lstatSync } from 'node:fs';
import { dirname } from 'node:path';
import { RuntimeServiceName, ImageServiceName, type RuntimeServiceMethods, type ImageServiceMethods } from '../gen/runtime.v1.js';
import { bindService, type Handlers } from '../common/grpc-server.js';
import { failedPrecondition, isENOENT, isErrno } from '../common/errors.js';
import type { Instrument } from './instrument.js';

export function socketPath(endpoint: string): string {
  return endpoint.startsWith('unix://') ? endpoint.slice('unix://'.length) : endpoint;
}

/** Resolves true when something accepts connections on `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Make the socket's directory private and remove a stale socket; refuse if a daemon is serving it. */
export async function prepareSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  chmodSync(dirname(path), 0o700);
  try {
    const st = lstatSync(path);
    if (!st.isSocket()) throw failedPrecondition(`${path} exists and is not a socket; remove it or choose another --socket`);
  } catch (err) {
    if (isENOENT(err)) return;
    throw err;
  }
  if (await socketAnswers(path)) {
    throw failedPrecondition(`another daemon is already serving ${path}; stop it first or choose another --socket`);
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
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
