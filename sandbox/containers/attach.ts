// Attach to a container's main process. Its output is not re-plumbed: the shim-side logger owns
// stdout/stderr, so attach tails the container's CRI log file from where it ends now and turns the
// records back into the bytes the process wrote (P records are joined, F records end a line). Input
// goes into the stdin FIFO crispd holds for containers created with stdin. Several attaches may run
// at once; with stdin_once the first one that ends closes the container's stdin for good.
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { Socket } from 'node:net';
import type { Logger } from '../../common/logger.js';
import { failedPrecondition, errorMessage, isENOENT } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import type { ContainerdRuntime } from '../../backend/containerd/runtime.js';
import type { ContainerController } from './controller.js';
import { writeWithBackpressure, type StreamIO, type TerminalSize } from './stream-io.js';

const POLL_MS = 100;
/** After the exit, how long the logger gets to write the last records before the final read. */
const EXIT_SETTLE_MS = 300;

export interface CriLogRecord {
  stream: 'stdout' | 'stderr';
  /** The message bytes, with the newline back on for a full (F) line. */
  data: Buffer;
}

/** One CRI log line (without its newline) back to the bytes it stands for; undefined if malformed. */
export function decodeCriLogLine(line: Buffer): CriLogRecord | undefined {
  const s1 = line.indexOf(0x20);
  if (s1 <= 0) return undefined;
  const s2 = line.indexOf(0x20, s1 + 1);
  if (s2 < 0) return undefined;
  const stream = line.subarray(s1 + 1, s2).toString('latin1');
  if (stream !== 'stdout' && stream !== 'stderr') return undefined;
  const tag = line[s2 + 1];
  // The message follows the tag and one space; an empty F line may end right after the tag.
  if ((tag !== 0x46 && tag !== 0x50) || (line.length > s2 + 2 && line[s2 + 2] !== 0x20)) return undefined;
  const msg = line.subarray(Math.min(line.length, s2 + 3));
  return { stream, data: tag === 0x46 ? Buffer.concat([msg, Buffer.from('\n')]) : Buffer.from(msg) };
}

/**
 * Follows a CRI log file from its current end, across rotations (kubelet renames the file and asks
 * for a reopen: the rest of the old file is read before switching to the new one).
 */
export class CriLogTail {
  private fh: FileHandle | undefined;
  private ino = 0;
  private offset = 0;
  private partial = Buffer.alloc(0);
  private stopped = false;
  private loop: Promise<void> | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly path: string,
    private readonly onRecord: (r: CriLogRecord) => Promise<void>,
  ) {}

  /** Starts at the file's current end (a missing file is followed from its creation). */
  async start(): Promise<void> {
    await this.openAt('end');
    this.loop = (async () => {
      while (!this.stopped) {
        await this.poll().catch(() => undefined);
        await sleep(POLL_MS);
      }
    })();
  }

  private async openAt(where: 'end' | 'start'): Promise<void> {
    try {
      const fh = await open(this.path, 'r');
      const st = await fh.stat();
      this.fh = fh;
      this.ino = st.ino;
      this.offset = where === 'end' ? st.size : 0;
      this.partial = Buffer.alloc(0);
    } catch (err) {
      if (!isENOENT(err)) throw err;
      this.fh = undefined;
    }
  }

  /** Reads whatever was appended (and follows a rotation). Calls never overlap. */
  poll(): Promise<void> {
    const run = this.chain.then(() => this.pollOnce());
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async pollOnce(): Promise<void> {
    if (!this.fh) {
      await this.openAt('start');
      if (!this.fh) return;
    }
    await this.readToEnd();
    const now = await stat(this.path).catch(() => undefined);
    if (now && now.ino !== this.ino) {
      await this.readToEnd();
      await this.fh?.close().catch(() => undefined);
      this.fh = undefined;
      await this.openAt('start');
      await this.readToEnd();
    }
  }

  private async readToEnd(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    const buf = Buffer.alloc(64 * 1024);
    // A bounded console log starts over when full: read it again from the start.
    if ((await fh.stat()).size < this.offset) {
      this.offset = 0;
      this.partial = Buffer.alloc(0);
    }
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      if (bytesRead === 0) return;
      this.offset += bytesRead;
      let data = Buffer.concat([this.partial, buf.subarray(0, bytesRead)]);
      let nl: number;
      while ((nl = data.indexOf(0x0a)) >= 0) {
        const rec = decodeCriLogLine(data.subarray(0, nl));
        data = data.subarray(nl + 1);
        if (rec) await this.onRecord(rec);
      }
      this.partial = Buffer.from(data);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    await this.fh?.close().catch(() => undefined);
    this.fh = undefined;
  }
}

