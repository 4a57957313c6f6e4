// The wrapper's process plumbing against a fake helper (a shell script set by useHelperPath, as crispd sets nshelper_path):
// argv passed through, stdout parsed, exit codes and the stderr line turned into typed errors.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  applySysctls,
  idmapMount,
  isNsHelperError,
  nshelperPath,
  pinNamespaces,
  probeIdmap,
  startPidNamespace,
  stopPidNamespace,
  unpinNamespaces,
} from '../../native/nshelper.js';
import { useHelperPath } from '../../native/helper-paths.js';

let dir = '';

// The fake prints $FAKE_OUT, writes $FAKE_ERR to stderr and exits $FAKE_RC; it records its argv.
function installFake(out: string, err = '', rc = 0): string {
  const argvFile = join(dir, 'argv');
  const script = join(dir, 'fake-nshelper');
  writeFileSync(
    script,
    `#!/bin/sh\nfor a in "$@"; do printf '%s\\n' "$a"; done > '${argvFile}'\n` +
      `printf '%s' '${out}'\nprintf '%s' '${err}' >&2\nexit ${rc}\n`,
  );
  chmodSync(script, 0o755);
  useHelperPath('crisp-nshelper', script);
  return argvFile;
}
const argvOf = (file: string) => readFileSync(file, 'utf8').trimEnd().split('\n');

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'crisp-unit-native-'));
});
after(() => {
  useHelperPath('crisp-nshelper', '');
  rmSync(dir, { recursive: true, force: true });
});

test('a configured path overrides the default helper path', () => {
  installFake('');
  assert.equal(nshelperPath(), join(dir, 'fake-nshelper'));
});

test('pinNamespaces passes argv and returns typed paths', async () => {
  const argv = installFake('{"user":"/p/user","net":"/p/net"}\n');
  const pinned = await pinNamespaces({
    dir: '/p',
    net: true,
    user: { uidMappings: [{ containerId: 0, hostId: 100000, length: 65536 }], gidMappings: [{ containerId: 0, hostId: 100000, length: 65536 }] },
  });
  assert.deepEqual(pinned, { user: '/p/user', net: '/p/net' });
  assert.deepEqual(argvOf(argv), ['pin', '--dir', '/p', '--user', '--uid-map', '0 100000 65536', '--gid-map', '0 100000 65536', '--net']);
});

test('unpin, sysctl, idmap-mount, probe-idmap parse their output', async () => {
  installFake('{"ok":true}\n');
  await unpinNamespaces('/p');
  await applySysctls({ netns: '/p/net' }, { 'net.ipv4.ip_forward': '1' });
  await idmapMount({ userns: '/p/user', src: '/a', dst: '/b' });
  installFake('{"idmap":true,"overlayOverIdmap":true,"reason":""}\n');
  assert.deepEqual(await probeIdmap('/tmp'), { idmap: true, overlayOverIdmap: true, reason: '' });
  installFake('{"ok":false}\n');
  await assert.rejects(unpinNamespaces('/p'), (err: unknown) => isNsHelperError(err) && err.kind === 'INTERNAL');
});

test('startPidNamespace and stopPidNamespace pass argv and parse output', async () => {
  let argv = installFake('{"pid":4242,"path":"/p/pid"}\n');
  assert.deepEqual(await startPidNamespace({ dir: '/p', userns: '/p/user' }), { pid: 4242, path: '/p/pid' });
  assert.deepEqual(argvOf(argv), ['pidns', '--dir', '/p', '--userns', '/p/user']);
  argv = installFake('{"ok":true,"killed":true}\n');
  await stopPidNamespace({ dir: '/p', pid: 4242 });
  assert.deepEqual(argvOf(argv), ['pidns-stop', '--dir', '/p', '--pid', '4242']);

  installFake('', 'crisp-nshelper: init: setresgid 0 in user namespace: Invalid argument\n', 1);
  await assert.rejects(
    startPidNamespace({ dir: '/p', userns: '/p/user' }),
    (err: unknown) =>
      isNsHelperError(err) && err.subcommand === 'pidns' && err.step === 'init: setresgid 0 in user namespace' && err.detail === 'Invalid argument',
  );
  installFake('', 'crisp-nshelper: /p/pid is already a mount: Device or resource busy\n', 3);
  await assert.rejects(startPidNamespace({ dir: '/p' }), (err: unknown) => isNsHelperError(err) && err.kind === 'ALREADY_EXISTS');
});

test('applySysctls with nothing to write does not run the helper', async () => {
  useHelperPath('crisp-nshelper', join(dir, 'does-not-exist'));
  await applySysctls({ netns: '/p/net' }, {});
});

test('helper failures become NsHelperError with step, detail and kind', async () => {
  installFake('', 'crisp-nshelper: bind /proc/9/ns/net onto /p/net: Permission denied\n', 1);
  await assert.rejects(pinNamespaces({ dir: '/p', net: true }), (err: unknown) => {
    assert.ok(isNsHelperError(err));
    assert.equal(err.kind, 'INTERNAL');
    assert.equal(err.subcommand, 'pin');
    assert.equal(err.step, 'bind /proc/9/ns/net onto /p/net');
    assert.equal(err.detail, 'Permission denied');
    assert.equal(err.exitCode, 1);
    assert.equal(err.message, 'nshelper pin: bind /proc/9/ns/net onto /p/net: Permission denied');
    return true;
  });

  installFake('', 'crisp-nshelper: /p/net is already a mount: Device or resource busy\n', 3);
  await assert.rejects(pinNamespaces({ dir: '/p', net: true }), (err: unknown) => isNsHelperError(err) && err.kind === 'ALREADY_EXISTS');

  installFake('', 'crisp-nshelper: usage: sysctl: vm.swappiness is not a namespaced sysctl\n', 2);
  await assert.rejects(
    applySysctls({ netns: '/p/net' }, { 'vm.swappiness': '1' }),
    (err: unknown) => isNsHelperError(err) && err.kind === 'INVALID_ARGUMENT' && err.detail.includes('vm.swappiness'),
  );
});

test('a missing helper is a FAILED_PRECONDITION that says how to build it', async () => {
  useHelperPath('crisp-nshelper', join(dir, 'does-not-exist'));
  await assert.rejects(
    unpinNamespaces('/p'),
    (err: unknown) => isNsHelperError(err) && err.kind === 'FAILED_PRECONDITION' && /make -C native/.test(err.message) && /nshelper_path/.test(err.message),
  );
});
