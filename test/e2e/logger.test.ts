// crisp-logger end to end. First started the way containerd's runc shim starts it (fds 3/4 = the
// container's stdout/stderr, fd 5 = the ready pipe it closes; no root needed), then under a real
// containerd 1.6 of our own (root): through `ctr run --log-uri` and through Tasks.Create over gRPC
// (the call crisp makes), with rotation, containerd killed and restarted, and a terminal task.
// Everything lives under /tmp/crisp-e2e-logger-<rand> and is removed at the end.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  rmdirSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { open } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  isLoggerError,
  loggerArgs,
  loggerPath,
  loggerUri,
  readLoggerAck,
  reopenLog,
  type LoggerFiles,
} from '../../native/logger.js';
import { ContainerdClient } from '../../backend/containerd/client.js';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const hasContainerd = ['/usr/bin/containerd', '/usr/bin/ctr', '/usr/bin/containerd-shim-runc-v2'].every((p) => existsSync(p));
const skipContainerd = !isRoot ? 'needs root' : !hasContainerd ? 'containerd 1.6 not installed' : false;

/** Per test: a hang fails the test instead of blocking the run. */
const T = { timeout: 120_000 };

let base = '';
let n = 0;
function freshDir(): string {
  const d = join(base, `t${n++}`);
  mkdirSync(d);
  return d;
}

before(async () => {
  const nativeDir = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'native');
  if (existsSync(join(nativeDir, 'Makefile'))) await run('make', ['-s', '-C', nativeDir]);
  assert.ok(existsSync(loggerPath()), `logger missing at ${loggerPath()}`);
  base = `/tmp/crisp-e2e-logger-${randomBytes(4).toString('hex')}`;
  mkdirSync(base, { mode: 0o755 });
});

after(async () => {
  if (!base) return;
  await containerdCleanup();
  // loggers a failed test left behind (started by us; found by the unique base dir in their argv)
  for (const pid of pidsMentioning(base)) killQuietly(pid, 'SIGKILL');
  rmSync(base, { recursive: true, force: true });
});

// ---- helpers ----

const write = (w: Duplex, data: string | Buffer) =>
  new Promise<void>((resolve, reject) => w.write(data, (err) => (err ? reject(err) : resolve())));
const end = (w: Duplex) => new Promise<void>((resolve) => w.end(resolve));

/** The parent's end of the pipe at `fd` of a child spawned with 'pipe' there. */
function pipeAt(child: ChildProcess, fd: number): Duplex {
  const stream = (child.stdio as unknown as (Duplex | null | undefined)[])[fd];
  assert.ok(stream, `no pipe at fd ${fd}`);
  return stream;
}

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

function killQuietly(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    /* already gone */
  }
}

/** Gone or a zombie nobody reaped yet (an orphan's reaper is not ours). */
function isGone(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.startsWith('Z') ?? true;
  } catch {
    return true;
  }
}

function pidsMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

interface LogRecord {
  time: string;
  ns: bigint;
  stream: string;
  tag: string;
  msg: Buffer;
}

const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{0,8}[1-9]))?Z$/;

/** Parses a CRI log byte-exactly; asserts the format of every line on the way. */
function parseLog(buf: Buffer): LogRecord[] {
  const records: LogRecord[] = [];
  let start = 0;
  while (start < buf.length) {
    const nl = buf.indexOf(0x0a, start);
    assert.ok(nl >= 0, 'log ends with a newline');
    const line = buf.subarray(start, nl);
    start = nl + 1;
    const s1 = line.indexOf(0x20);
    const s2 = line.indexOf(0x20, s1 + 1);
    const s3 = line.indexOf(0x20, s2 + 1);
    assert.ok(s1 > 0 && s2 > s1 && s3 > s2, `record has four fields: ${JSON.stringify(line.toString('latin1').slice(0, 80))}`);
    const time = line.subarray(0, s1).toString('latin1');
    const m = TIMESTAMP.exec(time);
    assert.ok(m, `RFC3339Nano UTC timestamp without trailing zeros: ${time}`);
    const secs = BigInt(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]) / 1000);
    const stream = line.subarray(s1 + 1, s2).toString('latin1');
    const tag = line.subarray(s2 + 1, s3).toString('latin1');
    assert.ok(stream === 'stdout' || stream === 'stderr', `stream ${stream}`);
    assert.ok(tag === 'F' || tag === 'P', `tag ${tag}`);
    if (tag === 'P') assert.ok(line.length <= s3 + 1 + 16384, 'a P record carries at most 16 KiB');
    records.push({ time, ns: secs * 1_000_000_000n + BigInt((m[7] ?? '').padEnd(9, '0')), stream, tag, msg: line.subarray(s3 + 1) });
  }
  for (let i = 1; i < records.length; i++)
    assert.ok(records[i].ns >= records[i - 1].ns, `timestamps never go back: ${records[i - 1].time} then ${records[i].time}`);
  return records;
}

