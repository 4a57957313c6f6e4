// Runs short-lived commands through native/build/crisp-spawner (protocol in native/crisp-spawner.c):
// a fork of crispd's own process blocks its event loop for milliseconds per exec, the spawner's does
// not. Without the binary (not built, not installed) commands run through child_process as before.
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { constants as osConstants } from 'node:os';
import { delimiter, join } from 'node:path';
import type { Socket } from 'node:net';
import { execa } from '../common/exec.js';
import { errorMessage } from '../common/errors.js';
import { defaultHelperPath, isExecutableFile } from './helper-paths.js';

export interface RunOptions {
  /** What the command reads on stdin; it gets EOF after it (or at once without input). */
  input?: string | Buffer;
  /** The whole environment of the command; default crispd's. */
  env?: Record<string, string>;
  cwd?: string;
  /** SIGTERM after this many ms (0 = never), SIGKILL `killAfterMs` later if it still runs. */
  timeoutMs?: number;
  killAfterMs?: number;
  /** SIGTERM once this aborts (SIGKILL `killAfterMs` later); the run still resolves with how it ended. */
  signal?: AbortSignal;
}

export interface RunResult {
  /** Set when the command exited; undefined when a signal ended it or it never started. */
  exitCode?: number;
  signal?: NodeJS.Signals;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Why the command could not start (ENOENT, EACCES, …); nothing ran then. */
  startError?: Error;
}

/** True when the command ran and exited 0. */
export const succeeded = (r: RunResult): boolean => r.exitCode === 0 && !r.timedOut && !r.startError;

/** What a failed run says, for error messages: how it ended and the end of its stderr. */
export function describeFailure(file: string, r: RunResult): string {
  if (r.startError) return `cannot run ${file}: ${r.startError.message}`;
  const how = r.timedOut ? 'timed out' : r.signal ? `killed by ${r.signal}` : `exit code ${r.exitCode}`;
  const said = r.stderr.trim().split('\n').slice(-3).join(' | ');
  return `${file}: ${how}${said ? `: ${said}` : ''}`;
}

const OP_RUN = 1;
const OP_KILL = 2;
const KIND_EXITED = 0;
const KIND_SIGNALED = 1;
const DEFAULT_KILL_AFTER_MS = 2000;

const SIGNAL_NAMES = new Map<number, NodeJS.Signals>(
  Object.entries(osConstants.signals).map(([name, num]) => [num, name as NodeJS.Signals]),
);
const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, num]) => [num, name]));

interface Pending {
  resolve(result: RunResult): void;
  timedOut: boolean;
  timers: NodeJS.Timeout[];
  /** Detaches the abort listener. */
  unlisten?: () => void;
}

/** One spawner process and the runs it has in flight. */
class SpawnerProcess {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private inbox: Buffer = Buffer.alloc(0);
  private gone = false;

  private stderr = '';

