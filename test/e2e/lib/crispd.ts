// e2e harness: runs a real crispd (embedded containerd) in a private temp dir on its own socket, hands
// the test a typed CRI client, and tears everything down (crispd, its containerd, shims, mounts, temp
// dir) by pid and path, even when a test failed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';
import { CriClient } from '../../../cri/client.js';
import { sleep } from '../../../common/time.js';
import { removeCgroup } from '../../../sandbox/cgroups.js';

export const REPO = resolve(new URL('../../../..', import.meta.url).pathname);
export const CLI = join(REPO, 'dist', 'cli', 'main.js');
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2'];
/** The malloc settings the same wrapper exports for crispd. */
export const DAEMON_ENV: Readonly<Record<string, string>> = { MALLOC_TRIM_THRESHOLD_: '131072', MALLOC_MMAP_THRESHOLD_: '131072' };

export interface CrispdOptions {
  /** Extra TOML lines for the config file. */
  config?: Record<string, unknown>;
  /** Start without waiting for readiness (for failure tests). */
  expectFailure?: boolean;
  /** The crisp CLI to run `daemon` from (default: this checkout's dist/cli/main.js). */
  cli?: string;
  /**
   * Source-mapped stack traces in the daemon's output (default on, for test failures). Benchmarks turn
   * them off: the packaged daemon runs without, and the loaded maps cost ~1.5 MiB of its idle RSS.
   */
  sourceMaps?: boolean;
  /** Variables added to crispd's environment (e.g. a PATH that puts a test's shim first). */
  env?: Record<string, string>;
}

function tomlLine(key: string, value: unknown): string {
  if (Array.isArray(value)) return `${key} = [${value.map((v) => JSON.stringify(v)).join(', ')}]`;
  return `${key} = ${JSON.stringify(value)}`;
}

