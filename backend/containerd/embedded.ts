// The embedded containerd: crispd's own containerd child with a private root, state and socket and the
// CRI plugin disabled. A child left running by a crispd that was killed is adopted on the next start
// (running tasks and their shims are untouched either way); a child that dies is restarted.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, openSync, readFileSync, readlinkSync, writeFileSync, closeSync, existsSync } from 'node:fs';
import { join, delimiter } from 'node:path';
import type { Logger } from 'pino';
import { ContainerdClient } from './client.js';
import { failedPrecondition, unavailable, errorMessage } from '../../common/errors.js';
import { sleep } from '../../common/time.js';
import { processAlive } from '../../common/process.js';
import { countContainerdRestart } from '../../common/operation-metrics.js';
import { RestartBackoff } from './restart-backoff.js';
import type { ShimLookup } from './shim-binary.js';
import { DEFAULT_PATH, helperTarget, shimStartHelperEnv } from './shim-start-helper.js';

export interface EmbeddedContainerdOptions {
  binary: string;
  /** crisp root; containerd's root goes to <root>/containerd. */
  root: string;
  /** crisp state dir; containerd's state and socket go to <state>/containerd. */
  state: string;
  snapshotter: string;
  startTimeoutMs: number;
  /** crisp-shim-start, put in front of the runc v2 shim (shim-start-helper.ts); undefined: none. */
  shimStartHelper?: string;
  log: Logger;
}

export interface EmbeddedPaths {
  root: string;
  state: string;
  socket: string;
  config: string;
  pidFile: string;
  logFile: string;
  /** The local content store's directory (blobs/, ingest/). */
  contentRoot: string;
  /** Holds the link that puts crisp-shim-start in front of the runc v2 shim (first in the child's PATH). */
  shimBin: string;
}

export function embeddedPaths(root: string, state: string): EmbeddedPaths {
  const ctdState = join(state, 'containerd');
  return {
    root: join(root, 'containerd'),
    state: ctdState,
    socket: join(ctdState, 'containerd.sock'),
    config: join(root, 'containerd', 'config.toml'),
    pidFile: join(ctdState, 'containerd.pid'),
    logFile: join(root, 'containerd', 'containerd.log'),
    contentRoot: join(root, 'containerd', 'io.containerd.content.v1.content'),
    shimBin: join(ctdState, 'shim-bin'),
  };
}

/**
 * Plugins the embedded child must not run: crisp is the CRI runtime and the NRI host. containerd 1.6
 * has one CRI plugin (`io.containerd.grpc.v1.cri`); 2.x splits it (images, runtime, the pod sandbox
 * controller and its gRPC service) and runs NRI by default, which would take over crisp's NRI socket
 * (/var/run/nri/nri.sock) and launch its plugins. containerd ignores ids it does not know, so one list
 * serves 1.6, 1.7 and 2.x.
 */
export const EMBEDDED_DISABLED_PLUGINS = [
  'io.containerd.grpc.v1.cri',
  'io.containerd.cri.v1.images',
  'io.containerd.cri.v1.runtime',
  'io.containerd.podsandbox.controller.v1.podsandbox',
  'io.containerd.grpc.v1.sandbox-controllers',
  'io.containerd.nri.v1.nri',
];

/**
 * What the embedded child loads but crisp never uses: the v1 restart manager and the /opt/containerd
 * plugin (which would make and manage /opt/containerd, outside crisp's directories), the cgroups task
 * monitor (containerd's own Prometheus metrics and v1-runtime OOM events; crisp reads cgroups itself and
 * runs v2 shims), and every snapshotter but the configured one. About 1.5 MiB of the child's RSS, and no
 * devmapper error in its log at every start.
 */
const UNUSED_PLUGINS = ['io.containerd.internal.v1.restart', 'io.containerd.internal.v1.opt', 'io.containerd.monitor.v1.cgroups'];
const SNAPSHOTTERS = ['aufs', 'blockfile', 'btrfs', 'devmapper', 'erofs', 'native', 'overlayfs', 'zfs'];

/** The embedded child's disabled_plugins for crisp's snapshotter. */
export function embeddedDisabledPlugins(snapshotter: string): string[] {
  const others = SNAPSHOTTERS.filter((s) => s !== snapshotter).map((s) => `io.containerd.snapshotter.v1.${s}`);
  return [...EMBEDDED_DISABLED_PLUGINS, ...UNUSED_PLUGINS, ...others];
}