  private constructor(private readonly child: ChildProcessByStdio<Socket, Socket, Socket>) {
    child.stdout.on('data', (chunk: Buffer) => this.receive(chunk));
    // Its stderr (a line on a fatal error) is kept for the failure message. Not inherited: libuv makes an
    // inherited stdio fd blocking, and that is crispd's own stderr, which would then block crispd.
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => (this.stderr = (this.stderr + text).slice(-500)));
    child.on('exit', (code, signal) => this.fail(new Error(`crisp-spawner exited (${signal ?? `code ${code}`})${this.stderr ? `: ${this.stderr.trim()}` : ''}`)));
    child.on('error', (err) => this.fail(err));
    child.stdin.on('error', (err) => this.fail(err));
    this.idle();
  }

  static start(path: string): SpawnerProcess {
    // the stdio of a spawned child are net.Sockets (pipes): they can be unref'd while idle
    return new SpawnerProcess(spawn(path, [], { stdio: ['pipe', 'pipe', 'pipe'] }) as unknown as ChildProcessByStdio<Socket, Socket, Socket>);
  }

  get alive(): boolean {
    return !this.gone;
  }

  run(file: string, argv0: string, args: readonly string[], opts: RunOptions, env: Record<string, string>): Promise<RunResult> {
    const id = this.nextId++;
    const input = typeof opts.input === 'string' ? Buffer.from(opts.input) : (opts.input ?? Buffer.alloc(0));
    const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
    const strings = [file, opts.cwd ?? '', argv0, ...args, ...envList];
    for (const s of strings) if (s.includes('\0')) throw new Error(`${file}: argument or environment contains NUL`);
    const text = Buffer.from(strings.join('\0') + '\0');
    const head = Buffer.alloc(28);
    head.writeUInt32LE(24 + text.length + input.length, 0);
    head.writeUInt32LE(OP_RUN, 4);
    head.writeUInt32LE(id, 8);
    head.writeUInt32LE(1 + args.length, 12);
    head.writeUInt32LE(envList.length, 16);
    head.writeUInt32LE(input.length, 20);
    head.writeUInt32LE(0, 24);
    return new Promise<RunResult>((resolve) => {
      const job: Pending = { resolve, timedOut: false, timers: [] };
      this.pending.set(id, job);
      this.busy();
      this.child.stdin.write(Buffer.concat([head, text, input]));
      const stop = () => {
        this.kill(id, 'SIGTERM');
        job.timers.push(setTimeout(() => this.kill(id, 'SIGKILL'), opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS));
      };
      if (opts.timeoutMs && opts.timeoutMs > 0) {
        const term = setTimeout(() => {
          job.timedOut = true;
          stop();
        }, opts.timeoutMs);
        job.timers.push(term);
      }
      const { signal } = opts;
      if (signal) {
        if (signal.aborted) stop();
        else {
          signal.addEventListener('abort', stop, { once: true });
          job.unlisten = () => signal.removeEventListener('abort', stop);
        }
      }
    });
  }

  private kill(id: number, signal: NodeJS.Signals): void {
    if (this.gone || !this.pending.has(id)) return;
    const frame = Buffer.alloc(16);
    frame.writeUInt32LE(12, 0);
    frame.writeUInt32LE(OP_KILL, 4);
    frame.writeUInt32LE(id, 8);
    frame.writeUInt32LE(osConstants.signals[signal], 12);
    this.child.stdin.write(frame);
  }

  private receive(chunk: Buffer): void {
    this.inbox = this.inbox.length === 0 ? chunk : Buffer.concat([this.inbox, chunk]);
    while (this.inbox.length >= 4) {
      const len = this.inbox.readUInt32LE(0);
      if (this.inbox.length < 4 + len) break;
      const f = this.inbox.subarray(4, 4 + len);
      this.inbox = this.inbox.subarray(4 + len);
      const id = f.readUInt32LE(0);
      const kind = f.readUInt32LE(4);
      const value = f.readInt32LE(8);
      const outLen = f.readUInt32LE(12);
      const errLen = f.readUInt32LE(16);
      const stdout = f.toString('utf8', 20, 20 + outLen);
      const stderr = f.toString('utf8', 20 + outLen, 20 + outLen + errLen);
      this.settle(id, (timedOut) => {
        if (kind === KIND_EXITED) return { exitCode: value, stdout, stderr, timedOut };
        if (kind === KIND_SIGNALED) return { signal: SIGNAL_NAMES.get(value) ?? 'SIGKILL', stdout, stderr, timedOut };
        const code = ERRNO_NAMES.get(value) ?? `errno ${value}`;
        return { stdout: '', stderr: '', timedOut: false, startError: Object.assign(new Error(code), { code }) };
      });
    }
  }

  private settle(id: number, result: (timedOut: boolean) => RunResult): void {
    const job = this.pending.get(id);
    if (!job) return;
    this.pending.delete(id);
    for (const t of job.timers) clearTimeout(t);
    job.unlisten?.();
    job.resolve(result(job.timedOut));
    if (this.pending.size === 0) this.idle();
  }

  private fail(err: Error): void {
    if (this.gone) return;
    this.gone = true;
    for (const id of [...this.pending.keys()]) {
      this.settle(id, () => ({ stdout: '', stderr: '', timedOut: false, startError: new Error(`crisp-spawner failed: ${errorMessage(err)}`) }));
    }
  }

  /** Nothing in flight: the spawner must not keep crispd (or a test) alive. */
  private idle(): void {
    this.child.unref();
    this.child.stdin.unref();
    this.child.stdout.unref();
    this.child.stderr.unref();
  }

  private busy(): void {
    this.child.ref();
    this.child.stdin.ref();
    this.child.stdout.ref();
    this.child.stderr.ref();
  }

  stop(): void {
    this.child.stdin.end();
  }
}

