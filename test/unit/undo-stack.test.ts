// The one undo helper: newest first, every step tried, failures named and logged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { UndoStack, allSteps } from '../../common/undo-stack.js';
import { createLogger } from '../../common/logger.js';

test('undoes newest first, keeps going past a failure, and names it', async () => {
  const lines: string[] = [];
  const log = createLogger('error', new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) }));
  const ran: string[] = [];
  const undo = new UndoStack();
  undo.push('dir', async () => void ran.push('dir'));
  undo.push('mount', async () => {
    ran.push('mount');
    throw new Error('busy');
  });
  undo.push('name', async () => void ran.push('name'));
  assert.deepEqual(await undo.unwind(log, 'cleanup of x'), ['mount']);
  assert.deepEqual(ran, ['name', 'mount', 'dir']);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /cleanup of x: undoing \\"mount\\" failed/);
  assert.deepEqual(await undo.unwind(log, 'again'), [], 'an unwound stack is empty');
});

test('synchronous steps (closing a client, releasing a lock) run in order too, a throwing one named', async () => {
  const lines: string[] = [];
  const log = createLogger('error', new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) }));
  const ran: string[] = [];
  const undo = new UndoStack();
  undo.push('state lock', () => void ran.push('lock'));
  undo.push('client', () => {
    ran.push('client');
    throw new Error('already closed');
  });
  undo.push('server', async () => void ran.push('server'));
  assert.deepEqual(await undo.unwind(log, 'crispd shutdown'), ['client']);
  assert.deepEqual(ran, ['server', 'client', 'lock']);
  assert.match(lines[0]!, /crispd shutdown: undoing \\"client\\" failed/);
});

test('allSteps: a quick failure is thrown only once the slower steps have finished', async () => {
  const finished: string[] = [];
  const slow = new Promise<string>((resolve) => setTimeout(() => (finished.push('dir made'), resolve('dir')), 30));
  const quick = Promise.reject(new Error('containerd is not answering'));
  await assert.rejects(allSteps([quick, slow]), /containerd is not answering/);
  // Promise.all would have thrown first, and an undo run then would have missed the directory.
  assert.deepEqual(finished, ['dir made']);
  assert.deepEqual(await allSteps([Promise.resolve(1), Promise.resolve('a'), undefined]), [1, 'a', undefined]);
});