const readLog = (path: string) => (existsSync(path) ? parseLog(readFileSync(path)) : []);
/** "F text" per record of one stream. */
/**
 * One stream's records as "TAG text". An unfinished line followed by 100 ms of quiet is written as a
 * short "P" record (as CRI-O's conmon does); whether that happens depends on scheduling, so such a
 * record is joined with the stream's next one here. 16 KiB "P" records (line splits) stay as they are.
 */
const texts = (records: LogRecord[], stream: string) => {
  const out: string[] = [];
  let carry = '';
  for (const r of records.filter((x) => x.stream === stream)) {
    const text = r.msg.toString('latin1');
    if (r.tag === 'P' && r.msg.length < 16384) {
      carry += text;
      continue;
    }
    out.push(`${r.tag} ${carry}${text}`);
    carry = '';
  }
  if (carry) out.push(`P ${carry}`);
  return out;
};

interface Started {
  child: ChildProcess;
  out: Duplex;
  err: Duplex;
  files: LoggerFiles;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts the logger the way the shim does: fds 3, 4, 5 and the two env vars, then waits for fd 5. */
async function startLogger(id: string, opts: { tty?: boolean; logPath?: string } = {}): Promise<Started> {
  const dir = freshDir();
  const files: LoggerFiles = {
    logPath: opts.logPath ?? join(dir, '0.log'),
    pidFile: join(dir, 'logger.pid'),
    ackFile: join(dir, 'logger.ack'),
    ...(opts.tty ? { tty: true } : {}),
  };
  const child = spawn(loggerPath(), loggerArgs(files), {
    stdio: ['ignore', 'ignore', 'inherit', 'pipe', 'pipe', 'pipe'],
    env: { CONTAINER_ID: id, CONTAINER_NAMESPACE: 'e2e' },
  });
  const exit = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
  const ready = pipeAt(child, 5);
  ready.resume();
  await once(ready, 'end');
  assert.ok(await readLoggerAck(files.ackFile), 'ack written before the ready pipe closed');
  return { child, out: pipeAt(child, 3), err: pipeAt(child, 4), files, exit };
}

// ---- the logger on its own ----

test('records: full and partial lines, 16 KiB splits, \\r and binary bytes, EOF flush', T, async () => {
  const r = await startLogger('records');
  assert.equal(readFileSync(r.files.pidFile, 'utf8'), `${r.child.pid}\n`);
  assert.deepEqual(await readLoggerAck(r.files.ackFile), { pid: r.child.pid, reopens: 0, error: '', droppedBytes: 0, writeErrors: 0, exited: false });

  // strict interleaving: each line is in the file before the next is written
  for (const [w, line] of [[r.out, 'out-1'], [r.err, 'err-1'], [r.out, 'out-2'], [r.err, 'err-2']] as const) {
    await write(w, `${line}\n`);
    await waitFor(() => readLog(r.files.logPath).some((x) => x.msg.toString() === line), line);
  }
  const binary = Buffer.from([0x00, 0x01, 0x1b, 0x5b, 0x33, 0x31, 0x6d, 0xff, 0xfe, 0x7f, 0x0d, 0x20]);
  await write(r.out, 'one\ntwo\n\n');
  await write(r.err, 'e partial ');
  await write(r.out, `${'x'.repeat(40 * 1024)}\n${'y'.repeat(16384)}\n${'z'.repeat(16385)}\n`);
  await write(r.out, 'carriage\r\n');
  await write(r.err, 'rest\n');
  await write(r.out, Buffer.concat([binary, Buffer.from('\n')]));
  await write(r.out, 'tail-no-newline');
  await write(r.err, 'err-tail');
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });

