// The peer runtime: Debian's containerd 1.6 with its own CRI plugin, as a separate process with a private
// config, root, state and sockets under /tmp/crisp-bench-<rand>. Same CNI plugins and registry as crisp;
// a pause image (busybox sleeping forever) as its sandbox image. cleanup() ends only what it started
// (containerd by pid, its shims and their containers by the socket on their command line), unmounts
// what lies below its dir and removes the dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { CriClient } from '../../cri/client.js';
import { sleep } from '../../common/time.js';
import { pidsWhere, unmountBelow } from '../../test/e2e/lib/crispd.js';
import { alive, killTree } from './procs.js';

export interface PeerOptions {
  /** Image reference containerd's CRI uses for pause containers. */
  sandboxImage: string;
  /** Registry hosts ("127.0.0.1:PORT") that speak plain HTTP; written as hosts.toml files. */
  plainHttpRegistries: string[];
  /** containerd log level (info is its default, and what the numbers should be taken with). */
  logLevel?: string;
  startTimeoutMs?: number;
  binary?: string;
}

/** containerd 1.6 config, version 2, with the CRI plugin on. Keys from containerd's docs/cri/config.md (release/1.6). */
export function peerConfigToml(p: {
  root: string;
  state: string;
  socket: string;
  sandboxImage: string;
  cniConfDir: string;
  certsDir: string;
  optDir: string;
  logLevel: string;
}): string {
  const q = JSON.stringify;
  return [
    '# Written by crisp bench/lib/peer.ts for a private containerd with its CRI plugin.',
    'version = 2',
    `root = ${q(p.root)}`,
    `state = ${q(p.state)}`,
    '',
    '[grpc]',
    `  address = ${q(p.socket)}`,
    '  uid = 0',
    '  gid = 0',
    '',
    '[ttrpc]',
    `  address = ${q(`${p.socket}.ttrpc`)}`,
    '',
    '[debug]',
    `  level = ${q(p.logLevel)}`,
    '',
    '[plugins]',
    '  # Keep the "opt" plugin out of the real /opt/containerd.',
    '  [plugins."io.containerd.internal.v1.opt"]',
    `    path = ${q(p.optDir)}`,
    '',
    '  [plugins."io.containerd.grpc.v1.cri"]',
    `    sandbox_image = ${q(p.sandboxImage)}`,
    '    disable_apparmor = true',
    '    # No CAP_SYS_RESOURCE here: the pause container\'s -998 would fail without this clamp.',
    '    restrict_oom_score_adj = true',
    '    # Pod netns bind mounts under our own state dir instead of /var/run/netns.',
    '    netns_mounts_under_state_dir = true',
    '    stream_server_address = "127.0.0.1"',
    '    stream_server_port = "0"',
    '    enable_selinux = false',
    '',
    '    [plugins."io.containerd.grpc.v1.cri".containerd]',
    '      snapshotter = "overlayfs"',
    '      default_runtime_name = "runc"',
    '',
    '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]',
    '        runtime_type = "io.containerd.runc.v2"',
    '',
    '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]',
    '          SystemdCgroup = false',
    '',
    '    [plugins."io.containerd.grpc.v1.cri".cni]',
    '      bin_dir = "/usr/lib/cni"',
    `      conf_dir = ${q(p.cniConfDir)}`,
    '',
    '    [plugins."io.containerd.grpc.v1.cri".registry]',
    `      config_path = ${q(p.certsDir)}`,
    '',
  ].join('\n');
}

/** hosts.toml for a registry on loopback that speaks plain HTTP. */
export function plainHttpHostsToml(host: string): string {
  return [`server = "http://${host}"`, '', `[host."http://${host}"]`, '  capabilities = ["pull", "resolve"]', ''].join('\n');
}

export class PeerContainerd {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly socket: string;
  readonly configFile: string;
  readonly logFile: string;
  readonly cniConfDir: string;
  readonly certsDir: string;
  readonly podLogRoot: string;
  private child: ChildProcess | undefined;
  private clientCache: CriClient | undefined;

