// reopenLog against fake loggers (small node processes that answer SIGUSR1 the way crisp-logger does,
// or not at all): every failure is a typed error, and a pidfile naming a stranger never gets a signal.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isLoggerError, readLoggerAck, reopenLog } from '../../native/logger.js';

let dir = '';
let n = 0;
const children: ChildProcess[] = [];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'crisp-unit-logger-'));
});

after(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** `mode` says how the fake answers SIGUSR1: ack, ack with an error, exit (writing a final ack), or ignore. */
type Mode = 'ok' | 'fail' | 'exit' | 'ignore';

const FAKE = `
const fs = require('node:fs');
const [mode, pidFile, ackFile] = [process.argv[1], process.argv[3], process.argv[5]];
let reopens = 0;
const ack = (error, exited) => {
  const line = JSON.stringify({ pid: process.pid, reopens, error, droppedBytes: 0, writeErrors: 0, exited }) + '\\n';
  fs.writeFileSync(ackFile + '.tmp', line);
  fs.renameSync(ackFile + '.tmp', ackFile);
};
ack('', false);
fs.writeFileSync(pidFile, process.pid + '\\n');
process.on('SIGUSR1', () => {
  if (mode === 'ignore') return;
  // like a logger that got SIGTERM before it could handle the SIGUSR1
  if (mode === 'exit') { ack('', true); fs.unlinkSync(pidFile); process.exit(0); }
  reopens++;
  setTimeout(() => ack(mode === 'fail' ? 'open: No such file or directory' : '', false), 20);
});
setInterval(() => {}, 1000);
`;

async function fakeLogger(mode: Mode): Promise<{ pidFile: string; ackFile: string; child: ChildProcess }> {
  const pidFile = join(dir, `l${n}.pid`);
  const ackFile = join(dir, `l${n++}.ack`);
  // argv as the real logger would show it: "… pid PIDFILE ack ACKFILE"
  const child = spawn(process.execPath, ['-e', FAKE, mode, 'pid', pidFile, 'ack', ackFile], { stdio: 'ignore' });
  children.push(child);
  for (let i = 0; i < 400 && !(await readLoggerAck(ackFile).catch(() => undefined)); i++) await sleep(10);
  for (let i = 0; i < 400; i++) {
    try {
      if (Number(readFileSync(pidFile, 'utf8').trim()) === child.pid) break;
    } catch {
      /* not yet written */
    }
    await sleep(10);
  }
  return { pidFile, ackFile, child };
}

const kindIs = (kind: string, step?: string) => (err: unknown) =>
  isLoggerError(err) && err.kind === kind && (step === undefined || err.step === step);

test('reopenLog: waits for the ack that follows the signal', async () => {
  const { pidFile, ackFile, child } = await fakeLogger('ok');
  const first = await reopenLog({ pidFile, ackFile, timeoutMs: 3000 });
  assert.equal(first.pid, child.pid);
  assert.equal(first.reopens, 1);
  const second = await reopenLog({ pidFile, ackFile, timeoutMs: 3000 });
  assert.equal(second.reopens, 2);
});

test('reopenLog: a failed reopen is INTERNAL with the logger’s reason', async () => {
  const { pidFile, ackFile } = await fakeLogger('fail');
  await assert.rejects(reopenLog({ pidFile, ackFile, containerId: 'c1' }), (err: unknown) => {
    assert.ok(kindIs('INTERNAL', 'reopen')(err));
    assert.match((err as Error).message, /^logger c1: reopen: open: No such file/);
    return true;
  });
});

test('reopenLog: no ack in time is DEADLINE_EXCEEDED', async () => {
  const { pidFile, ackFile } = await fakeLogger('ignore');
  const t0 = Date.now();
  await assert.rejects(reopenLog({ pidFile, ackFile, timeoutMs: 150 }), kindIs('DEADLINE_EXCEEDED', 'wait for ack'));
  assert.ok(Date.now() - t0 >= 150);
});

test('reopenLog: a logger that exits instead is NOT_FOUND', async () => {
  const { pidFile, ackFile } = await fakeLogger('exit');
  await assert.rejects(reopenLog({ pidFile, ackFile, timeoutMs: 3000 }), kindIs('NOT_FOUND', 'wait for ack'));
});

test('reopenLog: absent pidfile is NOT_FOUND', async () => {
  await assert.rejects(
    reopenLog({ pidFile: join(dir, 'none.pid'), ackFile: join(dir, 'none.ack') }),
    kindIs('NOT_FOUND', 'read pidfile'),
  );
});

test('reopenLog: a pidfile naming another process sends no signal', async () => {
  // a reused pid: sleep's argv does not carry "pid <pidfile>", and SIGUSR1 would kill it
  const stranger = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(stranger);
  const pidFile = join(dir, 'stranger.pid');
  writeFileSync(pidFile, `${stranger.pid}\n`);
  await assert.rejects(reopenLog({ pidFile, ackFile: join(dir, 'stranger.ack') }), kindIs('NOT_FOUND', 'find logger'));
  await sleep(50);
  assert.equal(stranger.exitCode, null);
  assert.equal(stranger.signalCode, null);
  // a pid that no longer exists
  writeFileSync(pidFile, '4194304\n');
  await assert.rejects(reopenLog({ pidFile, ackFile: join(dir, 'stranger.ack') }), kindIs('NOT_FOUND', 'find logger'));
  writeFileSync(pidFile, 'garbage\n');
  await assert.rejects(reopenLog({ pidFile, ackFile: join(dir, 'stranger.ack') }), kindIs('INTERNAL', 'read pidfile'));
});