  const records = readLog(r.files.logPath);
  assert.deepEqual(texts(records, 'stdout'), [
    'F out-1',
    'F out-2',
    'F one',
    'F two',
    'F ',
    `P ${'x'.repeat(16384)}`,
    `P ${'x'.repeat(16384)}`,
    `F ${'x'.repeat(40 * 1024 - 2 * 16384)}`,
    `F ${'y'.repeat(16384)}`,
    `P ${'z'.repeat(16384)}`,
    'F z',
    'F carriage\r',
    `F ${binary.toString('latin1')}`,
    'F tail-no-newline',
  ]);
  assert.deepEqual(texts(records, 'stderr'), ['F err-1', 'F err-2', 'F e partial rest', 'F err-tail']);
  assert.deepEqual(
    records.slice(0, 4).map((x) => `${x.stream} ${x.msg.toString()}`),
    ['stdout out-1', 'stderr err-1', 'stdout out-2', 'stderr err-2'],
  );
  const mode = statSync(r.files.logPath).mode & 0o777;
  assert.equal(mode & ~0o640, 0, `log mode ${mode.toString(8)} is at most 0640`);
  assert.equal(existsSync(r.files.pidFile), false, 'pidfile removed at exit');
  assert.equal((await readLoggerAck(r.files.ackFile))?.exited, true);
});

test('a flooding stdout does not hold back stderr', T, async () => {
  const r = await startLogger('flood');
  const chunk = Buffer.from(`${'o'.repeat(99)}\n`.repeat(655)); // ~64 KiB
  let stop = false;
  let sent = 0;
  const pump = (async () => {
    while (!stop) {
      await write(r.out, chunk);
      sent += chunk.length;
    }
  })();
  try {
    await waitFor(() => sent > 8 << 20, 'stdout flood under way', 20_000);
    const sentBefore = sent;
    let offset = statSync(r.files.logPath).size; // scan only what is appended from now on
    const t0 = Date.now();
    await write(r.err, 'urgent\n');
    const fh = await open(r.files.logPath, 'r');
    let carry = '';
    const buf = Buffer.alloc(8 << 20);
    try {
      await waitFor(
        async () => {
          // async reads: the flood keeps going while we look
          for (let bytesRead = -1; bytesRead !== 0; ) {
            ({ bytesRead } = await fh.read(buf, 0, buf.length, offset));
            offset += bytesRead;
            const text = carry + buf.subarray(0, bytesRead).toString('latin1');
            if (text.includes(' stderr F urgent\n')) return true;
            carry = text.slice(-32);
          }
          return false;
        },
        'the stderr line while stdout floods',
        10_000,
      );
    } finally {
      await fh.close();
    }
    console.log(`# stderr line logged ${Date.now() - t0} ms after it was written, with ${((sent - sentBefore) / 1e6).toFixed(1)} MB of stdout flooding meanwhile`);
  } finally {
    stop = true;
    await pump;
  }
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  rmSync(r.files.logPath); // can be large
});