let configuredPath: string | undefined;

/** The spawner binary: the source checkout's native/build/ when built there, else the package's. */
export function spawnerPath(): string {
  return configuredPath ?? defaultHelperPath('crisp-spawner');
}

/** Use the spawner at `path` from the next command on ("" = none: child_process; undefined = the default). */
export function useSpawnerPath(path: string | undefined): void {
  configuredPath = path;
  stopSpawner();
}


/** The first of `dirs` holding an executable regular file named `name` (CNI bin dirs, PATH). */
export async function findExecutable(name: string, dirs: readonly string[]): Promise<string | undefined> {
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      if ((await stat(path)).isFile()) {
        await access(path, fsConstants.X_OK);
        return path;
      }
    } catch {
      // not here (or not executable): keep looking, like PATH lookup does
    }
  }
  return undefined;
}

/** `file` as the kernel wants it: a name without a slash is looked up in PATH, like execvp. */
export function resolveCommand(file: string, path: string | undefined): Promise<string | undefined> {
  if (file.includes('/')) return Promise.resolve(file);
  return findExecutable(file, (path ?? '').split(delimiter).filter(Boolean));
}

let current: SpawnerProcess | undefined;

function spawner(): SpawnerProcess | undefined {
  if (current?.alive) return current;
  const path = spawnerPath();
  current = path && isExecutableFile(path) ? SpawnerProcess.start(path) : undefined;
  return current;
}

/** Runs `file args` to its end and returns what it wrote and how it ended; never rejects for a failed run. */
export async function runCommand(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const env = opts.env ?? (process.env as Record<string, string>);
  const s = spawner();
  if (s) {
    const resolved = await resolveCommand(file, env.PATH);
    if (!resolved) {
      return { stdout: '', stderr: '', timedOut: false, startError: Object.assign(new Error('ENOENT'), { code: 'ENOENT' }) };
    }
    return await s.run(resolved, file, args, opts, env);
  }
  return await runWithChildProcess(file, args, opts, env);
}

async function runWithChildProcess(file: string, args: readonly string[], opts: RunOptions, env: Record<string, string>): Promise<RunResult> {
  const run = await execa(file, args, {
    // stdin ends at once without input, as through the spawner (a shim's `start` reads stdin to EOF)
    input: opts.input ?? '',
    env,
    extendEnv: false,
    ...(opts.cwd ? { cwd: opts.cwd } : {}),
    ...(opts.timeoutMs ? { timeout: opts.timeoutMs } : {}),
    ...(opts.signal ? { cancelSignal: opts.signal } : {}),
    forceKillAfterDelay: opts.killAfterMs ?? DEFAULT_KILL_AFTER_MS,
    reject: false,
    stripFinalNewline: false,
  });
  const result: RunResult = { stdout: String(run.stdout ?? ''), stderr: String(run.stderr ?? ''), timedOut: run.timedOut };
  if (run.exitCode !== undefined) result.exitCode = run.exitCode;
  if (run.signal !== undefined) result.signal = run.signal;
  if (run.exitCode === undefined && run.signal === undefined && !run.timedOut) result.startError = run.cause instanceof Error ? run.cause : new Error(run.originalMessage);
  return result;
}

/** Runs `file args` and rejects with what it said unless it exited 0. */
export async function runChecked(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const run = await runCommand(file, args, opts);
  if (!succeeded(run)) throw new Error(describeFailure([file, ...args].join(' '), run));
  return run;
}

/** Ends the spawner (tests; crispd's spawner ends with crispd). */
export function stopSpawner(): void {
  current?.stop();
  current = undefined;
}