  constructor(readonly options: PeerOptions) {
    this.dir = mkdtempSync('/tmp/crisp-bench-');
    this.root = join(this.dir, 'root');
    this.state = join(this.dir, 'state');
    this.socket = join(this.state, 'containerd.sock');
    this.configFile = join(this.dir, 'config.toml');
    this.logFile = join(this.dir, 'containerd.log');
    this.cniConfDir = join(this.dir, 'cni');
    this.certsDir = join(this.dir, 'certs.d');
    this.podLogRoot = join(this.dir, 'logs');
    for (const d of [this.root, this.state, this.cniConfDir, this.certsDir, this.podLogRoot]) mkdirSync(d, { recursive: true, mode: 0o700 });
    for (const host of options.plainHttpRegistries) {
      mkdirSync(join(this.certsDir, host), { recursive: true });
      writeFileSync(join(this.certsDir, host, 'hosts.toml'), plainHttpHostsToml(host));
    }
    writeFileSync(
      this.configFile,
      peerConfigToml({
        root: this.root,
        state: this.state,
        socket: this.socket,
        sandboxImage: options.sandboxImage,
        cniConfDir: this.cniConfDir,
        certsDir: this.certsDir,
        optDir: join(this.dir, 'opt'),
        logLevel: options.logLevel ?? 'info',
      }),
    );
  }

  get endpoint(): string {
    return `unix://${this.socket}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get client(): CriClient {
    this.clientCache ??= new CriClient(this.endpoint, 120_000);
    return this.clientCache;
  }

  /** The CRI plugin's content store, for cold-cache checks. */
  get contentBlobDir(): string {
    return join(this.root, 'io.containerd.content.v1.content', 'blobs', 'sha256');
  }

  /** Start containerd and wait until its CRI plugin reports RuntimeReady and NetworkReady. */
  async start(): Promise<void> {
    const logFd = openSync(this.logFile, 'a');
    try {
      this.child = spawn(this.options.binary ?? 'containerd', ['--config', this.configFile], { stdio: ['ignore', logFd, logFd] });
    } finally {
      closeSync(logFd);
    }
    const child = this.child;
    const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 30_000);
    let last = 'no socket yet';
    while (Date.now() < deadline) {
      const code = await Promise.race([exited, sleep(100).then(() => 'running' as const)]);
      if (code !== 'running') throw new Error(`peer containerd exited with ${code} during start:\n${this.logTail()}`);
      if (!existsSync(this.socket)) continue;
      const probe = new CriClient(this.endpoint, 2000);
      try {
        const st = await probe.runtime.unary('Status', {});
        const conds = st.status?.conditions ?? [];
        const ready = (t: string) => conds.find((c) => c.type === t)?.status === true;
        if (ready('RuntimeReady') && ready('NetworkReady')) return;
        last = `Status: ${JSON.stringify(conds)}`;
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      } finally {
        probe.close();
      }
    }
    throw new Error(`peer containerd CRI not ready within the start timeout (${last}):\n${this.logTail()}`);
  }

  logTail(chars = 3000): string {
    try {
      return readFileSync(this.logFile, 'utf8').slice(-chars);
    } catch {
      return '(no log)';
    }
  }

  /** SIGTERM, then SIGKILL after `graceMs`. Shims (and their containers) outlive containerd. */
  async stop(graceMs = 10_000): Promise<void> {
    this.clientCache?.close();
    this.clientCache = undefined;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(t);
  }

  /** Everything this peer started or mounted, gone: containerd, shims and their containers, mounts, the dir. */
  async cleanup(): Promise<void> {
    await this.stop().catch(() => undefined);
    for (const pid of pidsWhere((argv) => argv.includes(this.socket) || argv.includes(this.configFile))) killTree(pid);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && pidsWhere((argv) => argv.includes(this.socket)).some(alive)) await sleep(50);
    unmountBelow(this.dir);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