test('rotation: rename + reopenLog; a failed reopen keeps the old file', T, async () => {
  const r = await startLogger('rotate');
  const { logPath, pidFile, ackFile } = r.files;
  await write(r.out, 'old-1\nold-2\nhalf-');
  await waitFor(() => readLog(logPath).length === 2, 'old lines');
  renameSync(logPath, `${logPath}.1`);
  const ack = await reopenLog({ pidFile, ackFile, timeoutMs: 5000, containerId: 'rotate' });
  assert.deepEqual(ack, { pid: r.child.pid, reopens: 1, error: '', droppedBytes: 0, writeErrors: 0, exited: false });
  assert.ok(existsSync(logPath), 'a fresh file right after the ack');
  await write(r.out, 'done\nnew-1\n');
  await write(r.err, 'new-err\n');
  await waitFor(() => readLog(logPath).length === 3, 'new lines');
  assert.deepEqual(texts(readLog(`${logPath}.1`), 'stdout'), ['F old-1', 'F old-2']);
  assert.deepEqual(texts(readLog(logPath), 'stdout'), ['F half-done', 'F new-1']);
  assert.deepEqual(texts(readLog(logPath), 'stderr'), ['F new-err']);

  // the path cannot be opened (a directory took its place): the reopen fails with the reason and
  // the logger keeps writing to the file it has open
  renameSync(logPath, `${logPath}.2`);
  mkdirSync(logPath);
  try {
    await assert.rejects(
      reopenLog({ pidFile, ackFile, containerId: 'rotate' }),
      (err: unknown) => isLoggerError(err) && err.kind === 'INTERNAL' && err.step === 'reopen' && /open: Is a directory/.test(err.detail),
    );
    await write(r.out, 'after-fail\n');
    await waitFor(() => readLog(`${logPath}.2`).length === 4, 'line in the still-open file');
  } finally {
    rmdirSync(logPath);
  }
  const again = await reopenLog({ pidFile, ackFile, timeoutMs: 5000 });
  assert.equal(again.reopens, 3);
  assert.equal(again.error, '');
  await write(r.out, 'back\n');
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  assert.deepEqual(texts(readLog(`${logPath}.2`), 'stdout'), ['F half-done', 'F new-1', 'F after-fail']);
  assert.deepEqual(texts(readLog(logPath), 'stdout'), ['F back']);
  await assert.rejects(reopenLog({ pidFile, ackFile }), (err: unknown) => isLoggerError(err) && err.kind === 'NOT_FOUND');
});

test('an unfinished line is written as a P record after 100 ms of quiet (prompts reach attach and logs)', T, async () => {
  const r = await startLogger('partial-flush');
  await write(r.out, 'prompt> ');
  await waitFor(() => readLog(r.files.logPath).some((x) => x.tag === 'P' && x.msg.toString() === 'prompt> '), 'P record for the prompt');
  await write(r.out, 'answer\n');
  await waitFor(() => readLog(r.files.logPath).some((x) => x.tag === 'F' && x.msg.toString() === 'answer'), 'F record for the rest');
  // A last line without its newline: written as P after the quiet period, ended by an empty F at EOF.
  await write(r.out, 'no-end');
  await waitFor(() => readLog(r.files.logPath).some((x) => x.tag === 'P' && x.msg.toString() === 'no-end'), 'P record for the last line');
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  assert.deepEqual(readLog(r.files.logPath).map((x) => `${x.tag} ${x.msg.toString()}`), ['P prompt> ', 'F answer', 'P no-end', 'F ']);
});

test('SIGTERM: what the pipes hold is written, partial lines flushed, exit 0', T, async () => {
  // the shim's order on task delete: close its pipe ends, then SIGTERM at once
  const a = await startLogger('term-closed');
  await write(a.out, 'a\nb\npartial-out');
  await write(a.err, 'e\npartial-err');
  await end(a.out);
  await end(a.err);
  a.child.kill('SIGTERM');
  assert.deepEqual(await a.exit, { code: 0, signal: null });
  assert.deepEqual(texts(readLog(a.files.logPath), 'stdout'), ['F a', 'F b', 'F partial-out']);
  assert.deepEqual(texts(readLog(a.files.logPath), 'stderr'), ['F e', 'F partial-err']);
  assert.equal(existsSync(a.files.pidFile), false);

  // writers still open (a container still running): drain what is there, do not wait for more
  const b = await startLogger('term-open');
  await write(b.out, 'x1\nx2-partial');
  const t0 = Date.now();
  b.child.kill('SIGTERM');
  assert.deepEqual(await b.exit, { code: 0, signal: null });
  assert.ok(Date.now() - t0 < 2500, 'bounded drain');
  assert.deepEqual(texts(readLog(b.files.logPath), 'stdout'), ['F x1', 'F x2-partial']);
  b.out.destroy();
  b.err.destroy();
});

