// crisp-logger glue (contract in native/README.md): the binary:// stdout URI that makes containerd's
// runc shim start native/build/crisp-logger for a task, and log reopening after kubelet's rotation.
// The shim, not crispd, is the logger's parent, so CRI logs keep flowing while crispd is down.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { Readable } from 'node:stream';
import { closeSync, openSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute, normalize } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CrispError, invalidArgument, isErrno, type ErrorKind } from '../common/errors.js';
import { helperPath } from './helper-paths.js';

export interface LoggerFiles {
  /** The CRI log file; its directory must exist. */
  logPath: string;
  /** The logger writes its pid here (and removes it on exit); reopenLog reads it. */
  pidFile: string;
  /** The logger's state line, rewritten after every reopen; reopenLog waits on it. */
  ackFile: string;
  /** Terminal task: the shim sends the console on stdout and never ends stderr. */
  tty?: boolean;
  /** FIFO mode (with stderrFifo; not with tty): read these instead of the shim's fds 3 and 4. */
  stdoutFifo?: string;
  stderrFifo?: string;
  /** The file starts over once it grows past this many bytes (an internal, attach-only log). */
  maxBytes?: number;
}

export interface LoggerUriOptions extends LoggerFiles {
  /** Logger binary; default loggerPath(). */
  binary?: string;
}

/** The logger's ack file, one JSON line. */
export interface LoggerAck {
  pid: number;
  /** SIGUSR1s handled so far (failed reopens included). */
  reopens: number;
  /** Why the last reopen failed ("" when it worked); the logger then keeps the old file. */
  error: string;
  /** Bytes of CRI records lost to failed writes (disk full), and how many writes failed. */
  droppedBytes: number;
  writeErrors: number;
  /** Written once at exit. */
  exited: boolean;
}

export interface ReopenOptions {
  pidFile: string;
  ackFile: string;
  /** Default 5000. */
  timeoutMs?: number;
  /** For error messages only. */
  containerId?: string;
}

/** A failed logger operation: `step` says which part (read pidfile, signal, wait for ack, reopen). */
export class LoggerError extends CrispError {
  constructor(
    kind: ErrorKind,
    readonly target: string,
    readonly step: string,
    readonly detail: string,
  ) {
    super(kind, `logger ${target}: ${step}${detail ? `: ${detail}` : ''}`);
    this.name = `LoggerError(${kind})`;
  }
}

export const isLoggerError = (err: unknown): err is LoggerError => err instanceof LoggerError;

const LOGGER_NAME = 'crisp-logger' as const;
const DEFAULT_TIMEOUT_MS = 5000;
const POLL_MS = 5;

/** Where the logger binary is: config `logger_path`, else the default (see helper-paths.ts). */
export function loggerPath(): string {
  return helperPath(LOGGER_NAME);
}

// ---- argv and URI (pure) ----

function checkPath(what: string, path: string): void {
  if (typeof path !== 'string' || !isAbsolute(path))
    throw invalidArgument(`crisp-logger: ${what} must be an absolute path, got "${path}"`);
  // argv strings end at NUL, and the shim would fail to exec
  if (path.includes('\0')) throw invalidArgument(`crisp-logger: ${what} contains NUL`);
}

/** The logger's arguments (after argv[0]) as key/value pairs, in a fixed order. */
export function loggerArgs(files: LoggerFiles): string[] {
  checkPath('logPath', files.logPath);
  checkPath('pidFile', files.pidFile);
  checkPath('ackFile', files.ackFile);
  const args = ['log', files.logPath, 'pid', files.pidFile, 'ack', files.ackFile];
  if (files.tty) args.push('tty', '1');
  if (files.maxBytes !== undefined) {
    if (!Number.isSafeInteger(files.maxBytes) || files.maxBytes < 1) throw invalidArgument(`crisp-logger: maxBytes must be a positive integer, got ${files.maxBytes}`);
    args.push('max', String(files.maxBytes));
  }
  if (files.stdoutFifo !== undefined || files.stderrFifo !== undefined) {
    if (files.stdoutFifo === undefined || files.stderrFifo === undefined) throw invalidArgument('crisp-logger: stdoutFifo and stderrFifo go together');
    if (files.tty) throw invalidArgument('crisp-logger: FIFO mode is not for terminal tasks');
    checkPath('stdoutFifo', files.stdoutFifo);
    checkPath('stderrFifo', files.stderrFifo);
    args.push('stdout', files.stdoutFifo, 'stderr', files.stderrFifo);
  }
  return args;
}

