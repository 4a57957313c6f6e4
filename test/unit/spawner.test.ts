import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { resolveCommand, runCommand, spawnerPath, stopSpawner, succeeded, useSpawnerPath, type RunResult } from '../../native/spawner.js';

after(() => stopSpawner());

const built = existsSync(spawnerPath());

/** The same cases through the spawner and through child_process (spawner binary hidden). */
for (const mode of ['spawner', 'child_process'] as const) {
  const skip = mode === 'spawner' && !built ? 'crisp-spawner not built (make -C native)' : false;
  const withMode = async <T>(fn: () => Promise<T>): Promise<T> => {
    useSpawnerPath(mode === 'child_process' ? '' : undefined);
    try {
      return await fn();
    } finally {
      useSpawnerPath(undefined);
    }
  };

  test(`${mode}: stdin, stdout, stderr, exit code, env and cwd`, { skip }, () =>
    withMode(async () => {
      const dir = realpathSync(tmpdir());
      const r = await runCommand('sh', ['-c', 'read x; echo "got $x $FOO $(pwd)"; echo oops >&2; exit 3'], {
        input: 'hello\n',
        env: { FOO: 'bar', PATH: process.env.PATH ?? '/usr/bin:/bin' },
        cwd: dir,
      });
      assert.equal(r.exitCode, 3);
      assert.equal(r.stdout, `got hello bar ${dir}\n`);
      assert.equal(r.stderr, 'oops\n');
      assert.equal(succeeded(r), false);
      const noInput = await runCommand('cat', [], { timeoutMs: 5000 });
      assert.equal(noInput.timedOut, false, 'stdin ends at once without input');
      assert.equal(noInput.stdout, '');
      const ok = await runCommand('true', []);
      assert.ok(succeeded(ok), JSON.stringify(ok));
    }),
  );

  test(`${mode}: a missing binary is a start error, a signal is reported by name`, { skip }, () =>
    withMode(async () => {
      const missing = await runCommand('/nonexistent/crisp-test-binary', []);
      assert.ok(missing.startError, JSON.stringify(missing));
      assert.equal(missing.exitCode, undefined);
      const killed = await runCommand('sh', ['-c', 'kill -USR1 $$']);
      assert.equal(killed.signal, 'SIGUSR1');
      assert.equal(killed.exitCode, undefined);
    }),
  );

  test(`${mode}: a timeout sends SIGTERM, then SIGKILL to a command that ignores it`, { skip }, () =>
    withMode(async () => {
      const r = await runCommand('sh', ['-c', 'echo started; exec sleep 30'], { timeoutMs: 200 });
      assert.equal(r.timedOut, true);
      assert.equal(r.signal, 'SIGTERM');
      assert.equal(r.stdout, 'started\n');
      const stubborn = await runCommand('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { timeoutMs: 100, killAfterMs: 200 });
      assert.equal(stubborn.timedOut, true);
      assert.equal(stubborn.signal, 'SIGKILL');
    }),
  );

  test(`${mode}: an abort signal sends SIGTERM (SIGKILL later if ignored); an aborted signal stops at once`, { skip }, () =>
    withMode(async () => {
      const ac = new AbortController();
      const t0 = Date.now();
      const running = runCommand('sh', ['-c', 'echo started; exec sleep 30'], { signal: ac.signal });
      setTimeout(() => ac.abort(), 150);
      const r = await running;
      assert.equal(r.signal, 'SIGTERM');
      assert.equal(r.timedOut, false);
      assert.equal(r.stdout, 'started\n');
      assert.ok(Date.now() - t0 < 10_000);
      const stubborn = new AbortController();
      const s = runCommand('sh', ['-c', 'trap "" TERM; while :; do sleep 0.05; done'], { signal: stubborn.signal, killAfterMs: 200 });
      setTimeout(() => stubborn.abort(), 100);
      assert.equal((await s).signal, 'SIGKILL');
      const gone = await runCommand('sleep', ['30'], { signal: AbortSignal.abort() });
      assert.equal(gone.signal, 'SIGTERM');
      // A run that ends first is not signalled later.
      const done = new AbortController();
      const ok = await runCommand('true', [], { signal: done.signal });
      done.abort();
      assert.ok(succeeded(ok));
    }),
  );

  test(`${mode}: many commands at once, large output and a large stdin`, { skip }, () =>
    withMode(async () => {
      const runs = await Promise.all(
        Array.from({ length: 30 }, (_, i) => runCommand('sh', ['-c', `echo ${i}; exit ${i % 4}`])),
      );
      runs.forEach((r: RunResult, i) => {
        assert.equal(r.stdout, `${i}\n`);
        assert.equal(r.exitCode, i % 4);
      });
      const big = 'x'.repeat(3 * 1024 * 1024);
      const echoed = await runCommand('cat', [], { input: big });
      assert.equal(echoed.stdout.length, big.length);
      assert.ok(succeeded(echoed));
    }),
  );
}

test('resolveCommand looks a bare name up in PATH like execvp, and keeps paths as given', async () => {
  assert.equal(await resolveCommand('/x/y', undefined), '/x/y');
  assert.equal(await resolveCommand('./rel', ''), './rel');
  const sh = await resolveCommand('sh', '/nonexistent-dir::/bin');
  assert.equal(sh, '/bin/sh');
  assert.equal(await resolveCommand('crisp-no-such-command', '/bin:/usr/bin'), undefined);
});
