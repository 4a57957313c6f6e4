// A containerd the test starts itself (the host's binary, config version 2) with its own root, state
// and socket, for crispd's `containerd_address`: started, killed and restarted by pid, and cleaned up
// with the shims it started (their argv names its socket).
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerdClient } from '../../../backend/containerd/client.js';
import { EMBEDDED_DISABLED_PLUGINS } from '../../../backend/containerd/embedded.js';
import { processAlive } from '../../../common/process.js';
import { sleep } from '../../../common/time.js';
import { sweepTestDir } from './crispd.js';

export interface PrivateContainerdOptions {
  /** The containerd binary (default: `containerd` from PATH). */
  binary?: string;
  /** Config format: 2 for containerd 1.x, 3 for 2.x. */
  configVersion?: 2 | 3;
  /** Plugins to disable (default: what the embedded containerd disables). */
  disabledPlugins?: readonly string[];
  /** Environment of the containerd process (e.g. a PATH that finds its own shim and runc first). */
  env?: NodeJS.ProcessEnv;
}

export class PrivateContainerd {
  readonly dir = mkdtempSync('/tmp/crisp-e2e-ctrd-');
  readonly socket = join(this.dir, 'containerd.sock');
  readonly config = join(this.dir, 'config.toml');
  readonly logFile = join(this.dir, 'containerd.log');
  pid: number | undefined;

  constructor(private readonly opts: PrivateContainerdOptions = {}) {
    const disabled = opts.disabledPlugins ?? EMBEDDED_DISABLED_PLUGINS;
    writeFileSync(
      this.config,
      [
        `version = ${opts.configVersion ?? 2}`,
        `root = ${JSON.stringify(join(this.dir, 'root'))}`,
        `state = ${JSON.stringify(join(this.dir, 'state'))}`,
        // crisp is the CRI runtime and the NRI host: containerd's own must not run.
        `disabled_plugins = [${disabled.map((p) => JSON.stringify(p)).join(', ')}]`,
        '[grpc]',
        `  address = ${JSON.stringify(this.socket)}`,
        '[ttrpc]',
        `  address = ${JSON.stringify(`${this.socket}.ttrpc`)}`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = ${JSON.stringify(join(this.dir, 'opt'))}`,
        '',
      ].join('\n'),
    );
  }

  async start(): Promise<void> {
    const fd = openSync(this.logFile, 'a');
    const child = spawn(this.opts.binary ?? 'containerd', ['--config', this.config], {
      detached: true,
      stdio: ['ignore', fd, fd],
      ...(this.opts.env ? { env: this.opts.env } : {}),
    });
    closeSync(fd);
    child.unref();
    await new Promise<void>((res, rej) => {
      child.once('spawn', res);
      child.once('error', rej);
    });
    this.pid = child.pid!;
    const client = new ContainerdClient({ address: this.socket, namespace: 'k8s.io', timeoutMs: 1000 });
    try {
      for (let i = 0; i < 400; i++) {
        if (!processAlive(this.pid)) throw new Error(`containerd exited at start:\n${readFileSync(this.logFile, 'utf8').slice(-3000)}`);
        if (existsSync(this.socket) && (await client.ping(1000).then(() => true, () => false))) return;
        await sleep(50);
      }
      throw new Error('the test containerd did not answer within 20 s');
    } finally {
      client.close();
    }
  }

  /** kill -9 (its shims, and so the containers, keep running). */
  async kill9(): Promise<void> {
    const pid = this.pid;
    if (!pid || !processAlive(pid)) return;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 200 && processAlive(pid); i++) await sleep(25);
  }

  async stop(): Promise<void> {
    const pid = this.pid;
    if (!pid || !processAlive(pid)) return;
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && processAlive(pid); i++) await sleep(50);
    if (processAlive(pid)) await this.kill9();
  }

  async cleanup(): Promise<void> {
    await this.stop();
    await sweepTestDir(this.dir, (argv) => argv.includes(this.socket));
  }
}
