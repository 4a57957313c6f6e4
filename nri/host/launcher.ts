// Pre-installed plugins: discovery of NN-name executables in the plugin directory, their config
// drop-ins, and one supervisor per plugin that starts it with its end of a socket pair as fd 3 and
// exactly the three NRI_PLUGIN_* variables (nri-protocol.md §1), restarts it with exponential
// backoff when it dies, and SIGKILLs it on stop.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type net from 'node:net';
import { open, readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../../common/logger.js';
import { isENOENT } from '../../common/errors.js';
import { parseQualifiedName, qualifiedName, type PluginIdentity } from './identity.js';
import { connectedSocketPair } from './socketpair.js';

export interface PluginFile extends PluginIdentity {
  path: string;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

const WASM_MAGIC = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]);

async function isWasm(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(WASM_MAGIC.length);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return bytesRead === buf.length && buf.equals(WASM_MAGIC);
  } finally {
    await fh.close();
  }
}

/**
 * The executables in `dir`, sorted by name. Directories and files without an exec bit are skipped;
 * WASM modules are skipped (crisp runs plugins only as processes). An executable whose name is not
 * NN-name throws, as upstream refuses to start NRI with one.
 */
export async function discoverPluginFiles(dir: string): Promise<{ files: PluginFile[]; skipped: SkippedFile[] }> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if (isENOENT(err)) return { files: [], skipped: [] };
    throw new Error(`reading NRI plugin directory ${dir}: ${(err as Error).message}`, { cause: err });
  }
  const files: PluginFile[] = [];
  const skipped: SkippedFile[] = [];
  for (const name of names) {
    const path = join(dir, name);
    const st = await stat(path).catch(() => undefined);
    if (!st || !st.isFile()) {
      skipped.push({ path, reason: 'not a regular file' });
      continue;
    }
    if ((st.mode & 0o111) === 0) {
      skipped.push({ path, reason: 'not executable' });
      continue;
    }
    if (await isWasm(path)) {
      skipped.push({ path, reason: 'WASM plugins are not supported' });
      continue;
    }
    let id: PluginIdentity;
    try {
      id = parseQualifiedName(name);
    } catch (err) {
      throw new Error(`pre-installed NRI plugin ${path}: ${(err as Error).message}`, { cause: err });
    }
    files.push({ path, ...id });
  }
  return { files, skipped };
}

/** The plugin's config: conf.d/NN-name.conf, else conf.d/name.conf, else "". */
export async function readPluginConfig(confDir: string, id: PluginIdentity): Promise<string> {
  for (const file of [`${qualifiedName(id)}.conf`, `${id.name}.conf`]) {
    try {
      return await readFile(join(confDir, file), 'utf8');
    } catch (err) {
      if (!isENOENT(err)) throw new Error(`reading NRI plugin config ${join(confDir, file)}: ${(err as Error).message}`, { cause: err });
    }
  }
  return '';
}

export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export interface SupervisorOptions {
  logger: Logger;
  backoff: Backoff;
  /** A process was started; `trunk` is crisp's end of its socket. */
  onStarted(trunk: net.Socket, child: ChildProcess): void;
}

/** Runs one pre-installed plugin and restarts it when it exits, until stop(). */
export class PluginSupervisor {
  /** Times the plugin was started again after an exit. */
  restarts = 0;
  /** When the next start is due, while waiting out a backoff. */
  nextStartAt: Date | undefined;
  private child: ChildProcess | undefined;
  /** When the current process's session became ready (0: not ready). */
  private readyAt = 0;
  private delayMs: number;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private exited: Promise<void> = Promise.resolve();
  private readonly log: Logger;

  constructor(
    readonly file: PluginFile,
    private readonly opts: SupervisorOptions,
  ) {
    this.delayMs = opts.backoff.initialMs;
    this.log = opts.logger.child({ nriPlugin: qualifiedName(file) });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined;
  }

  async start(): Promise<void> {
    if (this.stopped || this.child) return;
    this.nextStartAt = undefined;
    let pair: Awaited<ReturnType<typeof connectedSocketPair>>;
    try {
      pair = await connectedSocketPair();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'NRI plugin not started: socket pair failed');
      this.scheduleRestart();
      return;
    }
    if (this.stopped) {
      pair.ours.destroy();
      pair.theirs.destroy();
      return;
    }
    const child = spawn(this.file.path, [], {
      env: { NRI_PLUGIN_NAME: this.file.name, NRI_PLUGIN_IDX: this.file.index, NRI_PLUGIN_SOCKET: '3' },
      stdio: ['ignore', 'pipe', 'pipe', pair.theirs],
    });
    // The child has its own copy now; ours must not hold the other end open.
    pair.theirs.destroy();
    this.child = child;
    this.readyAt = 0;
    let settle!: () => void;
    this.exited = new Promise<void>((r) => (settle = r));
    let gone = false;
    const onGone = (why: string) => {
      if (gone) return;
      gone = true;
      this.child = undefined;
      pair.ours.destroy();
      if (!this.stopped) this.log.warn({ pid: child.pid, why }, 'NRI plugin process ended');
      settle();
      this.scheduleRestart();
    };
    child.once('error', (err) => onGone(`could not run: ${err.message}`));
    child.once('exit', (code, signal) => onGone(signal ? `killed by ${signal}` : `exit code ${code}`));
    for (const [stream, name] of [
      [child.stdout, 'stdout'],
      [child.stderr, 'stderr'],
    ] as const) {
      if (stream) createInterface({ input: stream }).on('line', (line) => this.log.info({ stream: name }, line));
    }
    if (child.pid === undefined) return; // spawn failed; 'error' follows
    this.log.info({ pid: child.pid, path: this.file.path }, 'NRI plugin started');
    this.opts.onStarted(pair.ours, child);
  }

  /** The running process's session is ready: a long healthy run resets the backoff. */
  markReady(): void {
    if (this.child) this.readyAt = Date.now();
  }

  /** SIGKILL the running process (it failed the protocol); it is restarted after the backoff. */
  kill(): void {
    this.child?.kill('SIGKILL');
  }

  /** No more restarts; SIGKILL the process and wait until it is gone. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextStartAt = undefined;
    this.child?.kill('SIGKILL');
    await this.exited;
  }

  private scheduleRestart(): void {
    if (this.stopped || this.timer) return;
    // A plugin that served longer than the longest backoff starts over from the shortest; one that
    // keeps failing before or soon after becoming ready waits longer each time.
    if (this.readyAt && Date.now() - this.readyAt > this.opts.backoff.maxMs) this.delayMs = this.opts.backoff.initialMs;
    this.readyAt = 0;
    const delay = this.delayMs;
    this.delayMs = Math.min(this.delayMs * 2, this.opts.backoff.maxMs);
    this.nextStartAt = new Date(Date.now() + delay);
    this.log.info({ inMs: delay }, 'NRI plugin restart scheduled');
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.restarts++;
      void this.start();
    }, delay);
    this.timer.unref();
  }
}
