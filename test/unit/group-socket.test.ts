// The group socket of a pod's shim: its name (containerd's shims hash "<address>/<namespace>/<group>"),
// and removing it only when nobody listens (a served socket, a plain file and a missing path are left).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { groupSocketPath, removeIfStale } from '../../backend/containerd/group-socket.js';

test('the group socket is sha256 of "<containerd address>/<namespace>/<pod>" below /run/containerd/s', () => {
  // printf %s /run/crisp/containerd/containerd.sock/k8s.io/pod1 | sha256sum
  const expected = execFileSync('sh', ['-c', 'printf %s /run/crisp/containerd/containerd.sock/k8s.io/pod1 | sha256sum'], { encoding: 'utf8' }).split(' ')[0];
  assert.equal(groupSocketPath('/run/crisp/containerd/containerd.sock', 'k8s.io', 'pod1'), `/run/containerd/s/${expected}`);
});

test('removeIfStale removes a socket nobody listens on and keeps a served one, a plain file and nothing', async () => {
  const dir = mkdtempSync('/tmp/crisp-unit-groupsock-');
  const server = createServer();
  try {
    // A process that bound and listened, then exited without closing: the socket file stays, unserved.
    const stale = join(dir, 'stale');
    execFileSync(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.exit(0))`]);
    assert.ok(existsSync(stale));
    assert.equal(await removeIfStale(stale), true);
    assert.equal(existsSync(stale), false);

    const served = join(dir, 'served');
    await new Promise<void>((resolve) => server.listen(served, resolve));
    assert.equal(await removeIfStale(served), false);
    assert.ok(existsSync(served));

    const plain = join(dir, 'plain');
    writeFileSync(plain, '');
    assert.equal(await removeIfStale(plain), false);
    assert.ok(existsSync(plain), 'not a socket: left alone');

    assert.equal(await removeIfStale(join(dir, 'missing')), true);
  } finally {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
