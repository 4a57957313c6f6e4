// A warm shim per pod. containerd's CRI pays for a pod's shim when it starts the pause container; a
// pauseless pod would pay for it in its first StartContainer. So crispd starts the runc v2 shim of the
// pod's group (the shim groups containers by io.kubernetes.cri.sandbox-id = the pod id) as
// RunPodSandbox answers, exactly as containerd would start it — the same binary, `-namespace N
// -address A -publish-binary B -id <pod> start`, TTRPC_ADDRESS in the environment — from a directory
// of crisp's: config.json naming the group, `log` (a link to the one FIFO all warm shims write their
// logs to, which crispd drains), and the `address` file the shim writes. containerd's own `start` for
// the pod's first container finds the group's socket served and hands that shim the task.
//
// The shim exits when it serves no container and is told to shut down: by containerd after it deletes
// the pod's last task, or by crispd when the pod stops or goes (a shim still serving a container
// ignores Shutdown). Everything here is best effort: when a warm shim is missing, containerd simply
// starts one, as it would without crisp's help.
import { lstat, mkdir, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { connect, Socket } from 'node:net';
import { basename, join } from 'node:path';
import { constants, openSync } from 'node:fs';
import type { Logger } from '../../common/logger.js';
import { errorMessage, isErrno } from '../../common/errors.js';
import { makeFifos } from '../../common/fifo.js';
import { unixSocketPath } from '../../common/unix-socket.js';
import { codecFor } from '../../common/proto-registry.js';
import { describeFailure, runCommand, succeeded } from '../../native/spawner.js';
import type { PodShims } from '../../sandbox/pods/pod-shims.js';
import type { ShutdownRequest } from '../../gen/containerd.task.v2.js';
import { SHIM_BINARY_ENV } from './shim-start-helper.js';
import { groupSocketPath, waitSocketFree, waitSocketGone } from './group-socket.js';

/** The annotation the runc v2 shim groups a pod's containers by (crisp's OCI spec sets it). */
export const SHIM_GROUP_ANNOTATION = 'io.kubernetes.cri.sandbox-id';

/** The shim's task service: v2 for containerd 1.x shims, v3 (same messages) for 2.x shims. */
const TASK_SERVICES = ['containerd.task.v2.Task', 'containerd.task.v3.Task'];
const UNIMPLEMENTED = 12;
const CALL_TIMEOUT_MS = 2000;
/** Longest a container's start waits for its pod's warm shim to come up. */
const READY_WAIT_MS = 3000;
/** How long removed pods are collected before one /proc scan looks for their unreachable warm shims. */
const UNREACHABLE_SCAN_DELAY_MS = 1000;
/** Longest shim log line passed on to crispd's log. */
const MAX_LOG_LINE = 2048;
/** The shared log FIFO's name in the shims directory (no pod id looks like it). */
const LOG_FIFO = 'log.fifo';

export interface WarmShimsOptions {
  /** <state>/shims: one directory per pod with a warm shim. */
  dir: string;
  shimBinary: string;
  /** crisp-shim-start, when containerd runs it in front of the shim: it runs the start (without the shim's own start-up). */
  starter?: string;
  /** containerd's gRPC address exactly as containerd passes it to shims (its [grpc] address). */
  containerdAddress: string;
  /** containerd's ttrpc address (the shim publishes events there). */
  ttrpcAddress: string;
  /** The containerd binary (the shim's -publish-binary). */
  containerdBinary: string;
  namespace: string;
  log: Logger;
}

function isGone(err: unknown): boolean {
  return isErrno(err, 'ENOENT') || isErrno(err, 'ECONNREFUSED');
}

export class WarmShims implements PodShims {
  readonly warmsAhead = true;
  private fifoReady: Promise<void> | undefined;
  /** Removed pods whose unreachable warm shim the next /proc scan looks for, and that scan's timer. */
  private readonly unreachablePods = new Set<string>();
  private unreachableScan: NodeJS.Timeout | undefined;
  private drainSocket: Socket | undefined;
  private readonly starting = new Map<string, Promise<void>>();
  /** Warm-ups past the wait for a previous shim: their shim `start` runs. */
  private readonly launching = new Map<string, Promise<void>>();
  private readonly shutdownCodec = codecFor<ShutdownRequest>('containerd.task.v2.ShutdownRequest');

  constructor(private readonly opts: WarmShimsOptions) {}

  podDir(podId: string): string {
    return join(this.opts.dir, podId);
  }

  /** Where the group's shim listens (see group-socket.ts). */
  groupSocket(podId: string): string {
    return groupSocketPath(this.opts.containerdAddress, this.opts.namespace, podId);
  }

  warm(podId: string, opts: { afterShimExit?: boolean } = {}): void {
    if (this.starting.has(podId)) return;
    // Launched at once when nothing is waited for, so a ready() right after sees the launch.
    const launched = opts.afterShimExit ? this.waitGroupFree(podId).then((free) => (free ? this.launch(podId) : undefined)) : this.launch(podId);
    const started = launched
      .catch((err: unknown) => this.opts.log.warn({ pod: podId.slice(0, 12), err: errorMessage(err) }, 'warm shim did not start; the first container starts one'))
      .finally(() => this.starting.delete(podId));
    this.starting.set(podId, started);
  }

  ready(podId: string): Promise<void> {
    // Only a shim being launched is waited for: while a warm-up waits for the pod's previous shim to let
    // go of the group socket, a container's start has its own path (containerd starts or joins a shim).
    const starting = this.launching.get(podId);
    if (!starting) return Promise.resolve();
    // Bounded: a start that hangs (its own timeout is longer) must not hold a container's start.
    let timer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, READY_WAIT_MS)));
    return Promise.race([starting, bound]).finally(() => clearTimeout(timer));
  }

  /** start(), visible to ready() while it runs. */
  private launch(podId: string): Promise<void> {
    const launched = this.start(podId).finally(() => this.launching.delete(podId));
    this.launching.set(podId, launched.catch(() => undefined));
    return launched;
  }

  private async start(podId: string): Promise<void> {
    const dir = this.podDir(podId);
    await this.logFifo();
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, 'config.json'), JSON.stringify({ annotations: { [SHIM_GROUP_ANNOTATION]: podId } }), { mode: 0o600 });
    // Every warm shim logs into the one FIFO crispd drains: no FIFO (and no mkfifo exec) per pod.
    await symlink(join(this.opts.dir, LOG_FIFO), join(dir, 'log')).catch((err: unknown) => {
      if (!isErrno(err, 'EEXIST')) throw err;
    });
    // The start command reads runtime options from stdin until EOF: it gets none.
    const starter = this.opts.starter ?? this.opts.shimBinary;
    const env: Record<string, string> = { ...(process.env as Record<string, string>), TTRPC_ADDRESS: this.opts.ttrpcAddress, GOMAXPROCS: '2' };
    if (this.opts.starter) env[SHIM_BINARY_ENV] = this.opts.shimBinary;
    const started = await runCommand(
      starter,
      ['-namespace', this.opts.namespace, '-address', this.opts.containerdAddress, '-publish-binary', this.opts.containerdBinary, '-id', podId, 'start'],
      { cwd: dir, env, timeoutMs: 10_000 },
    );
    if (!succeeded(started)) throw new Error(`${describeFailure(starter, started)} ${started.stdout.trim().slice(0, 500)}`);
    const address = await this.recordAddress(dir, started.stdout.trim());
    this.opts.log.debug({ pod: podId.slice(0, 12), address: address.slice(0, 200) }, 'warm shim started');
  }

  /**
   * The socket address a `start` printed: 1.x shims print it and write `address` themselves; 2.x shims
   * print their bootstrap parameters as JSON and write no file, so crisp writes `address` for them (their
   * Shutdown then removes the socket, and retire() finds the shim).
   */
  private async recordAddress(dir: string, printed: string): Promise<string> {
    if (!printed.startsWith('{')) return printed;
    const { address } = JSON.parse(printed) as { address?: unknown };
    if (typeof address !== 'string' || address === '') throw new Error(`the shim's start printed no address: ${printed.slice(0, 200)}`);
    await writeFile(join(dir, 'address'), address, { mode: 0o600 });
    return address;
  }

  /**
   * A shim told to shut down still answers on its socket for a moment; a `start` then would join the
   * exiting shim instead of starting one. Waits (up to ~1 s) until the socket is gone or nobody answers
   * on it any more (then removes it); false if a shim still serves it.
   */
  private waitGroupFree(podId: string): Promise<boolean> {
    // False: a shim serves the pod again (a container started meanwhile); nothing to warm.
    return waitSocketFree(this.groupSocket(podId), 40, 25);
  }

  /** The FIFO every warm shim writes its log to (`log` in a shim's directory links to it), drained from the first warm-up on. */
  private logFifo(): Promise<void> {
    this.fifoReady ??= (async () => {
      await mkdir(this.opts.dir, { recursive: true, mode: 0o700 });
      const fifo = join(this.opts.dir, LOG_FIFO);
      // Kept across crispd restarts: running shims hold it open and write to it again once drained.
      const existing = await lstat(fifo).catch((err: unknown) => {
        if (isErrno(err, 'ENOENT')) return undefined;
        throw err;
      });
      if (existing && !existing.isFIFO()) throw new Error(`${fifo} exists and is not a FIFO`);
      if (!existing) await makeFifos(fifo);
      this.drain(fifo);
    })();
    return this.fifoReady;
  }

  /** Passes shim log lines on at debug level; the O_RDWR end never sees EOF, so it never blocks a shim. */
  private drain(fifo: string): void {
    const fd = openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK);
    const socket = new Socket({ fd, readable: true, writable: false });
    let partial = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = (lines.pop() ?? '').slice(-MAX_LOG_LINE);
      if (!this.opts.log.isLevelEnabled('debug')) return;
      for (const line of lines) if (line) this.opts.log.debug({ shim: line.slice(0, MAX_LOG_LINE) }, 'shim log');
    });
    socket.on('error', (err) => this.opts.log.warn({ err: errorMessage(err) }, 'the shim log FIFO broke'));
    this.drainSocket = socket;
  }

  /** Stops draining (crispd stops; running shims find a reader again after the restart). */
  async close(): Promise<void> {
    this.drainSocket?.destroy();
    // Pods removed just before: their scan runs now instead of after crispd is gone.
    clearTimeout(this.unreachableScan);
    if (this.unreachablePods.size > 0) await this.scanPending();
  }

  /** The address the shim wrote into its directory, if it did. */
  private async address(podId: string): Promise<string | undefined> {
    try {
      return (await readFile(join(this.podDir(podId), 'address'), 'utf8')).trim() || undefined;
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return undefined;
      throw err;
    }
  }

  /** One unary call on the shim's socket, on v2 then v3 of the task service. */
  private async call(address: string, method: 'Shutdown', payload: Buffer): Promise<Buffer> {
    const conn = connect(unixSocketPath(address));
    await new Promise<void>((resolve, reject) => {
      conn.once('connect', resolve);
      conn.once('error', reject);
    });
    // Loaded on first use: an idle crispd (NRI off) keeps the ttrpc transport out of memory.
    const { TtrpcClient } = await import('../../nri/transport/ttrpc.js');
    const client = new TtrpcClient(conn, { name: 'warm shim' });
    try {
      for (const service of TASK_SERVICES) {
        try {
          return await client.call(service, method, payload, CALL_TIMEOUT_MS);
        } catch (err) {
          const code = (err as { code?: number }).code;
          if (code !== UNIMPLEMENTED || service === TASK_SERVICES.at(-1)) throw err;
        }
      }
      throw new Error('unreachable');
    } finally {
      client.close();
    }
  }

  async retire(podId: string): Promise<void> {
    await this.starting.get(podId);
    const address = await this.address(podId);
    if (address) {
      // A shim started by a crispd that died waits for a reader of its log before it serves calls.
      await this.logFifo();
      try {
        await this.call(address, 'Shutdown', this.shutdownCodec.encode({ id: podId }));
      } catch (err) {
        // No shim there any more (containerd shut it down with the pod's last task): nothing to do.
        if (!isGone(err) && !/closed/.test(errorMessage(err))) throw err;
      }
    }
  }

  async forget(podId: string): Promise<void> {
    await this.retire(podId);
    // The exiting shim reads `address` in its directory to remove its socket: wait for that first. The
    // group socket is checked also when crisp started no shim for the pod (see group-socket.ts).
    const address = await this.address(podId);
    await waitSocketGone(address ? unixSocketPath(address) : this.groupSocket(podId), this.opts.log);
    await rm(this.podDir(podId), { recursive: true, force: true });
    this.endUnreachableLater(podId);
  }

  /**
   * Off the stop's path, and one scan of /proc for the pods removed within UNREACHABLE_SCAN_DELAY_MS:
   * it nearly always finds nothing, and reading every process's command line per pod cost a pod's
   * removal more CPU in crispd than the rest of it when many pods went at once.
   */
  private endUnreachableLater(podId: string): void {
    this.unreachablePods.add(podId);
    this.scheduleScan();
  }

  private scheduleScan(): void {
    if (this.unreachableScan) return;
    this.unreachableScan = setTimeout(() => {
      void this.scanPending().finally(() => {
        this.unreachableScan = undefined;
        // Pods removed while the scan ran get one of their own.
        if (this.unreachablePods.size > 0) this.scheduleScan();
      });
    }, UNREACHABLE_SCAN_DELAY_MS);
    this.unreachableScan.unref();
  }

  /** One scan for the pods removed since the last; never rejects. */
  private scanPending(): Promise<void> {
    const pods = new Set(this.unreachablePods);
    this.unreachablePods.clear();
    return this.endUnreachable(pods).catch((err: unknown) => this.opts.log.warn({ pods: pods.size, err: errorMessage(err) }, 'looking for unreachable warm shims failed'));
  }

  /**
   * A shim of the pod's group still running once Shutdown was sent to the group's socket cannot be
   * reached there. That happens when containerd's own `start` for the pod's first container raced the
   * warm start and bound the group socket to a shim of its own: crisp's shim then idled forever
   * (critest left one). Found by its command line (this shim binary, this pod's group, this containerd;
   * containerd 1.6's runc shim writes no pid file), and killed.
   */
  private async endUnreachable(pods: ReadonlySet<string>): Promise<void> {
    const binary = basename(this.opts.shimBinary);
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      let argv: string[];
      try {
        argv = (await readFile(`/proc/${name}/cmdline`, 'utf8')).split('\0');
      } catch {
        continue; // exited while we looked
      }
      const flag = (f: string) => argv[argv.indexOf(f) + 1];
      const podId = flag('-id');
      if (basename(argv[0] ?? '') !== binary || !pods.has(podId ?? '') || flag('-address') !== this.opts.containerdAddress || argv.includes('start')) continue;
      this.opts.log.warn({ pod: podId!.slice(0, 12), pid: Number(name) }, 'a warm shim nobody could reach outlived its pod; killing it');
      try {
        process.kill(Number(name), 'SIGKILL');
      } catch (err) {
        // Exited between the check and the kill: what the kill was for.
        if (!isErrno(err, 'ESRCH')) throw err;
      }
    }
  }

  /**
   * After a crispd restart: pods that are still ready keep their shim (its log is drained again);
   * the shims of pods that are gone or stopped are retired and their directories removed.
   */
  async recover(readyPods: ReadonlySet<string>, knownPods: ReadonlySet<string>): Promise<void> {
    let entries: string[];
    try {
      entries = await readdir(this.opts.dir);
    } catch (err) {
      if (isErrno(err, 'ENOENT')) return;
      throw err;
    }
    // Shims still running write to the FIFO again once it is drained.
    if (entries.length > 0) await this.logFifo();
    for (const podId of entries) {
      if (podId === LOG_FIFO || readyPods.has(podId)) continue;
      try {
        await (knownPods.has(podId) ? this.retire(podId) : this.forget(podId));
      } catch (err) {
        this.opts.log.warn({ pod: podId.slice(0, 12), err: errorMessage(err) }, 'recovering a warm shim failed');
      }
    }
  }
}
