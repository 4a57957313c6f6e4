// Exec and attach sessions, independent of the transport: the SPDY and WebSocket front ends turn their
// streams into RemoteCommandStreams, this runs the command through the runtime and ends the session the
// way clients expect it: output streams end first, then the Status on the error stream, then the
// transport closes.
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';
import type { StreamingRuntime, TerminalSizes } from '../../sandbox/streaming.js';
import { exitCodeStatus, internalErrorStatus, successStatus, type KubeStatus } from './status.js';
import { firstEvent } from '../../common/first-event.js';

/** What a token stands for: an exec or attach request as CRI validated it. */
export interface ExecTarget {
  kind: 'exec';
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface AttachTarget {
  kind: 'attach';
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export type RemoteCommandTarget = ExecTarget | AttachTarget;

export interface RemoteCommandStreams {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  sizes?: TerminalSizes;
  /** Aborts when the transport closes (client gone, idle timeout, shutdown). */
  signal: AbortSignal;
  /** Encodes and sends the final Status on the error stream. */
  writeStatus(status: KubeStatus): Promise<void>;
  /** Closes the transport once everything was sent. */
  finish(): Promise<void>;
}

function endWritable(w: Writable | undefined): Promise<void> {
  if (!w || w.destroyed || w.writableFinished) return Promise.resolve();
  const ended = firstEvent(w, ['finish', 'close']);
  w.end();
  return ended;
}

export async function runRemoteCommand(runtime: StreamingRuntime, target: RemoteCommandTarget, s: RemoteCommandStreams, log: Logger): Promise<void> {
  const io = {
    ...(s.stdin ? { stdin: s.stdin } : {}),
    ...(s.stdout ? { stdout: s.stdout } : {}),
    ...(s.stderr && !target.tty ? { stderr: s.stderr } : {}),
    ...(s.sizes ? { sizes: s.sizes } : {}),
    tty: target.tty,
    signal: s.signal,
  };
  let status: KubeStatus;
  try {
    if (target.kind === 'exec') {
      const code = await runtime.exec(target.containerId, target.cmd, io);
      status = code === 0 ? successStatus() : exitCodeStatus(code, `error executing command ${JSON.stringify(target.cmd)}, exit code ${code}`);
    } else {
      await runtime.attach(target.containerId, io);
      status = successStatus();
    }
  } catch (err) {
    const message = errorMessage(err);
    log.info({ kind: target.kind, container: target.containerId.slice(0, 12), err: message }, 'streaming session failed');
    status = internalErrorStatus(`error ${target.kind === 'exec' ? 'executing command in' : 'attaching to'} container: ${message}`);
  }
  try {
    await Promise.all([endWritable(s.stdout), endWritable(s.stderr)]);
    if (!s.signal.aborted) await s.writeStatus(status);
  } finally {
    await s.finish();
  }
}