/** Percent-encodes everything but unreserved characters, so Go's url.Parse/ParseQuery decode it
 *  back exactly ("+" and ";" included, which Go's query parser treats specially). */
function encode(part: string): string {
  try {
    return encodeURIComponent(part);
  } catch (err) {
    throw invalidArgument(`crisp-logger: cannot encode "${part}" (lone surrogate)`, err);
  }
}

/**
 * The stdout (and stderr) URI for Tasks.Create: `binary:///ABS/crisp-logger?log=…&pid=…&ack=…[&tty=1]`.
 * The shim turns every query key k with value v into the two arguments "k" "v", in Go map order,
 * which the logger reads as order-free pairs.
 */
export function loggerUri(opts: LoggerUriOptions): string {
  const binary = opts.binary ?? loggerPath();
  checkPath('binary', binary);
  const args = loggerArgs(opts);
  const query: string[] = [];
  for (let i = 0; i < args.length; i += 2) query.push(`${args[i]}=${encode(args[i + 1])}`);
  const path = binary.split('/').map(encode).join('/');
  return `binary://${path}?${query.join('&')}`;
}

/** The logger's own argument rules in TypeScript: order-free pairs, each key once, paths absolute. */
export function parseLoggerArgs(argv: readonly string[]): LoggerFiles {
  if (argv.length % 2 !== 0) throw invalidArgument(`crisp-logger: arguments must be key/value pairs, got ${argv.length}`);
  const seen = new Map<string, string>();
  for (let i = 0; i < argv.length; i += 2) {
    const [key, value] = [argv[i], argv[i + 1]];
    if (!['log', 'pid', 'ack', 'tty', 'stdout', 'stderr', 'max'].includes(key)) throw invalidArgument(`crisp-logger: unknown key "${key}"`);
    if (seen.has(key)) throw invalidArgument(`crisp-logger: ${key} given twice`);
    seen.set(key, value);
  }
  const need = (key: string, what: string): string => {
    const value = seen.get(key);
    if (value === undefined) throw invalidArgument('crisp-logger: log, pid and ack are required');
    checkPath(what, value);
    return value;
  };
  const files: LoggerFiles = { logPath: need('log', 'log'), pidFile: need('pid', 'pid'), ackFile: need('ack', 'ack') };
  const tty = seen.get('tty');
  if (tty !== undefined && tty !== '0' && tty !== '1') throw invalidArgument(`crisp-logger: tty must be 0 or 1, got "${tty}"`);
  if (tty === '1') files.tty = true;
  const max = seen.get('max');
  if (max !== undefined) {
    if (!/^[1-9][0-9]*$/.test(max)) throw invalidArgument(`crisp-logger: max must be a positive byte count, got "${max}"`);
    files.maxBytes = Number(max);
  }
  const [out, err] = [seen.get('stdout'), seen.get('stderr')];
  if ((out === undefined) !== (err === undefined)) throw invalidArgument('crisp-logger: stdout and stderr go together');
  if (out !== undefined && err !== undefined) {
    if (files.tty) throw invalidArgument('crisp-logger: tty 1 is for the shim\'s fds, not for FIFOs');
    checkPath('stdout', out);
    checkPath('stderr', err);
    files.stdoutFifo = out;
    files.stderrFifo = err;
  }
  return files;
}

/** Parses the ack line; undefined for anything that is not a complete ack. */
export function parseLoggerAck(text: string): LoggerAck | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const counts = [v.pid, v.reopens, v.droppedBytes, v.writeErrors];
  if (!counts.every((n) => typeof n === 'number' && Number.isInteger(n) && n >= 0)) return undefined;
  if (typeof v.error !== 'string' || typeof v.exited !== 'boolean') return undefined;
  return {
    pid: v.pid as number,
    reopens: v.reopens as number,
    error: v.error,
    droppedBytes: v.droppedBytes as number,
    writeErrors: v.writeErrors as number,
    exited: v.exited,
  };
}

