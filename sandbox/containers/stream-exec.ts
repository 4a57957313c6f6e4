// Exec with live streams (CRI Exec through the streaming server): the process gets FIFOs for stdin,
// stdout and stderr (or one terminal), output is forwarded as it comes, the client's stdin EOF becomes
// CloseIO, terminal sizes become ResizePty, and the exit code comes from Wait. The exec process never
// outlives the session: a client that goes away gets it killed, and it is always deleted.
import { randomBytes } from 'node:crypto';
import { constants, openSync } from 'node:fs';
import { Socket as NetSocket } from 'node:net';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../../common/logger.js';
import { failedPrecondition, invalidArgument, errorMessage, withContext } from '../../common/errors.js';
import { makeFifos, openFifoDuplex } from '../../common/fifo.js';
import type { ContainerdRuntime } from '../../backend/containerd/runtime.js';
import type { ContainerRecord } from './types.js';
import type { StreamIO, TerminalSize } from './stream-io.js';

const SIGKILL = 9;
/** How long a tty exec waits for the client's first terminal size, so the process starts with it. */
const FIRST_SIZE_WAIT_MS = 1000;
/** How long output may take to drain after the process was deleted. */
const DRAIN_TIMEOUT_MS = 5000;

export interface StreamExecArgs {
  runtime: ContainerdRuntime;
  container: ContainerRecord;
  /** The container's OCI process (user, env, cwd, capabilities...) the exec inherits. */
  processSpec: Record<string, unknown>;
  cmd: string[];
  /** Scratch space for the FIFOs (<state>/exec). */
  workDir: string;
  log: Logger;
}

/**
 * Forwards what arrives on an output FIFO to `out`, pausing the FIFO while `out` is full. FIFOs are
 * held O_RDWR (common/fifo.ts), so no EOF comes: `drain()` writes a random marker after the shim is
 * done and resolves once it has come through, i.e. once every earlier byte was forwarded.
 */
class FifoForwarder {
  private marker: Buffer | undefined;
  private tail = Buffer.alloc(0);
  private arrived: (() => void) | undefined;

  constructor(
    private readonly fifo: NetSocket,
    private readonly out: Writable,
  ) {
    fifo.on('data', (chunk: Buffer) => this.onData(chunk));
    fifo.on('error', () => undefined);
  }

  private onData(chunk: Buffer): void {
    if (!this.marker) return this.forward(chunk);
    const joined = this.tail.length > 0 ? Buffer.concat([this.tail, chunk]) : chunk;
    const at = joined.indexOf(this.marker);
    if (at >= 0) {
      this.forward(joined.subarray(0, at));
      this.tail = Buffer.alloc(0);
      this.arrived?.();
      return;
    }
    // Keep a window so a marker split across chunks is still found.
    const safe = Math.max(0, joined.length - this.marker.length);
    this.forward(joined.subarray(0, safe));
    this.tail = Buffer.from(joined.subarray(safe));
  }

  private forward(data: Buffer): void {
    if (data.length === 0 || this.out.destroyed || this.out.writableEnded) return;
    if (!this.out.write(data)) {
      this.fifo.pause();
      const resume = () => {
        this.out.off('drain', resume);
        this.out.off('close', resume);
        this.fifo.resume();
      };
      this.out.on('drain', resume);
      this.out.on('close', resume);
    }
  }

  async drain(timeoutMs = DRAIN_TIMEOUT_MS): Promise<void> {
    this.marker = randomBytes(24);
    const arrived = new Promise<void>((resolve) => (this.arrived = resolve));
    this.fifo.write(this.marker);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([arrived, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  close(): void {
    this.fifo.destroy();
  }
}

/**
 * The stdin FIFO's write end. Held O_RDWR like the others (opening never blocks on the shim), but as a
 * socket that never reads: one that did would race the shim for the client's input.
 */
function openWriteOnly(path: string): NetSocket {
  const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
  return new NetSocket({ fd, readable: false, writable: true });
}

/** Copies the client's stdin into the stdin FIFO (with backpressure); resolves when the client closed it. */
function pumpStdin(stdin: Readable, fifo: NetSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stdin.off('data', onData);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      if (fifo.destroyed) return;
      if (!fifo.write(chunk)) {
        stdin.pause();
        fifo.once('drain', () => stdin.resume());
      }
    };
    stdin.on('data', onData);
    stdin.once('end', done);
    stdin.once('close', done);
  });
}