test('tty: stderr is never read, stdout EOF alone ends the logger', T, async () => {
  const r = await startLogger('tty', { tty: true });
  await write(r.out, 'console line\r\n');
  await end(r.out); // r.err stays open, as the shim's never-closed stderr pipe does
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  assert.deepEqual(texts(readLog(r.files.logPath), 'stdout'), ['F console line\r']);
  r.err.destroy();
});

test('disk full: records are dropped and counted, the pipes keep draining', T, async () => {
  const r = await startLogger('full', { logPath: '/dev/full' });
  const chunk = Buffer.from('d'.repeat(1023) + '\n');
  const t0 = Date.now();
  for (let i = 0; i < 2048; i++) await write(r.out, chunk); // 2 MiB: far more than any pipe holds
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  const ack = await readLoggerAck(r.files.ackFile);
  assert.ok(ack?.exited);
  assert.ok(ack.writeErrors > 0);
  assert.ok(ack.droppedBytes >= 2048 * 1024, `dropped ${ack.droppedBytes} bytes`);
  console.log(`# 2 MiB drained into /dev/full in ${Date.now() - t0} ms, ${ack.droppedBytes} bytes dropped in ${ack.writeErrors} writes`);
});

test('throughput: 50 MB of 100-byte lines', T, async () => {
  const r = await startLogger('throughput');
  const linesPerChunk = 10_485;
  const chunk = Buffer.from(`${'m'.repeat(99)}\n`.repeat(linesPerChunk));
  const chunks = 50;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < chunks; i++) await write(r.out, chunk);
  await end(r.out);
  await end(r.err);
  assert.deepEqual(await r.exit, { code: 0, signal: null });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const mb = (chunk.length * chunks) / 1e6;
  console.log(`# throughput: ${mb.toFixed(1)} MB in ${secs.toFixed(2)} s = ${(mb / secs).toFixed(0)} MB/s (log file ${(statSync(r.files.logPath).size / 1e6).toFixed(1)} MB)`);
  const records = readLog(r.files.logPath);
  assert.equal(records.length, linesPerChunk * chunks);
  assert.ok(records.every((x) => x.tag === 'F' && x.stream === 'stdout' && x.msg.length === 99));
});

