// Port forwarding into a pod: one relay process per connection, inside the pod's pinned network
// namespace (crispd is multithreaded and cannot setns itself, so native/'s helper joins the namespace,
// connects to localhost:PORT and splices bytes both ways). Half-closes pass through: the client's end
// of its data becomes a shutdown(SHUT_WR) on the pod's socket, and the pod's end ends the stream.
import type { Duplex } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { failedPrecondition, invalidArgument } from '../../common/errors.js';
import { startPortForward, portForwardFailure } from '../../native/nshelper.js';
import type { PodRecord } from './types.js';

export interface PortForwardArgs {
  pod: PodRecord;
  port: number;
  /** The client's side: what it writes goes to the pod, what the pod answers is written to it. */
  stream: Duplex;
  /** Aborts when the client's session ends: the relay is killed. */
  signal: AbortSignal;
  log: Logger;
}

/** The network namespace a pod's ports live in (a host-network pod uses crispd's own). */
export function podNetns(pod: PodRecord): string {
  return pod.pins.net ?? '/proc/self/ns/net';
}

/** Relays one connection to `port` in the pod; resolves when both directions have closed. */
export function portForward(args: PortForwardArgs): Promise<void> {
  const { pod, port, stream, signal, log } = args;
  if (pod.state !== 'ready') return Promise.reject(failedPrecondition(`pod ${pod.id} is not ready; cannot forward port ${port}`));
  if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.reject(invalidArgument(`port ${port} is not 1-65535`));
  return new Promise<void>((resolve, reject) => {
    const child = startPortForward({ netns: podNetns(pod), port });
    let stderr = '';
    let settled = false;
    let killed = false;
    // Killed because the session or the client's stream ended: that is the end, not a failure.
    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) {
        killed = true;
        child.kill('SIGKILL');
      }
    };
    const onAbort = () => kill();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) kill();
    // The client resetting its stream ends the relay too (unless the relay is finishing by itself:
    // its exit status still tells whether it failed).
    let relayDone = false;
    const onStreamClose = () => {
      if (relayDone) child.stdin.end();
      else kill();
    };
    stream.once('close', onStreamClose);

    child.stderr.on('data', (c: Buffer) => {
      if (stderr.length < 4096) stderr += c.toString('utf8');
    });
    child.stdin.on('error', () => undefined); // EPIPE when the relay already exited
    stream.on('data', (chunk: Buffer) => {
      if (!child.stdin.write(chunk)) {
        stream.pause();
        child.stdin.once('drain', () => stream.resume());
      }
    });
    stream.once('end', () => child.stdin.end());
    child.stdout.on('data', (chunk: Buffer) => {
      if (stream.destroyed || stream.writableEnded) return;
      if (!stream.write(chunk)) {
        child.stdout.pause();
        stream.once('drain', () => child.stdout.resume());
      }
    });
    child.stdout.once('end', () => {
      relayDone = true;
      if (!stream.destroyed && !stream.writableEnded) stream.end();
    });
    child.once('error', (err) => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      reject(err);
    });
    child.once('close', (code, sig) => {
      signal.removeEventListener('abort', onAbort);
      stream.off('close', onStreamClose);
      if (settled) return;
      settled = true;
      if (code === 0 || signal.aborted || killed) {
        resolve();
        return;
      }
      const err = portForwardFailure(code, sig, stderr);
      log.debug({ pod: pod.id.slice(0, 12), port, err: err.message }, 'port forward ended with an error');
      reject(err);
    });
  });
}