export function uniqueId(prefix = ''): string {
  return `${prefix}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
}

export class TestCrispd {
  readonly dir: string;
  readonly socket: string;
  readonly root: string;
  readonly state: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly cniConfDir: string;
  readonly podLogRoot: string;
  /** The pods' cgroup parent: one of this daemon's own unless the test names another (config). */
  cgroupParent = '';
  child: ChildProcess | undefined;
  private clientCache: CriClient | undefined;
  private output = '';
  private stopping = false;

  constructor(readonly options: CrispdOptions = {}) {
    this.dir = mkdtempSync('/tmp/crisp-e2e-');
    this.socket = join(this.dir, 'run', 'crisp.sock');
    this.root = join(this.dir, 'root');
    this.state = join(this.dir, 'state');
    this.configFile = join(this.dir, 'config.toml');
    this.logFile = join(this.dir, 'crispd.log');
    this.cniConfDir = join(this.dir, 'cni');
    this.podLogRoot = join(this.dir, 'logs');
    mkdirSync(this.cniConfDir, { recursive: true });
    mkdirSync(this.podLogRoot, { recursive: true });
    this.writeConfig(options.config ?? {});
  }

  writeConfig(extra: Record<string, unknown>): void {
    const base: Record<string, unknown> = {
      socket: this.socket,
      root: this.root,
      state: this.state,
      log_level: 'debug',
      cni_conf_dir: this.cniConfDir,
      nri_enabled: false,
      // Not the shared default (/crisp): daemons running side by side, or one a test killed, never touch
      // each other's pod cgroups, and cleanup() removes what is left of this one's.
      cgroup_parent: `/${basename(this.dir)}`,
      ...extra,
    };
    this.cgroupParent = String(base.cgroup_parent);
    writeFileSync(this.configFile, `${Object.entries(base).map(([k, v]) => tomlLine(k, v)).join('\n')}\n`);
  }

  get endpoint(): string {
    return `unix://${this.socket}`;
  }

  get client(): CriClient {
    this.clientCache ??= new CriClient(this.endpoint, 60_000);
    return this.clientCache;
  }

  get logs(): string {
    return this.output;
  }

  /** Spawn `crisp daemon` and wait until Version answers. */
  async start(extraArgs: string[] = []): Promise<void> {
    this.stopping = false;
    // The node flags and malloc settings the packaged wrapper (packaging/crisp-wrapper.sh) gives
    // crispd, so tests and benchmarks run the daemon as it is deployed.
    const sourceMaps = this.options.sourceMaps === false ? [] : ['--enable-source-maps'];
    const child = spawn(process.execPath, [...sourceMaps, ...DAEMON_NODE_FLAGS, this.options.cli ?? CLI, 'daemon', '--config', this.configFile, ...extraArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...DAEMON_ENV, ...this.options.env },
    });
    this.child = child;
    const append = (b: Buffer) => {
      this.output += b.toString();
      writeFileSync(this.logFile, this.output);
    };
    child.stdout!.on('data', append);
    child.stderr!.on('data', append);
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    // A daemon that dies on its own is a bug: show why in the test output.
    child.once('exit', (code, signal) => {
      if (this.child === child && !this.stopping) {
        process.stderr.write(`\n=== crispd exited unexpectedly (code ${code}, signal ${signal}); last output:\n${this.output.slice(-6000)}\n===\n`);
      }
    });
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const code = await Promise.race([exited, sleep(100).then(() => 'running' as const)]);
      if (code !== 'running') throw new Error(`crispd exited with ${code} during start:\n${this.output}`);
      if (existsSync(this.socket)) {
        const probe = new CriClient(this.endpoint, 2000);
        try {
          await probe.runtime.unary('Version', { version: 'v1' });
          return;
        } catch {
          // not yet
        } finally {
          probe.close();
        }
      }
    }
    throw new Error(`crispd did not answer within 30 s:\n${this.output}`);
  }

  /** Run `crisp daemon` expecting it to fail; returns exit code and output. */
  runExpectingFailure(extraArgs: string[] = [], timeoutMs = 30_000): { code: number | null; output: string } {
    const res = spawnSync(process.execPath, [this.options.cli ?? CLI, 'daemon', '--config', this.configFile, ...extraArgs], {
      encoding: 'utf8',
      timeout: timeoutMs,
    });
    return { code: res.status, output: `${res.stdout}${res.stderr}` };
  }

  /** Graceful stop (SIGTERM) and wait for exit. */
  async stop(): Promise<number | null> {
    const child = this.child;
    this.stopping = true;
    this.clientCache?.close();
    this.clientCache = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    child.kill('SIGTERM');
    // The 20 s timer is cancelled once crispd exits: left running, it kept each test process alive for it.
    const giveUp = new AbortController();
    const code = await Promise.race([exited, sleep(20_000, giveUp.signal).then(() => 'timeout' as const, () => null /* cancelled: crispd exited first */)]);
    giveUp.abort();
    if (code === 'timeout') {
      child.kill('SIGKILL');
      return exited;
    }
    return code;
  }

  /** kill -9 crispd (its embedded containerd and shims survive, as after a crash). */
  async kill9(): Promise<void> {
    const child = this.child;
    this.stopping = true;
    this.clientCache?.close();
    this.clientCache = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    child.kill('SIGKILL');
    await exited;
  }

  containerdPid(): number | undefined {
    try {
      const pid = Number.parseInt(readFileSync(join(this.state, 'containerd', 'containerd.pid'), 'utf8'), 10);
      return Number.isInteger(pid) ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** Remove everything this daemon created: processes by pid, mounts below the dir, the dir. */
  async cleanup(): Promise<void> {
    await this.stop().catch(() => undefined);
    const ctdSocket = join(this.state, 'containerd', 'containerd.sock');
    // Shims started by our containerd carry its address on their command line.
    await sweepTestDir(this.dir, (argv) => argv.includes(ctdSocket) || argv.includes(this.configFile) || argv.includes(join(this.root, 'containerd', 'config.toml')));
    // Pods of a crispd that died before removing them: their containers and cgroups (test parents only).
    if (this.cgroupParent.startsWith('/crisp-e2e-')) await removeCgroup(this.cgroupParent);
  }

  /** Stop and remove every pod it has, best effort (a teardown helper: errors are the test's business elsewhere). */
  async removeAllPods(): Promise<void> {
    const pods = await this.client.runtime.unary('ListPodSandbox', {}).catch(() => ({ items: [] }));
    for (const p of pods.items) {
      await this.client.runtime.unary('StopPodSandbox', { podSandboxId: p.id }).catch(() => undefined);
      await this.client.runtime.unary('RemovePodSandbox', { podSandboxId: p.id }).catch(() => undefined);
    }
  }
}

/** Kills the processes `owns` matches (shims and the like a test started), then unmounts and removes `dir`. */
export async function sweepTestDir(dir: string, owns: (argv: string[]) => boolean): Promise<void> {
  const sockets: string[] = [];
  for (const pid of pidsWhere(owns)) {
    const socket = shimSocket(pid);
    if (socket) sockets.push(socket);
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await sleep(100);
  // A killed shim leaves its socket below /run/containerd/s; it named it in `address` in its directory.
  for (const socket of sockets) rmSync(socket, { force: true });
  unmountBelow(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** The socket a runc shim serves (from the `address` file in its working directory), if `pid` is one. */
function shimSocket(pid: number): string | undefined {
  try {
    const address = readFileSync(`/proc/${pid}/cwd/address`, 'utf8').trim().replace(/^unix:\/\//, '');
    return address.startsWith('/run/containerd/s/') ? address : undefined;
  } catch {
    // not a shim, or it is gone
    return undefined;
  }
}

/** Whether a process `pid` exists (signal 0). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false; // ESRCH: gone
  }
}

/** Children of `pid` whose comm (the kernel's process name) is `name`. */
export function childrenNamed(pid: number, name: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid && comm === name) out.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return out;
}

/** Pids of processes whose argv satisfies `match` (read from /proc, no pattern kill). */
export function pidsWhere(match: (argv: string[]) => boolean): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const argv = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (Number(name) !== process.pid && match(argv)) out.push(Number(name));
    } catch {
      // raced with exit
    }
  }
  return out;
}

/** Mount points at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const lines = readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  const points = lines
    .map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined && (p === dir || p.startsWith(`${dir}/`)));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

export function unmountBelow(dir: string): void {
  for (let round = 0; round < 3; round++) {
    const points = mountsBelow(dir);
    if (points.length === 0) return;
    for (const p of points) spawnSync('umount', ['-l', p]);
  }
}