test('survives its parent: started from a short-lived shell, keeps logging', T, async () => {
  const dir = freshDir();
  const files: LoggerFiles = { logPath: join(dir, '0.log'), pidFile: join(dir, 'logger.pid'), ackFile: join(dir, 'logger.ack') };
  const sh = spawn('sh', ['-c', '"$0" "$@" & exit 0', loggerPath(), ...loggerArgs(files)], {
    stdio: ['ignore', 'ignore', 'inherit', 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const ready = pipeAt(sh, 5);
  ready.resume();
  const readyEnd = once(ready, 'end'); // listen now: it may come before the shell's exit
  const [code] = await once(sh, 'exit');
  assert.equal(code, 0);
  await readyEnd;
  const pid = Number(readFileSync(files.pidFile, 'utf8'));
  try {
    assert.notEqual(pid, sh.pid);
    const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);
    assert.notEqual(ppid, sh.pid, 'reparented after its parent exited');
    const out = pipeAt(sh, 3);
    const err = pipeAt(sh, 4);
    let size = 0;
    for (let i = 0; i < 3; i++) {
      await write(out, `alive-${i}\n`);
      await waitFor(() => existsSync(files.logPath) && statSync(files.logPath).size > size, `alive-${i} logged`);
      size = statSync(files.logPath).size;
    }
    await end(out);
    await end(err);
    await waitFor(() => isGone(pid), 'orphaned logger exits at EOF');
    assert.deepEqual(texts(readLog(files.logPath), 'stdout'), ['F alive-0', 'F alive-1', 'F alive-2']);
    assert.equal(existsSync(files.pidFile), false);
  } finally {
    if (!isGone(pid)) killQuietly(pid, 'SIGKILL');
  }
});

test('refuses bad arguments and an unopenable log, always releasing the ready pipe', T, async () => {
  const dir = freshDir();
  const start = (args: string[]) => {
    const child = spawn(loggerPath(), args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    pipeAt(child, 5).resume();
    return Promise.all([once(child, 'exit'), once(pipeAt(child, 5), 'end')]).then(([[code]]) => ({ code: code as number, stderr: () => stderr }));
  };
  const bad = await start(['log', 'relative.log', 'pid', join(dir, 'p'), 'ack', join(dir, 'a')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr(), /crisp-logger\[\]: usage: log must be an absolute path/);
  const odd = await start(['log', join(dir, 'l'), 'pid']);
  assert.equal(odd.code, 2);
  const noDir = await start(loggerArgs({ logPath: join(dir, 'missing', '0.log'), pidFile: join(dir, 'p'), ackFile: join(dir, 'a') }));
  assert.equal(noDir.code, 1);
  assert.match(noDir.stderr(), /open log: .*No such file or directory/);
  assert.deepEqual(readdirSync(dir), [], 'no pidfile, no ack: crisp can tell the logger never got ready');
});

// ---- under a real containerd 1.6 (root) ----

interface Ctd {
  dir: string;
  sock: string;
  ns: string;
  rootfs: string;
  proc?: ChildProcess;
  containers: Set<string>;
}
let ctd: Ctd | undefined;

async function ctr(...args: string[]): Promise<string> {
  assert.ok(ctd);
  const { stdout } = await run('ctr', ['--address', ctd.sock, '-n', ctd.ns, ...args], { encoding: 'utf8', timeout: 60_000 });
  return stdout;
}

async function startContainerd(): Promise<void> {
  if (!ctd) {
    const dir = join(base, 'containerd');
    const rootfs = join(dir, 'rootfs');
    for (const sub of ['bin', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, sub), { recursive: true });
    copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
    for (const applet of ['sh', 'echo', 'printf', 'tr', 'sleep', 'cat']) symlinkSync('busybox', join(rootfs, 'bin', applet));
    ctd = { dir, sock: join(dir, 'c.sock'), ns: `crisp-e2e-logger-${randomBytes(3).toString('hex')}`, rootfs, containers: new Set() };
    writeFileSync(
      join(dir, 'config.toml'),
      [
        'version = 2',
        `root = "${dir}/root"`,
        `state = "${dir}/state"`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
        '[grpc]',
        `  address = "${ctd.sock}"`,
        '[ttrpc]',
        `  address = "${ctd.sock}.ttrpc"`,
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${dir}/opt"`,
        '',
      ].join('\n'),
    );
  }
  const logFd = openSync(join(ctd.dir, 'containerd.log'), 'a');
  ctd.proc = spawn('containerd', ['--config', join(ctd.dir, 'config.toml')], { stdio: ['ignore', logFd, logFd], cwd: ctd.dir });
  closeSync(logFd);
  await waitFor(
    () => ctr('version').then(() => true, () => false),
    'containerd to answer',
    30_000,
  );
}

async function stopContainerd(sig: NodeJS.Signals): Promise<void> {
  const proc = ctd?.proc;
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = once(proc, 'exit');
  proc.kill(sig);
  const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

async function containerdCleanup(): Promise<void> {
  if (!ctd) return;
  if (ctd.proc && ctd.proc.exitCode === null && ctd.proc.signalCode === null) {
    for (const id of ctd.containers) {
      await ctr('task', 'kill', '-s', 'KILL', id).catch(() => {});
      await ctr('task', 'delete', '-f', id).catch(() => {});
      await ctr('container', 'delete', id).catch(() => {});
    }
  }
  await stopContainerd('SIGTERM');
  // shims and loggers of ours that outlived containerd: their argv names our socket or dir
  for (const pid of pidsMentioning(ctd.dir)) killQuietly(pid, 'SIGKILL');
  await waitFor(() => pidsMentioning(ctd!.dir).every(isGone), 'shims to exit').catch(() => {});
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4])
    .filter((m) => m?.startsWith(ctd!.dir))
    .reverse();
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => {});
  // the empty per-namespace dirs runc and ctr leave behind
  for (const ctl of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) {
    try {
      rmdirSync(join('/sys/fs/cgroup', ctl, ctd.ns));
    } catch {
      /* absent or not a hierarchy */
    }
  }
  for (const d of [join('/run/containerd/runc', ctd.ns), join('/run/containerd/s', ctd.ns)]) {
    try {
      rmdirSync(d);
    } catch {
      /* absent */
    }
  }
}

function loggerFilesIn(dir: string, tty = false): LoggerFiles {
  return { logPath: join(dir, '0.log'), pidFile: join(dir, 'logger.pid'), ackFile: join(dir, 'logger.ack'), ...(tty ? { tty: true } : {}) };
}

test('containerd shim: ctr run --log-uri writes the CRI log; task delete ends the logger', { skip: skipContainerd, timeout: 180_000 }, async () => {
  await startContainerd();
  assert.ok(ctd);
  // a path that needs encoding: space and plus survive the shim's URL decoding
  const dir = join(freshDir(), 'pod a+b');
  mkdirSync(dir);
  const files = loggerFilesIn(dir);
  const id = `run-${randomBytes(3).toString('hex')}`;
  ctd.containers.add(id);
  const script = 'echo hi; echo err >&2; printf "%40000s\\n" "" | tr " " a; printf partial';
  await ctr('run', '--rm', '--env', 'PATH=/bin', '--rootfs', '--log-uri', loggerUri(files), ctd.rootfs, id, '/bin/sh', '-c', script);
  ctd.containers.delete(id);
  // ctr deleted the task: the shim closed the pipes, sent SIGTERM and waited for the logger
  await waitFor(() => !existsSync(files.pidFile), 'logger gone after task delete');
  assert.equal((await readLoggerAck(files.ackFile))?.exited, true);
  const records = readLog(files.logPath);
  assert.deepEqual(texts(records, 'stdout').map((t) => (t.length > 40 ? `${t.slice(0, 2)}${t.length - 2}` : t)), [
    'F hi',
    'P 16384',
    'P 16384',
    'F 7232',
    'F partial',
  ]);
  assert.deepEqual(texts(records, 'stderr'), ['F err']);
});

test('containerd shim via Tasks.Create: rotation, containerd killed and restarted, delete ends the logger', { skip: skipContainerd, timeout: 180_000 }, async () => {
  if (!ctd?.proc || ctd.proc.exitCode !== null) await startContainerd();
  assert.ok(ctd);
  const files = loggerFilesIn(freshDir());
  const id = `grpc-${randomBytes(3).toString('hex')}`;
  ctd.containers.add(id);
  // a script file: `ctr container create` would take a "-c" after the id for one of its own flags
  writeFileSync(join(ctd.rootfs, `${id}.sh`), 'i=0; while :; do echo tick-$i; echo tock-$i >&2; i=$((i+1)); sleep 0.02; done\n');
  await ctr('container', 'create', '--env', 'PATH=/bin', '--rootfs', ctd.rootfs, id, '/bin/sh', `/${id}.sh`);
  const connect = () => new ContainerdClient({ address: ctd!.sock, namespace: ctd!.ns, timeoutMs: 30_000 });
  let client = connect();
  try {
    const uri = loggerUri(files);
    await client.tasks.unary('Create', { containerId: id, rootfs: [], stdin: '', stdout: uri, stderr: uri, terminal: false });
    // Create returns only after the logger closed fd 5, so its files are already there
    const ack0 = await readLoggerAck(files.ackFile);
    assert.ok(ack0 && !ack0.exited);
    const loggerPid = Number(readFileSync(files.pidFile, 'utf8'));
    assert.equal(ack0.pid, loggerPid);
    await client.tasks.unary('Start', { containerId: id, execId: '' });

    // the shim is the parent, and it hands over nothing but the two variables
    const ppid = Number(/PPid:\s+(\d+)/.exec(readFileSync(`/proc/${loggerPid}/status`, 'utf8'))?.[1]);
    const parent = readFileSync(`/proc/${ppid}/cmdline`, 'utf8').split('\0');
    assert.match(parent[0], /containerd-shim-runc-v2$/);
    assert.ok(parent.includes(ctd.sock));
    assert.deepEqual(readFileSync(`/proc/${loggerPid}/environ`, 'utf8').split('\0').filter(Boolean).sort(), [
      `CONTAINER_ID=${id}`,
      `CONTAINER_NAMESPACE=${ctd.ns}`,
    ]);
    // Settles at six (a transient fd of the start-up, e.g. the ready pipe, may still be closing).
    const fds = () => readdirSync(`/proc/${loggerPid}/fd`).length;
    for (let i = 0; i < 40 && fds() !== 6; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(fds(), 6, 'fds 0-2, 3, 4 and the log: nothing leaked in');

    const count = (path: string, stream: string) => texts(readLog(path), stream).length;
    await waitFor(() => count(files.logPath, 'stdout') >= 5, 'first ticks');
    renameSync(files.logPath, `${files.logPath}.1`);
    const ack = await reopenLog({ pidFile: files.pidFile, ackFile: files.ackFile, timeoutMs: 5000, containerId: id });
    assert.equal(ack.reopens, 1);
    await waitFor(() => count(files.logPath, 'stdout') >= 5, 'ticks in the new file');

    // containerd (and with it any crispd) gone: the shim's logger keeps writing
    await stopContainerd('SIGKILL');
    client.close();
    const before = count(files.logPath, 'stdout');
    await waitFor(() => count(files.logPath, 'stdout') >= before + 10, 'ticks while containerd is dead');
    await startContainerd();
    client = connect();

    await client.tasks.unary('Kill', { containerId: id, execId: '', signal: 9, all: false });
    await client.tasks.unary('Wait', { containerId: id, execId: '' });
    await client.tasks.unary('Delete', { containerId: id });
    await waitFor(() => isGone(loggerPid) && !existsSync(files.pidFile), 'logger gone after task delete');
    assert.equal((await readLoggerAck(files.ackFile))?.exited, true);
    await client.containers.unary('Delete', { id });
    ctd.containers.delete(id);

    // nothing lost, nothing doubled across the rotation and the containerd restart
    for (const [stream, word] of [['stdout', 'tick'], ['stderr', 'tock']] as const) {
      const all = [...texts(readLog(`${files.logPath}.1`), stream), ...texts(readLog(files.logPath), stream)];
      assert.ok(all.length > 20);
      assert.deepEqual(all, all.map((_, i) => `F ${word}-${i}`));
    }
  } finally {
    client.close();
  }
});

test('containerd shim, terminal task: console output on stdout, the logger ends with the console', { skip: skipContainerd, timeout: 180_000 }, async () => {
  if (!ctd?.proc || ctd.proc.exitCode !== null) await startContainerd();
  assert.ok(ctd);
  const files = loggerFilesIn(freshDir(), true);
  const id = `tty-${randomBytes(3).toString('hex')}`;
  ctd.containers.add(id);
  writeFileSync(join(ctd.rootfs, `${id}.sh`), 'echo tty-out; echo tty-err >&2; sleep 0.2\n');
  await ctr('container', 'create', '--tty', '--env', 'PATH=/bin', '--rootfs', ctd.rootfs, id, '/bin/sh', `/${id}.sh`);
  const client = new ContainerdClient({ address: ctd.sock, namespace: ctd.ns, timeoutMs: 30_000 });
  try {
    const uri = loggerUri(files);
    await client.tasks.unary('Create', { containerId: id, rootfs: [], stdin: '', stdout: uri, stderr: uri, terminal: true });
    const loggerPid = Number(readFileSync(files.pidFile, 'utf8'));
    await client.tasks.unary('Start', { containerId: id, execId: '' });
    await client.tasks.unary('Wait', { containerId: id, execId: '' });
    // the shim never signals a terminal task's logger; the console's EOF on fd 3 must end it,
    // before anyone deletes the task
    await waitFor(() => isGone(loggerPid), 'logger exits once the console closes', 10_000);
    const records = readLog(files.logPath);
    assert.deepEqual(texts(records, 'stdout'), ['F tty-out\r', 'F tty-err\r']);
    assert.deepEqual(texts(records, 'stderr'), []);
    await client.tasks.unary('Delete', { containerId: id });
    await client.containers.unary('Delete', { id });
    ctd.containers.delete(id);
  } finally {
    client.close();
  }
});
