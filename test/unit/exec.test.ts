import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execa } from '../../common/exec.js';

test('execa through the lazy wrapper runs the command with its options', async () => {
  const res = await execa('sh', ['-c', 'read x; echo "got $x"; echo err >&2'], { input: 'in' });
  assert.equal(res.stdout, 'got in');
  assert.equal(res.stderr, 'err');
  assert.equal(res.exitCode, 0);
});

test('a failing command rejects, or resolves as failed with reject: false', async () => {
  await assert.rejects(execa('sh', ['-c', 'exit 3']), (err: unknown) => (err as { exitCode?: number }).exitCode === 3);
  const res = await execa('sh', ['-c', 'exit 4'], { reject: false });
  assert.equal(res.failed, true);
  assert.equal(res.exitCode, 4);
  const missing = await execa('/nonexistent/crisp-test-binary', [], { reject: false });
  assert.equal(missing.failed, true);
  assert.equal(missing.exitCode, undefined);
});
