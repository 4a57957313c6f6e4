// Which shim binary containerd would run: its working directory first, then PATH, then beside the
// containerd binary; names derived from the runtime type; absolute runtime types used as they are.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { resolveShimBinary, shimBinaryName } from '../../backend/containerd/shim-binary.js';

function executableAt(path: string): string {
  writeFileSync(path, '#!/bin/sh\n');
  chmodSync(path, 0o755);
  return path;
}

test('shim binary names follow the runtime type', () => {
  assert.equal(shimBinaryName('io.containerd.runc.v2'), 'containerd-shim-runc-v2');
  assert.equal(shimBinaryName('io.containerd.kata.v2'), 'containerd-shim-kata-v2');
  assert.equal(shimBinaryName('runc'), undefined);
  assert.equal(shimBinaryName('io..v2'), undefined);
});

test('containerd cwd, then PATH in order, then beside containerd; a non-executable file is skipped', (t) => {
  const dir = mkdtempSync('/tmp/crisp-shim-binary-');
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const [cwd, p1, p2, bin] = ['cwd', 'p1', 'p2', 'bin'].map((d) => join(dir, d));
  for (const d of [cwd!, p1!, p2!, bin!]) mkdirSync(d);
  const name = 'containerd-shim-runc-v2';
  const where = { cwd: cwd!, path: `${p1}:${p2}`, containerdBinary: join(bin!, 'containerd') };
  assert.equal(resolveShimBinary('io.containerd.runc.v2', where), undefined);
  const beside = executableAt(join(bin!, name));
  assert.equal(resolveShimBinary('io.containerd.runc.v2', where), beside);
  const second = executableAt(join(p2!, name));
  assert.equal(resolveShimBinary('io.containerd.runc.v2', where), second);
  writeFileSync(join(p1!, name), 'not executable');
  assert.equal(resolveShimBinary('io.containerd.runc.v2', where), second);
  const inCwd = executableAt(join(cwd!, name));
  assert.equal(resolveShimBinary('io.containerd.runc.v2', where), inCwd);
  assert.equal(resolveShimBinary(beside, where), beside);
  assert.equal(resolveShimBinary(join(dir, 'missing'), where), undefined);
});
