import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'smol-toml';
import { embeddedConfigToml, embeddedDisabledPlugins, embeddedPaths } from '../../backend/containerd/embedded.js';

test('the embedded containerd loads only the configured snapshotter and none of the plugins crisp does not use', () => {
  const overlay = embeddedDisabledPlugins('overlayfs');
  assert.ok(overlay.includes('io.containerd.grpc.v1.cri'), 'CRI stays off');
  assert.ok(overlay.includes('io.containerd.nri.v1.nri'), "NRI stays off (crisp serves the node's NRI socket)");
  assert.ok(overlay.includes('io.containerd.internal.v1.opt'), 'no /opt/containerd');
  assert.ok(overlay.includes('io.containerd.snapshotter.v1.devmapper'));
  assert.ok(overlay.includes('io.containerd.snapshotter.v1.native'));
  assert.ok(!overlay.includes('io.containerd.snapshotter.v1.overlayfs'));
  const native = embeddedDisabledPlugins('native');
  assert.ok(!native.includes('io.containerd.snapshotter.v1.native') && native.includes('io.containerd.snapshotter.v1.overlayfs'));
  // The tasks service needs the v1 runtime plugin on containerd 1.6: it stays.
  assert.ok(!overlay.includes('io.containerd.runtime.v1.linux'));

  const toml = parse(embeddedConfigToml(embeddedPaths('/var/lib/crisp', '/run/crisp'), 'overlayfs')) as { disabled_plugins: string[]; root: string };
  assert.deepEqual(toml.disabled_plugins, overlay);
  assert.equal(toml.root, '/var/lib/crisp/containerd');
});
