// Pod log directories: any absolute path by default (as containerd and CRI-O accept), only below
// pod_log_root when an operator sets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { podLogDirectory } from '../../cri/runtime/pod-mapping.js';

test('any absolute directory without a root; only below the root with one; never relative', () => {
  assert.equal(podLogDirectory('/tmp/critest/logs/', '', 'f'), '/tmp/critest/logs/');
  assert.equal(podLogDirectory('/var/log/pods/ns_name_uid', '/var/log/pods', 'f'), '/var/log/pods/ns_name_uid');
  assert.throws(() => podLogDirectory('/etc/evil', '/var/log/pods', 'config.log_directory'), /config\.log_directory: "\/etc\/evil" is outside the pod log root \/var\/log\/pods \(config pod_log_root\)/);
  assert.throws(() => podLogDirectory('/var/log/pods/../../etc', '/var/log/pods', 'f'), /outside the pod log root/);
  assert.equal(podLogDirectory('/var/log/pods/..data', '/var/log/pods', 'f'), '/var/log/pods/..data');
  assert.throws(() => podLogDirectory('logs', '', 'f'), /must be an absolute path/);
});

test('a symlink below the root that leads out of it is refused (found by the CRI fuzzer)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'crisp-unit-logroot-'));
  try {
    const root = join(dir, 'logs');
    const outside = join(dir, 'outside');
    mkdirSync(root);
    mkdirSync(outside);
    symlinkSync(outside, join(root, 'to-outside'));
    symlinkSync(join(root, 'inside'), join(root, 'to-inside'));
    mkdirSync(join(root, 'inside'));
    for (const p of ['to-outside', 'to-outside/inner', 'to-outside/a/b']) {
      assert.throws(() => podLogDirectory(join(root, p), root, 'config.log_directory'), /config\.log_directory: .* is outside the pod log root/, p);
    }
    assert.equal(podLogDirectory(join(root, 'to-inside/pod'), root, 'f'), join(root, 'to-inside/pod'));
    assert.equal(podLogDirectory(join(root, 'new/pod'), root, 'f'), join(root, 'new/pod'));
    // Normalised before use: crisp creates <root>/escape, never <outside>/../escape.
    assert.equal(podLogDirectory(join(root, 'to-outside/../escape'), root, 'f'), join(root, 'escape'));
    assert.deepEqual(readdirSync(outside), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