/** Runs `cmd` in the container with the client's streams; resolves with its exit code. */
export async function streamExec(args: StreamExecArgs, io: StreamIO): Promise<number> {
  const { runtime, container: c, log } = args;
  if (args.cmd.length === 0) throw invalidArgument('cmd is required');
  if (c.state !== 'running') throw failedPrecondition(`container ${c.id} is ${c.state}, not running`);
  const execId = `exec-${randomBytes(8).toString('hex')}`;
  const dir = join(args.workDir, execId);
  const ctx = `exec ${execId} in container ${c.id.slice(0, 12)}`;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const paths = {
    stdin: io.stdin ? join(dir, 'stdin') : '',
    stdout: io.stdout ? join(dir, 'stdout') : '',
    stderr: io.stderr && !io.tty ? join(dir, 'stderr') : '',
  };
  const fifos: NetSocket[] = [];
  const forwarders: FifoForwarder[] = [];
  let created = false;
  let started = false;
  let deleted = false;
  let unsubscribe = () => {};
  let startSize: TerminalSize | undefined;
  const onAbort = () => {
    if (started) void runtime.kill(c.id, SIGKILL, { execId }).catch((err: unknown) => log.warn({ execId, err: errorMessage(err) }, 'killing exec of a departed client failed'));
  };
  try {
    await makeFifos(...Object.values(paths).filter(Boolean));
    // All FIFOs are held O_RDWR (see common/fifo.ts): opening never blocks on the shim.
    const open = async (path: string) => {
      const s = await openFifoDuplex(path);
      fifos.push(s);
      return s;
    };
    const stdinFifo = paths.stdin ? openWriteOnly(paths.stdin) : undefined;
    if (stdinFifo) fifos.push(stdinFifo);
    for (const [path, out] of [
      [paths.stdout, io.stdout],
      [paths.stderr, io.stderr],
    ] as const) {
      if (path && out) forwarders.push(new FifoForwarder(await open(path), out));
    }

    const processSpec: Record<string, unknown> = { ...args.processSpec, args: args.cmd, terminal: io.tty };
    if (io.tty && io.sizes) {
      // Start at the client's size when it tells us soon enough, so the first output already fits.
      startSize = await io.sizes.first(FIRST_SIZE_WAIT_MS);
      if (startSize) processSpec.consoleSize = { height: startSize.height, width: startSize.width };
    }
    if (io.signal.aborted) throw failedPrecondition(`${ctx}: the client went away before the process started`);
    await runtime.exec(c.id, execId, processSpec, { ...paths, terminal: io.tty });
    created = true;
    io.signal.addEventListener('abort', onAbort, { once: true });
    await runtime.startTask(c.id, execId);
    started = true;
    if (io.signal.aborted) onAbort();

    if (io.tty && io.sizes) {
      const resize = (s: TerminalSize) =>
        runtime.resizePty(c.id, execId, s.width, s.height).catch((err: unknown) => log.debug({ execId, err: errorMessage(err) }, 'resize failed'));
      unsubscribe = io.sizes.follow(resize, startSize);
    }

    if (io.stdin && stdinFifo) {
      const stdin = io.stdin;
      void pumpStdin(stdin, stdinFifo).then(async () => {
        // Our write end goes first, then the shim's (CloseIO): the process reads what is still
        // buffered in the FIFO before it sees EOF.
        await new Promise<void>((resolve) => stdinFifo.end(resolve));
        stdinFifo.destroy();
        if (!io.signal.aborted) await runtime.closeStdin(c.id, execId).catch((err: unknown) => log.debug({ execId, err: errorMessage(err) }, 'CloseIO failed'));
      });
    }

    const exited = await runtime.wait(c.id, execId);
    if (!exited) throw failedPrecondition(`${ctx}: the process disappeared before its exit status was read`);
    // Deleting the process waits for the shim to finish copying output into the FIFOs.
    await runtime.deleteExec(c.id, execId);
    deleted = true;
    await Promise.all(forwarders.map((f) => f.drain()));
    log.debug({ execId, exitCode: exited.exitStatus }, 'streaming exec finished');
    return exited.exitStatus;
  } catch (err) {
    throw withContext(ctx, err);
  } finally {
    io.signal.removeEventListener('abort', onAbort);
    unsubscribe();
    if (created && !deleted) {
      // Whatever happened above, no exec process stays behind.
      await runtime.kill(c.id, SIGKILL, { execId }).catch(() => undefined);
      if (started) await runtime.wait(c.id, execId, 10_000).catch(() => undefined);
      await runtime.deleteExec(c.id, execId).catch((err: unknown) => log.warn({ execId, err: errorMessage(err) }, 'deleting exec process failed'));
    }
    for (const f of forwarders) f.close();
    for (const s of fifos) s.destroy();
    await rm(dir, { recursive: true, force: true });
  }
}

