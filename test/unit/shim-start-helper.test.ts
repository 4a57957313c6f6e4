// Putting crisp-shim-start in front of the runc v2 shim: the link it makes, the environment containerd
// gets (the link's directory first in PATH, the real shim named), and reading that name back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, lstatSync, mkdtempSync, mkdirSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { helperTarget, runShimVersion, SHIM_BINARY_ENV, shimStartHelperEnv } from '../../backend/containerd/shim-start-helper.js';

function executableAt(path: string): string {
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  return path;
}

test('the helper is linked as containerd-shim-runc-v2 first in PATH, naming the shim containerd would run', () => {
  const root = mkdtempSync('/tmp/crisp-unit-shimstart-');
  try {
    const bin = join(root, 'bin');
    mkdirSync(bin);
    const shim = executableAt(join(bin, 'containerd-shim-runc-v2'));
    const dir = join(root, 'state', 'shim-bin');
    const lookup = { cwd: join(root, 'cwd'), path: `${bin}:/usr/bin`, containerdBinary: '/usr/bin/containerd' };
    const env = shimStartHelperEnv({ helper: '/opt/crisp/crisp-shim-start', dir, lookup, shimVersion: () => '1.6.20~ds1' });
    assert.deepEqual(env, { PATH: `${dir}:${bin}:/usr/bin`, [SHIM_BINARY_ENV]: shim });
    const link = join(dir, 'containerd-shim-runc-v2');
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readlinkSync(link), '/opt/crisp/crisp-shim-start');
    assert.equal(lstatSync(dir).mode & 0o777, 0o700);

    // A link to another helper (an older install) is replaced; a plain file in its place too.
    shimStartHelperEnv({ helper: '/usr/libexec/crisp/crisp-shim-start', dir, lookup, shimVersion: () => '1.7.27' });
    assert.equal(readlinkSync(link), '/usr/libexec/crisp/crisp-shim-start');
    rmSync(link);
    writeFileSync(link, 'not a link');
    shimStartHelperEnv({ helper: '/usr/libexec/crisp/crisp-shim-start', dir, lookup, shimVersion: () => '1.7.27' });
    assert.equal(readlinkSync(link), '/usr/libexec/crisp/crisp-shim-start');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('no runc v2 shim anywhere containerd looks: no helper, no link', () => {
  const root = mkdtempSync('/tmp/crisp-unit-shimstart-');
  try {
    const dir = join(root, 'shim-bin');
    const env = shimStartHelperEnv({ helper: '/x/crisp-shim-start', dir, lookup: { cwd: root, path: join(root, 'none'), containerdBinary: join(root, 'containerd') } });
    assert.equal(env, 'no runc v2 shim found');
    assert.equal(existsSync(dir), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a containerd 2.x shim (JSON start answers) or one whose version is unknown gets no helper', () => {
  const root = mkdtempSync('/tmp/crisp-unit-shimstart-');
  try {
    const bin = join(root, 'bin');
    mkdirSync(bin);
    const shim = executableAt(join(bin, 'containerd-shim-runc-v2'));
    const dir = join(root, 'shim-bin');
    const lookup = { cwd: root, path: bin, containerdBinary: '/usr/bin/containerd' };
    assert.equal(shimStartHelperEnv({ helper: '/h', dir, lookup, shimVersion: () => '2.1.9+unknown' }), `${shim} is version 2.1.9+unknown, not 1.x`);
    assert.equal(shimStartHelperEnv({ helper: '/h', dir, lookup, shimVersion: () => undefined }), `${shim} is version unknown, not 1.x`);
    assert.equal(existsSync(dir), false);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('the version a real runc v2 shim reports', { skip: !existsSync('/usr/bin/containerd-shim-runc-v2') && 'no shim installed' }, () => {
  assert.match(runShimVersion('/usr/bin/containerd-shim-runc-v2') ?? '', /^\d+\.\d+\.\d+/);
  assert.equal(runShimVersion('/bin/false'), undefined);
});

test("the shim containerd's environment names for the helper", () => {
  assert.equal(helperTarget(['PATH=/a:/b', `${SHIM_BINARY_ENV}=/usr/bin/containerd-shim-runc-v2`]), '/usr/bin/containerd-shim-runc-v2');
  assert.equal(helperTarget(['PATH=/a:/b']), undefined);
  assert.equal(helperTarget([`${SHIM_BINARY_ENV}=`]), undefined);
});

test('a dangling link left by a removed helper is replaced', () => {
  const root = mkdtempSync('/tmp/crisp-unit-shimstart-');
  try {
    const bin = join(root, 'bin');
    mkdirSync(bin);
    executableAt(join(bin, 'containerd-shim-runc-v2'));
    const dir = join(root, 'shim-bin');
    mkdirSync(dir);
    symlinkSync(join(root, 'gone'), join(dir, 'containerd-shim-runc-v2'));
    shimStartHelperEnv({ helper: '/h/crisp-shim-start', dir, lookup: { cwd: root, path: bin, containerdBinary: '/usr/bin/containerd' }, shimVersion: () => '1.6.20' });
    assert.equal(readlinkSync(join(dir, 'containerd-shim-runc-v2')), '/h/crisp-shim-start');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