// ---- talking to a running logger ----

/** The current ack, or undefined when the file is absent (the logger never got ready). */
export async function readLoggerAck(ackFile: string): Promise<LoggerAck | undefined> {
  try {
    return parseLoggerAck(await readFile(ackFile, 'utf8'));
  } catch (err) {
    if (isErrno(err, 'ENOENT')) return undefined;
    throw err;
  }
}

async function readPid(pidFile: string, target: string): Promise<number> {
  let text: string;
  try {
    text = await readFile(pidFile, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT')) throw new LoggerError('NOT_FOUND', target, 'read pidfile', 'no logger running (pidfile absent)');
    throw new LoggerError('INTERNAL', target, 'read pidfile', String(err));
  }
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 1) throw new LoggerError('INTERNAL', target, 'read pidfile', `bad content ${JSON.stringify(text)}`);
  return pid;
}

/** A pid from a pidfile may have been reused after a SIGKILL; SIGUSR1 would kill a stranger, so
 *  the process must carry "pid <pidFile>" in its argv. */
async function checkIsOurLogger(pid: number, pidFile: string, target: string): Promise<void> {
  let cmdline: string;
  try {
    cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8');
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ESRCH'))
      throw new LoggerError('NOT_FOUND', target, 'find logger', `pid ${pid} is gone (stale pidfile)`);
    throw new LoggerError('INTERNAL', target, 'find logger', String(err));
  }
  const args = cmdline.split('\0');
  const want = normalize(pidFile);
  const ours = args.some((a, i) => i > 0 && a === 'pid' && args[i + 1] !== undefined && normalize(args[i + 1]) === want);
  if (!ours) throw new LoggerError('NOT_FOUND', target, 'find logger', `pid ${pid} is not this logger (stale pidfile)`);
}

function signal(pid: number, sig: NodeJS.Signals | 0, target: string): boolean {
  try {
    process.kill(pid, sig);
    return true;
  } catch (err) {
    if (isErrno(err, 'ESRCH')) return false;
    throw new LoggerError(isErrno(err, 'EPERM') ? 'PERMISSION_DENIED' : 'INTERNAL', target, `signal ${sig}`, String(err));
  }
}

/**
 * After kubelet renamed the log file: SIGUSR1 to the logger in `pidFile`, then wait until its ack
 * shows the reopen. Everything the logger read before it handled the signal is in the old file,
 * everything after in a fresh file at the same path. Errors: NOT_FOUND (no logger), DEADLINE_EXCEEDED
 * (no ack in time), INTERNAL (the reopen failed; the logger keeps writing to the old file).
 */
export async function reopenLog(opts: ReopenOptions): Promise<LoggerAck> {
  const target = opts.containerId ?? opts.pidFile;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const pid = await readPid(opts.pidFile, target);
  await checkIsOurLogger(pid, opts.pidFile, target);
  const before = await readLoggerAck(opts.ackFile);
  const seen = before?.reopens ?? 0;
  if (!signal(pid, 'SIGUSR1', target)) throw new LoggerError('NOT_FOUND', target, 'signal SIGUSR1', `pid ${pid} is gone`);

  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ack = await readLoggerAck(opts.ackFile);
    if (ack && ack.pid === pid && ack.reopens > seen) {
      if (ack.error) throw new LoggerError('INTERNAL', target, 'reopen', ack.error);
      return ack;
    }
    if (ack?.exited || !signal(pid, 0, target))
      throw new LoggerError('NOT_FOUND', target, 'wait for ack', `logger ${pid} exited before reopening`);
    if (Date.now() >= deadline)
      throw new LoggerError('DEADLINE_EXCEEDED', target, 'wait for ack', `no reopen after ${timeoutMs} ms`);
    await sleep(POLL_MS);
  }
}

// ---- FIFO mode: a logger crispd starts ----