/** Config (version 2: containerd 1.6's, which 1.7 and 2.x migrate on load) for the embedded child. */
export function embeddedConfigToml(paths: EmbeddedPaths, snapshotter: string): string {
  return [
    '# Written by crispd for its embedded containerd. Edits are overwritten at start.',
    'version = 2',
    `root = ${JSON.stringify(paths.root)}`,
    `state = ${JSON.stringify(paths.state)}`,
    `disabled_plugins = [${embeddedDisabledPlugins(snapshotter).map((p) => JSON.stringify(p)).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${JSON.stringify(paths.socket)}`,
    '  uid = 0',
    '  gid = 0',
    '',
    '[ttrpc]',
    `  address = ${JSON.stringify(`${paths.socket}.ttrpc`)}`,
    '',
    '[plugins."io.containerd.service.v1.diff-service"]',
    '  default = ["walking"]',
    '',
    '[plugins."io.containerd.gc.v1.scheduler"]',
    '  pause_threshold = 0.02',
    '  deletion_threshold = 0',
    '  mutation_threshold = 100',
    '  schedule_delay = "0s"',
    '  startup_delay = "100ms"',
    '',
    `# Snapshotter crisp unpacks into: ${snapshotter}`,
    '',
  ].join('\n');
}

function findBinary(binary: string): string | undefined {
  if (binary.includes('/')) return existsSync(binary) ? binary : undefined;
  for (const dir of (process.env.PATH ?? DEFAULT_PATH).split(delimiter)) {
    const candidate = join(dir, binary);
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

function readPid(pidFile: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(pidFile, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and is a containerd started with our config file. */
function isOurContainerd(pid: number, configPath: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((a) => a.endsWith('containerd')) && argv.includes(configPath);
  } catch {
    return false;
  }
}

export class EmbeddedContainerd {
  readonly paths: EmbeddedPaths;
  private child: ChildProcess | undefined;
  private pid: number | undefined;
  private stopping = false;
  private watchTimer: NodeJS.Timeout | undefined;
  private restarts = 0;
  private readonly backoff = new RestartBackoff();

  constructor(private readonly opts: EmbeddedContainerdOptions) {
    this.paths = embeddedPaths(opts.root, opts.state);
  }

  get address(): string {
    return this.paths.socket;
  }

  /** The crisp-shim-start this crispd puts in front of the runc v2 shim, if configured. */
  get shimStartHelper(): string | undefined {
    return this.opts.shimStartHelper;
  }

  /** Where the running child looks for shim binaries: its working directory, its PATH, its binary (from /proc). */
  shimLookup(): ShimLookup | undefined {
    if (!this.pid) return undefined;
    try {
      const environ = readFileSync(`/proc/${this.pid}/environ`, 'utf8').split('\0');
      const path = environ.find((e) => e.startsWith('PATH='))?.slice('PATH='.length) ?? '';
      const runcShim = helperTarget(environ);
      return {
        cwd: readlinkSync(`/proc/${this.pid}/cwd`),
        path,
        containerdBinary: readlinkSync(`/proc/${this.pid}/exe`),
        ...(runcShim ? { runcShim } : {}),
      };
    } catch {
      // The child is gone (it is restarted by the watcher): no lookup now.
      return undefined;
    }
  }

  /** Start (or adopt) the child and wait until it answers on its socket. */
  async start(): Promise<void> {
    const binary = findBinary(this.opts.binary);
    if (!binary) {
      throw failedPrecondition(
        `containerd binary "${this.opts.binary}" not found in PATH: install it (apt-get install containerd) or set containerd_address to use an existing containerd`,
      );
    }
    mkdirSync(this.paths.root, { recursive: true, mode: 0o700 });
    mkdirSync(this.paths.state, { recursive: true, mode: 0o700 });
    writeFileSync(this.paths.config, embeddedConfigToml(this.paths, this.opts.snapshotter), { mode: 0o600 });

    const previous = readPid(this.paths.pidFile);
    if (previous && isOurContainerd(previous, this.paths.config)) {
      this.pid = previous;
      this.opts.log.info({ pid: previous, socket: this.paths.socket }, 'adopting embedded containerd left by a previous crispd');
      // The adopted child runs whatever its PATH's link points at: this crispd's helper from now on.
      if (this.shimLookup()?.runcShim) this.shimStartEnv(binary);
      await this.waitReady();
    } else {
      await this.spawnChild(binary);
    }
    this.watch(binary);
  }

  private async spawnChild(binary: string): Promise<void> {
    const logFd = openSync(this.paths.logFile, 'a', 0o600);
    try {
      // Own session: a signal to crispd's terminal or process group must not reach containerd.
      const child = spawn(binary, ['--config', this.paths.config], {
        detached: true,
        stdio: ['ignore', logFd, logFd],
        env: { ...process.env, ...this.shimStartEnv(binary) },
      });
      child.unref();
      this.child = child;
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (err) => reject(failedPrecondition(`starting ${binary}: ${err.message}`, err)));
      });
      this.pid = child.pid!;
      writeFileSync(this.paths.pidFile, `${this.pid}\n`);
      this.opts.log.info({ pid: this.pid, socket: this.paths.socket, log: this.paths.logFile }, 'embedded containerd started');
      child.once('exit', (code, signal) => {
        if (this.child === child) this.child = undefined;
        if (!this.stopping) this.opts.log.warn({ pid: child.pid, code, signal }, 'embedded containerd exited');
      });
    } finally {
      closeSync(logFd);
    }
    await this.waitReady();
  }

  /** The child's environment additions for crisp-shim-start, if it is configured and a runc v2 shim exists. */
  private shimStartEnv(binary: string): Record<string, string> {
    const helper = this.opts.shimStartHelper;
    if (!helper) return {};
    const lookup = { cwd: process.cwd(), path: process.env.PATH ?? DEFAULT_PATH, containerdBinary: binary };
    try {
      const env = shimStartHelperEnv({ helper, dir: this.paths.shimBin, lookup });
      if (typeof env !== 'string') return env;
      this.opts.log.info({ why: env }, 'crisp-shim-start is not used');
    } catch (err) {
      this.opts.log.warn({ err: errorMessage(err), dir: this.paths.shimBin }, 'crisp-shim-start could not be linked; containerd runs the shim for every start');
    }
    return {};
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + this.opts.startTimeoutMs;
    const client = new ContainerdClient({ address: this.paths.socket, namespace: 'crisp-probe', timeoutMs: 1000 });
    try {
      let lastError = 'no socket yet';
      while (Date.now() < deadline) {
        if (this.pid && !processAlive(this.pid)) {
          throw unavailable(`embedded containerd (pid ${this.pid}) exited during start; see ${this.paths.logFile}`);
        }
        if (existsSync(this.paths.socket)) {
          try {
            await client.ping(1000);
            return;
          } catch (err) {
            lastError = errorMessage(err);
          }
        }
        await sleep(50);
      }
      throw unavailable(`embedded containerd did not answer on ${this.paths.socket} within ${this.opts.startTimeoutMs} ms: ${lastError}; see ${this.paths.logFile}`);
    } finally {
      client.close();
    }
  }

  /** Restart the child if it dies (with backoff), until stop(). */
  private watch(binary: string): void {
    const tick = async () => {
      if (this.stopping) return;
      if (this.pid && !processAlive(this.pid)) {
        this.restarts++;
        countContainerdRestart();
        const backoff = this.backoff.next(Date.now());
        this.opts.log.warn({ restarts: this.restarts, backoffMs: backoff }, 'embedded containerd is gone; restarting');
        await sleep(backoff);
        if (this.stopping) return;
        try {
          await this.spawnChild(binary);
        } catch (err) {
          this.opts.log.error({ err: errorMessage(err) }, 'restarting embedded containerd failed');
        }
      }
      if (!this.stopping) this.watchTimer = setTimeout(() => void tick(), 1000);
    };
    this.watchTimer = setTimeout(() => void tick(), 1000);
    this.watchTimer.unref();
  }

  get running(): boolean {
    return this.pid !== undefined && processAlive(this.pid);
  }

  get childPid(): number | undefined {
    return this.pid;
  }

  /** Stop the child: SIGTERM, then SIGKILL after `graceMs`. Containers (shims) keep running. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    if (this.watchTimer) clearTimeout(this.watchTimer);
    const pid = this.pid;
    if (!pid || !processAlive(pid)) return;
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + graceMs;
    while (processAlive(pid) && Date.now() < deadline) await sleep(25);
    if (processAlive(pid)) {
      this.opts.log.warn({ pid }, 'embedded containerd ignored SIGTERM; killing');
      process.kill(pid, 'SIGKILL');
      while (processAlive(pid)) await sleep(25);
    }
    this.opts.log.info({ pid }, 'embedded containerd stopped');
  }
}
