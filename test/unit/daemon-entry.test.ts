import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPO = resolve(new URL('../../..', import.meta.url).pathname);

test('the packaged wrapper gives crispd (and only crispd) a small young generation and fixed malloc thresholds', () => {
  // A stand-in node that prints its arguments and the malloc settings it was given.
  const dir = mkdtempSync(join(tmpdir(), 'crisp-wrapper-'));
  const fakeNode = join(dir, 'node');
  writeFileSync(fakeNode, '#!/bin/sh\necho "$* | trim=${MALLOC_TRIM_THRESHOLD_:-unset} mmap=${MALLOC_MMAP_THRESHOLD_:-unset}"\n', { mode: 0o755 });
  const run = (env: Record<string, string>, ...args: string[]) => {
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_')));
    return spawnSync('sh', [join(REPO, 'packaging', 'crisp-wrapper.sh'), ...args], { encoding: 'utf8', env: { ...clean, ...env, CRISP_NODE: fakeNode } }).stdout.trim();
  };
  try {
    assert.equal(run({}, 'daemon', '--config', '/x.toml'), '--max-semi-space-size=2 /usr/lib/crisp/dist/cli/main.js daemon --config /x.toml | trim=131072 mmap=131072');
    assert.equal(run({ MALLOC_TRIM_THRESHOLD_: '0' }, 'daemon'), '--max-semi-space-size=2 /usr/lib/crisp/dist/cli/main.js daemon | trim=0 mmap=131072');
    assert.equal(run({}, 'ps', '-a'), '/usr/lib/crisp/dist/cli/main.js ps -a | trim=unset mmap=unset');
    // The README's daemon command: the same settings for this checkout's dist/, with the node on PATH.
    const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MALLOC_') && k !== 'CRISP_NODE'));
    const fromCheckout = spawnSync(join(REPO, 'scripts', 'crispd.sh'), ['--config', '/x.toml'], {
      encoding: 'utf8',
      env: { ...clean, PATH: `${dir}:${process.env.PATH}` },
    });
    assert.equal(fromCheckout.stdout.trim(), `--max-semi-space-size=2 ${REPO}/dist/cli/main.js daemon --config /x.toml | trim=131072 mmap=131072`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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