export interface AttachArgs {
  controller: ContainerController;
  runtime: ContainerdRuntime;
  containerId: string;
  log: Logger;
}

/** Copies the client's input into the container's stdin FIFO; resolves when the client closed it. */
function pumpInput(stdin: Readable, writer: Socket): Promise<void> {
  return new Promise((resolve) => {
    const onData = (chunk: Buffer) => {
      if (writer.destroyed) return;
      if (!writer.write(chunk)) {
        stdin.pause();
        writer.once('drain', () => stdin.resume());
      }
    };
    const done = () => {
      stdin.off('data', onData);
      resolve();
    };
    stdin.on('data', onData);
    stdin.once('end', done);
    stdin.once('close', done);
  });
}

/** Attaches until the container stops or the client goes away. */
export async function attachContainer(args: AttachArgs, io: StreamIO): Promise<void> {
  const { controller, runtime, log } = args;
  const rec = controller.get(args.containerId);
  const ctx = `attach to container ${rec.id.slice(0, 12)}`;
  if (rec.state !== 'running') throw failedPrecondition(`${ctx}: the container is ${rec.state}, not running`);
  if (io.tty && !rec.spec.tty) throw failedPrecondition(`${ctx}: the container was not created with a tty`);
  let writer: Socket | undefined;
  if (io.stdin) {
    if (!rec.spec.stdin) throw failedPrecondition(`${ctx}: the container was not created with stdin`);
    writer = controller.stdinWriter(rec.id);
    if (!writer) throw failedPrecondition(`${ctx}: the container's stdin is closed (stdin_once)`);
  }

  let onStop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (onStop = resolve));
  const unsubscribe = controller.onEvent((e) => {
    if (e.container.id === rec.id && (e.kind === 'stopped' || e.kind === 'deleted')) onStop();
  });
  const aborted = new Promise<void>((resolve) => {
    if (io.signal.aborted) resolve();
    io.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let offSize = () => {};
  let tail: CriLogTail | undefined;
  let stdinClosed = false;
  const closeStdinOnce = async () => {
    if (stdinClosed || !rec.spec.stdinOnce) return;
    stdinClosed = true;
    await controller.closeStdin(rec.id).catch((err: unknown) => log.warn({ container: rec.id.slice(0, 12), err: errorMessage(err) }, 'closing stdin (stdin_once) failed'));
  };
  try {
    if (io.stdout || io.stderr) {
      tail = new CriLogTail(controller.outputLog(rec).logPath, async (r) => {
        const out = r.stream === 'stderr' && !io.tty ? io.stderr : io.stdout;
        if (out) await writeWithBackpressure(out, r.data);
      });
      await tail.start();
    }
    if (io.tty && io.sizes) {
      const resize = (s: TerminalSize) =>
        runtime.resizePty(rec.id, '', s.width, s.height).catch((err: unknown) => log.debug({ err: errorMessage(err) }, 'attach resize failed'));
      offSize = io.sizes.follow(resize);
    }
    if (io.stdin && writer) void pumpInput(io.stdin, writer).then(closeStdinOnce);
    // The container may have stopped between the check above and the subscription.
    if (controller.get(rec.id).state !== 'running') onStop();
    const how = await Promise.race([stopped.then(() => 'stopped' as const), aborted.then(() => 'aborted' as const)]);
    if (how === 'stopped' && tail) {
      await sleep(EXIT_SETTLE_MS);
      await tail.poll().catch(() => undefined);
    }
  } finally {
    unsubscribe();
    offSize();
    await tail?.stop();
    if (io.stdin) await closeStdinOnce();
  }
}
