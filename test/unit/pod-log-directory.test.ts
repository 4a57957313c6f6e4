// Pod log directories: any absolute path by default (as containerd and CRI-O accept), only below
// pod_log_root when an operator sets it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { podLogDirectory } from '../../cri/runtime/pod-mapping.js';

test('any absolute directory without a root; only below the root with one; never relative', () => {
  assert.equal(podLogDirectory('/tmp/critest/logs/', '', 'f'), '/tmp/critest/logs/');
  assert.equal(podLogDirectory('/var/log/pods/ns_name_uid', '/var/log/pods', 'f'), '/var/log/pods/ns_name_uid');
  assert.throws(() => podLogDirectory('/etc/evil', '/var/log/pods', 'config.log_directory'), /config\.log_directory: "\/etc\/evil" is outside the pod log root \/var\/log\/pods \(config pod_log_root\)/);
  assert.throws(() => podLogDirectory('/var/log/pods/../../etc', '/var/log/pods', 'f'), /outside the pod log root/);
  assert.equal(podLogDirectory('/var/log/pods/..data', '/var/log/pods', 'f'), '/var/log/pods/..data');
  assert.throws(() => podLogDirectory('logs', '', 'f'), /must be an absolute path/);
});
