import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);

test('the packaged wrapper gives crispd (and only crispd) a small young generation', () => {
  const run = (...args: string[]) =>
    spawnSync('sh', [join(REPO, 'packaging', 'crisp-wrapper.sh'), ...args], { encoding: 'utf8', env: { ...process.env, CRISP_NODE: 'echo' } }).stdout.trim();
  assert.equal(run('daemon', '--config', '/x.toml'), '--max-semi-space-size=2 /usr/lib/crisp/dist/cli/main.js daemon --config /x.toml');
  assert.equal(run('ps', '-a'), '/usr/lib/crisp/dist/cli/main.js ps -a');
});

test('`crisp daemon` parses its own flags without the client command tree', () => {
  const cli = join(REPO, 'dist', 'cli', 'main.js');
  const help = spawnSync(process.execPath, [cli, 'daemon', '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0);
  assert.match(help.stdout, /Usage: crisp daemon \[options\]/);
  assert.match(help.stdout, /--containerd-address <socket>/);
  const bad = spawnSync(process.execPath, [cli, 'daemon', '--no-such-flag'], { encoding: 'utf8' });
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim(), "crisp: unknown option '--no-such-flag'");
});