export interface FifoLoggerOptions extends LoggerFiles {
  stdoutFifo: string;
  stderrFifo: string;
  /** Logger binary; default loggerPath(). */
  binary?: string;
  /** CONTAINER_ID in its environment, and the target of error messages. */
  containerId?: string;
  /** The logger's stderr (diagnostics) is appended here; default: discarded. */
  diagnostics?: string;
  /** How long it may take to open the FIFOs and write its ack; default 5000. */
  readyTimeoutMs?: number;
}

/**
 * Starts the logger for a task whose stdio are plain FIFOs (the only stdio with which containerd's
 * shim connects a non-terminal task's stdin). It runs detached, in its own session, holding nothing
 * of crispd's, so like a shim-started logger it outlives crispd and ends at the task's EOF.
 * Resolves with its pid once its ack shows both FIFOs open (Tasks.Create may follow at once).
 */
export async function startFifoLogger(opts: FifoLoggerOptions): Promise<number> {
  const target = opts.containerId ?? opts.pidFile;
  const args = loggerArgs(opts);
  const binary = opts.binary ?? loggerPath();
  checkPath('binary', binary);
  const timeoutMs = opts.readyTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  const errFd = opts.diagnostics ? openSync(opts.diagnostics, 'a', 0o640) : undefined;
  let child: ChildProcess;
  try {
    // fd 5 is a readiness pipe, as the shim gives a logger it starts: the logger closes it once its
    // ack is written (or by exiting), so nothing polls.
    child = spawn(binary, args, {
      detached: true,
      stdio: ['ignore', 'ignore', errFd ?? 'ignore', 'ignore', 'ignore', 'pipe'],
      env: { CONTAINER_ID: opts.containerId ?? '' },
      cwd: '/',
    });
  } finally {
    if (errFd !== undefined) closeSync(errFd);
  }
  const exited = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(String(error)));
    child.once('exit', (code, sig) => resolve(sig ? `killed by ${sig}` : `exit code ${code}`));
  });
  child.unref();
  const ready = (child.stdio as unknown as (Readable | null | undefined)[])[5] ?? undefined;
  // Flowing, so the peer's close is seen (the logger never writes to it).
  ready?.resume();
  const failed = (how: string) => new LoggerError('INTERNAL', target, 'start', `${how}${opts.diagnostics ? ` (see ${opts.diagnostics})` : ''}`);
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcome = await Promise.race([
      ready ? once(ready, 'close').then(() => 'closed' as const) : exited.then(() => 'closed' as const),
      exited.then((how) => ({ exited: how })),
      new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
    ]);
    if (outcome === 'timeout') {
      if (child.pid !== undefined) signal(child.pid, 'SIGKILL', target);
      throw new LoggerError('DEADLINE_EXCEEDED', target, 'start', `not ready after ${timeoutMs} ms`);
    }
    if (typeof outcome === 'object') throw failed(outcome.exited);
    // The pipe closes at the ack, or because the logger died first: the ack tells which.
    const ack = child.pid !== undefined ? await readLoggerAck(opts.ackFile) : undefined;
    if (ack && ack.pid === child.pid && !ack.exited) return child.pid;
    throw failed(await Promise.race([exited, sleep(1000).then(() => 'closed its readiness pipe without an ack')]));
  } finally {
    clearTimeout(timer);
    ready?.destroy();
  }
}

/**
 * Ends the logger named by `pidFile` if it still runs (SIGTERM: it drains what the FIFOs hold,
 * then exits) and waits up to `timeoutMs` for it to go. For a logger whose task never started or
 * is gone; absent, stale or foreign pids are left alone. Resolves true if one was signalled.
 */
export async function stopLogger(pidFile: string, timeoutMs = 5000): Promise<boolean> {
  let pid: number;
  try {
    pid = await readPid(pidFile, pidFile);
    await checkIsOurLogger(pid, pidFile, pidFile);
  } catch (err) {
    if (isLoggerError(err) && err.kind === 'NOT_FOUND') return false;
    throw err;
  }
  if (!signal(pid, 'SIGTERM', pidFile)) return false;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const stillOurs = await checkIsOurLogger(pid, pidFile, pidFile).then(
      () => true,
      () => false,
    );
    if (!stillOurs) return true;
    await sleep(POLL_MS * 4);
  }
  signal(pid, 'SIGKILL', pidFile);
  return true;
}
